"""Execute a study: one papermill run per section × model, then each section's summary page.

Runs form a graph: a page starts when the runs whose rows it reads have finished
(:func:`plan_runs`); an engine (:mod:`ssl_lib.engines`) executes the graph locally or on Ray.
A run is skipped when its output notebook already holds the same *input hash*: the notebook,
its parameters, the section's study settings, the library's source and the mini zoo manifest.
Outputs are written to a temporary file and renamed, so an interrupted study resumes cleanly
and a failed run never looks finished. Result rows go to one tidy CSV (``results.csv``).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
import time
from functools import partial
from dataclasses import dataclass, field, replace
from pathlib import Path

import nbformat
import yaml

from .models import get_model_cfg
from .models._mini import MINI_ZOO_DIR
from ._registry import unknown_name_message
from .exceptions import ConfigError, UnknownNameError
from .paths import atomic_path, repo_root
from .engines import Outcome, execute_graph
from .kernels import KernelPool, NotebookFailed
from .sections import SECTIONS
from .study import Study, load_study

__all__ = ["Run", "plan_runs", "run_study", "write_toc", "library_fingerprint"]

SUMMARY = "summary"


@dataclass(frozen=True)
class Run:
    section: str
    model: str | None  # None for the section's summary page
    notebook: Path
    output: Path
    parameters: dict = field(hash=False)
    title: str = ""
    needs: tuple[str, ...] = ()  # labels of the runs whose rows this page reads
    accelerator: bool = False  # evaluates models: takes a GPU on a cluster

    @property
    def label(self) -> str:
        return f"{self.section}/{self.model or SUMMARY}"


def library_fingerprint() -> str:
    """Hash of ssl_lib's source and the mini zoo manifest: a code change re-runs the study."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode())
        digest.update(path.read_bytes())
    manifest = MINI_ZOO_DIR / "manifest.json"
    if manifest.exists():
        digest.update(manifest.read_bytes())
    return digest.hexdigest()


def _slug(name: str) -> str:
    """A file name for a model spec (``file:/a/b.pth?arch=x`` → ``file_a_b.pth_arch_x``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def plan_runs(study: Study, out_dir: Path, results_path: Path) -> list[Run]:
    """Per-model sections: one run per model, then the summary; study-level sections: one run.

    Each run lists what it ``needs``: the runs that write the rows it reads (``SectionInfo.reads``).
    A section's rows are written by its per-model runs, or by its one run if it is study-level;
    pages that read every section (``"*"``) wait for everything except each other.
    """
    runs = []
    for section, cfg in study.sections.items():
        info = SECTIONS.get(section)
        common = {"study": str(study.path), "results_path": str(results_path)}
        if not info.per_model:
            runs.append(Run(section, None, info.notebook(), out_dir / section / f"{SUMMARY}.ipynb",
                            {**common, "seed": study.seed, **cfg.params}, accelerator=info.compute))
            continue
        for model in study.models:
            params = {**common, "model": model, "seed": study.seed, **cfg.params}
            runs.append(Run(section, model, info.notebook(), out_dir / section / f"{_slug(model)}.ipynb", params,
                            f"{info.title}: {model}", accelerator=info.compute))
        runs.append(Run(section, None, info.summary_notebook(), out_dir / section / f"{SUMMARY}.ipynb", common, ""))
    writers = [r for r in runs if r.model is not None or not SECTIONS.get(r.section).per_model]
    every = [r for r in writers if "*" not in SECTIONS.get(r.section).reads]
    planned = []
    for run in runs:
        reads = SECTIONS.get(run.section).reads
        if run.model is not None:
            needs = ()
        elif "*" in reads:
            needs = tuple(r.label for r in every)
        else:
            needs = tuple(r.label for r in writers if r.section in (*reads, run.section) and r is not run)
        planned.append(replace(run, needs=needs))
    return planned


def input_hash(run: Run, study: Study, library: str) -> str:
    payload = {
        "notebook": hashlib.sha256(run.notebook.read_bytes()).hexdigest(),
        "parameters": run.parameters,
        "section": {"datasets": study.sections[run.section].datasets, "zoo": study.zoo},
        "library": library,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _recorded_hash(path: Path) -> str | None:
    if not path.exists():
        return None
    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # an unreadable output is simply re-run
        return None
    if nb.metadata.get("papermill", {}).get("exception"):
        return None
    return nb.metadata.get("ssl_lib", {}).get("input_hash")


def _missing_weights(run: Run, study: Study) -> str | None:
    """Why this run cannot start (a mini checkpoint not trained yet), or None."""
    if run.model is None or study.zoo != "mini":
        return None
    cfg = get_model_cfg(run.model, zoo=study.zoo)
    if cfg.weights.startswith("zoo:") and not (MINI_ZOO_DIR / cfg.weights[4:]).exists():
        return f"checkpoint {cfg.weights[4:]} missing (run `make models`)"
    return None


def _retitle(nb, title: str) -> None:
    """Give each per-model page its own H1 (all runs of one notebook share the source's)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("# "):
            lines = cell.source.lstrip().splitlines()
            cell.source = "\n".join([f"# {title}", *lines[1:]])
            return


def execute_run(run: Run, digest: str, kernels: KernelPool | None = None) -> None:
    """Execute ``run`` into its output notebook (atomically). With ``kernels``, in this worker's
    warm kernel (:mod:`ssl_lib.kernels`); else papermill in a new kernel. A failure raises
    :class:`NotebookFailed` and leaves the partial notebook beside the output as ``.failed.ipynb``."""
    run.output.parent.mkdir(parents=True, exist_ok=True)
    failed = run.output.with_suffix(".failed.ipynb")
    failed.unlink(missing_ok=True)
    for stale in run.output.parent.glob(f".{run.output.name}.*.tmp*"):  # left by a killed earlier attempt
        stale.unlink(missing_ok=True)
    try:
        nb = _execute(run, kernels)
    except NotebookFailed as err:
        with atomic_path(failed, suffix=".ipynb") as tmp:
            nbformat.write(err.nb, tmp)  # for inspection, outside the book
        raise
    for cell in nb.cells:  # papermill's injected parameters hold local paths: keep them out of the book
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    if run.title:
        _retitle(nb, run.title)
    nb.metadata["ssl_lib"] = {"input_hash": digest, "section": run.section, "model": run.model}
    with atomic_path(run.output, suffix=".ipynb") as tmp:
        nbformat.write(nb, tmp)


def _execute(run: Run, kernels: KernelPool | None):
    if kernels is not None:
        return kernels.get().execute(run.notebook, run.parameters)
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / run.output.name
        try:
            return pm.execute_notebook(
                str(run.notebook), str(out), parameters=run.parameters, kernel_name="python3",
                cwd=str(repo_root()), progress_bar=False, log_output=False,
            )
        except PapermillExecutionError as err:
            raise NotebookFailed(err.ename, str(err.evalue), nbformat.read(out, as_version=4)) from None


def write_toc(study: Study, runs: list[Run], book_dir: Path) -> Path:
    """``book/_toc.yml``: the narrative pages, then each section's summary and model pages."""
    chapters: list[dict] = [{"file": "methods"}]
    for section in study.sections:
        summary = next(r for r in runs if r.section == section and r.model is None)
        if not summary.output.exists():
            continue
        pages = [{"file": _rel(r.output, book_dir), "title": r.title}
                 for r in runs if r.section == section and r.model and r.output.exists()]
        chapters.append({"file": _rel(summary.output, book_dir), **({"sections": pages} if pages else {})})
    chapters.append({"file": "paper_tables"})
    toc = {"format": "jb-book", "root": "intro", "chapters": chapters}
    path = book_dir / "_toc.yml"
    with atomic_path(path, suffix=".yml") as tmp:
        tmp.write_text("# Generated by `python -m ssl_lib run`; do not edit.\n" + yaml.safe_dump(toc, sort_keys=False))
    return path


def _rel(path: Path, base: Path) -> str:
    return str(path.resolve().relative_to(base.resolve()).with_suffix(""))


def run_study(
    study_name: str | Path,
    *,
    out_dir: Path | None = None,
    force: bool = False,
    dry_run: bool = False,
    sections: tuple[str, ...] = (),
    models: tuple[str, ...] = (),
    book_dir: Path | None = None,
    engine: str = "local",
    jobs: int = 1,
    address: str | None = None,
    fresh_kernels: bool = False,
    log=print,
) -> int:
    """Execute (or list, with ``dry_run``) the study's runs; returns a process exit code.

    Runs start as soon as the runs they read have finished, ``jobs`` at a time on this machine
    (``engine="local"``) or spread over a Ray cluster (``engine="ray"``). A run whose output
    already holds its input hash is not repeated, so a killed study resumes where it stopped.
    Locally each worker keeps one warm kernel across notebooks unless ``fresh_kernels`` (papermill
    in a new kernel per run, as on Ray).
    """
    from .engines import ENGINES, Task

    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}.")
    study = load_study(study_name)
    for section in sections:
        study.section(section)  # one line naming the study's sections if misspelt
    for model in models:
        if model not in study.models:
            raise UnknownNameError(unknown_name_message("model of this study", model, list(study.models),
                                                        f"(in {study.path})"))
    book_dir = Path(book_dir) if book_dir else repo_root() / "book"
    out_dir = Path(out_dir) if out_dir else book_dir / "results"
    results_path = out_dir / "results.csv"
    planned = plan_runs(study, out_dir, results_path)
    runs = [r for r in planned if (not sections or r.section in sections) and (not models or r.model in (*models, None))]
    if not runs:
        raise ConfigError(f"--section {list(sections)} and --model {list(models)} select no run of {study.path}.")
    if dry_run:
        log(f"study {study.path} · results {results_path} · outputs {out_dir}")
        for r in runs:
            params = {k: v for k, v in r.parameters.items() if k not in ("study", "results_path")}
            datasets = ",".join(study.sections[r.section].datasets) or "-"
            log(f"{r.label:<32} {r.notebook.name:<22} datasets={datasets} {json.dumps(params, sort_keys=True)}")
        log(f"{len(runs)} runs")
        return 0
    runner = ENGINES.get(engine)(jobs=jobs, address=address)
    kernels = KernelPool(repo_root()) if engine == "local" and not fresh_kernels else None
    library = library_fingerprint()
    tasks = [Task(r.label, partial(_run_one, r, study, library, force, results_path, kernels), r.needs,
                  r.accelerator, priority=_priority(r)) for r in runs]
    finished = 0

    def report(task: Task, outcome: Outcome) -> None:
        nonlocal finished
        finished += 1
        timing = f" in {outcome.seconds:.1f} s" if outcome.status == "done" else ""
        detail = f" ({outcome.message})" if outcome.message else ""
        log(f"[{finished}/{len(tasks)}] {task.key}: {outcome.status}{timing}{detail}")

    try:
        outcomes = execute_graph(tasks, runner, report)
    finally:
        runner.close()
        if kernels is not None:
            kernels.close()
    if out_dir.resolve().is_relative_to(book_dir.resolve()):
        write_toc(study, planned, book_dir)  # every page already written, not only this call's
    else:
        log(f"Outputs in {out_dir} are outside the book ({book_dir}): its table of contents was left alone.")
    skipped = sorted({r.model for r in runs if outcomes[r.label].status == "skipped"})
    failures = [r.label for r in runs if outcomes[r.label].status == "failed"]
    if skipped:
        log(f"{len(skipped)} model(s) without checkpoints were left out: {skipped}")
    if failures:
        log(f"{len(failures)} run(s) failed: {', '.join(failures)} (see the output notebooks)")
        return 1
    return 0


def _priority(run: Run) -> int:
    """Study-level evaluations (one long run each) first, then per-model runs, then pages."""
    if not run.accelerator:
        return 2
    return 0 if run.model is None else 1


def _run_one(run: Run, study: Study, library: str, force: bool, results_path: Path,
             kernels: KernelPool | None = None) -> Outcome:
    """One run, wherever the engine put it: skip if its output is current, else execute."""
    if (reason := _missing_weights(run, study)) is not None:
        return Outcome("skipped", reason)
    digest = input_hash(run, study, library)
    reads = SECTIONS.get(run.section).reads
    if run.model is None and reads:  # pages over result rows
        digest = hashlib.sha256((digest + _results_digest(results_path, reads)).encode()).hexdigest()
    if not force and _recorded_hash(run.output) == digest:
        return Outcome("up to date")
    start = time.perf_counter()
    try:
        execute_run(run, digest, kernels)
    except NotebookFailed as err:
        first = err.evalue.splitlines()[0] if err.evalue else ""
        return Outcome("failed", f"{err.ename}: {first}; see {run.output.with_suffix('.failed.ipynb')}")
    return Outcome("done", seconds=time.perf_counter() - start)


def _results_digest(path: Path, sections: tuple[str, ...]) -> str:
    """Hash of the result rows of ``sections`` (``"*"``: all rows)."""
    from .results import read_results

    if not path.exists():
        return ""
    rows = read_results(path)
    if "*" not in sections:
        rows = rows[rows.section.isin(sections)]
    return hashlib.sha256(rows.to_csv(index=False).encode()).hexdigest()
