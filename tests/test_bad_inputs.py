"""Bad input, as a new user types it: each case ends in one line that names the input and what to do,
is caught before any work starts, and leaves nothing behind (no results table, no outputs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import torch

from ssl_lib.cli import main

ROOT = Path(__file__).resolve().parents[1]

GOOD = """name: t
zoo: mini
models: [random]
sections:
  linear:
    datasets: [mini-digits]
    params: {n_boot: 0}
"""

# (case id, study YAML or None for GOOD, extra CLI args, a piece of the expected message)
STUDY_CASES = [
    ("not-yaml", "name: [t\n", [], "is not valid YAML"),
    ("not-a-mapping", "- linear\n", [], "must be a mapping of keys"),
    ("missing-zoo", GOOD.replace("zoo: mini\n", ""), [], "lacks the key(s) ['zoo']"),
    ("unknown-key", GOOD + "extra: 1\n", [], "unknown key(s) ['extra']"),
    ("unknown-zoo", GOOD.replace("zoo: mini", "zoo: minni"), [], "Unknown zoo 'minni'. Did you mean 'mini'"),
    ("models-a-string", GOOD.replace("[random]", "random"), [], "models must be a non-empty list"),
    ("models-empty", GOOD.replace("[random]", "[]"), [], "models must be a non-empty list"),
    ("models-twice", GOOD.replace("[random]", "[random, random]"), [], "lists ['random'] twice"),
    ("unknown-model", GOOD.replace("[random]", "[byoll]"), [], "Did you mean 'byol'"),
    ("unknown-timm-model", GOOD.replace("[random]", "['timm:not_a_model_at_all']"), [], "Unknown timm model"),
    ("bad-file-arch", GOOD.replace("[random]", "['file:/x.pth?arch=bogus']"), [], "Unknown architecture 'bogus'"),
    ("sections-a-list", GOOD.replace("sections:\n  linear:\n    datasets: [mini-digits]\n    params: {n_boot: 0}\n",
                                     "sections: [linear]\n"), [], "sections must be a mapping"),
    ("unknown-section", GOOD.replace("  linear:", "  lineer:"), [], "Unknown section 'lineer'. Did you mean 'linear'"),
    ("dataset-key-misspelt", GOOD.replace("datasets:", "dataset:"), [], "takes a mapping with 'datasets' and/or 'params'"),
    ("datasets-a-string", GOOD.replace("[mini-digits]", "mini-digits"), [], "datasets must be a list of dataset names"),
    ("unknown-dataset", GOOD.replace("[mini-digits]", "[mini-digitz]"), [], "Did you mean 'mini-digits'"),
    ("wrong-task", GOOD.replace("[mini-digits]", "[mini-scenes]"), [], "the linear section takes classification"),
    ("few-shot-only", GOOD.replace("[mini-digits]", "[cropdiseases]"), [], "serves few-shot-only; the linear section takes"),
    ("unknown-param", GOOD.replace("{n_boot: 0}", "{n_bot: 0}"), [], "Unknown parameter of the linear notebook 'n_bot'"),
    ("negative-n-boot", GOOD.replace("{n_boot: 0}", "{n_boot: -1}"), [], "'n_boot' must be >= 0"),
    ("zero-batch", GOOD.replace("{n_boot: 0}", "{batch_size: 0}"), [], "'batch_size' must be >= 1"),
    ("unknown-solver", GOOD.replace("{n_boot: 0}", "{solver: torchh}"), [], "Unknown solver 'torchh'"),
    ("n-boot-not-int", GOOD.replace("{n_boot: 0}", "{n_boot: many}"), [], "'n_boot' must be an integer"),
    ("negative-seed", GOOD + "seed: -1\n", [], "seed must be a non-negative integer"),
    ("cuda-on-cpu", GOOD.replace("{n_boot: 0}", "{device: cuda}"), [], "has no CUDA device"),
    ("fewshot-negative-episodes", GOOD.replace("linear:\n    datasets: [mini-digits]\n    params: {n_boot: 0}",
                                               "fewshot:\n    datasets: [mini-digits]\n    params: {n_episodes: -5}"),
     [], "'n_episodes' must be >= 1"),
    ("fewshot-bad-resize", GOOD.replace("linear:\n    datasets: [mini-digits]\n    params: {n_boot: 0}",
                                        "fewshot:\n    datasets: [mini-digits]\n    params: {resize: sqare}"),
     [], "Unknown resize 'sqare'. Did you mean 'square'"),
    ("attention-wrong-task", GOOD.replace("linear:\n    datasets: [mini-digits]\n    params: {n_boot: 0}",
                                          "attention:\n    params: {dataset: mini-normals}"),
     [], "the attention section takes classification"),
    ("dense-bad-head", GOOD.replace("linear:\n    datasets: [mini-digits]\n    params: {n_boot: 0}",
                                    "dense:\n    datasets: [mini-normals]\n    params: {normals_head: regres}"),
     [], "Unknown normals head 'regres'"),
    ("model-not-in-study", None, ["--model", "byol"], "Unknown model of this study 'byol'"),
    ("section-not-in-study", None, ["--section", "fewshot"], "Unknown section 'fewshot'"),
    ("section-misspelt", None, ["--section", "lineer"], "Did you mean 'linear'"),
    ("zero-jobs", None, ["--jobs", "0"], "--jobs must be at least 1"),
]


def _one_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n{err}"
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


@pytest.mark.parametrize(("case", "study", "args", "message"), STUDY_CASES, ids=[c[0] for c in STUDY_CASES])
@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
def test_a_bad_study_or_command_is_one_line_and_leaves_nothing(case, study, args, message, dry_run, tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(GOOD if study is None else study)
    out = tmp_path / "out"
    code = main(["run", str(path), "--out", str(out), *args, *(["--dry-run"] if dry_run else [])])
    assert code == 2
    assert message in _one_line(capsys.readouterr().err)
    assert not out.exists()  # nothing written: no results table, no outputs


@pytest.mark.parametrize(("argv", "message"), [
    (["datasets", "--check", "folder:/nonexistent/tree"], "folder:/nonexistent/tree"),
    (["run", "no-such-study"], "Unknown study 'no-such-study'"),
])
def test_other_commands_fail_in_one_line(argv, message, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    assert code in (1, 2)
    assert message in (captured.err + captured.out) and "Traceback" not in captured.err + captured.out


def _papermill(notebook: str, args: list[str], tmp_path: Path):
    out = tmp_path / "out.ipynb"
    proc = subprocess.run(
        [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / f"{notebook}.ipynb"), str(out), "--cwd", str(ROOT),
         "-k", "python3", "--no-progress-bar", *args], capture_output=True, text=True, cwd=tmp_path)
    return proc, out


def _checkpoints(tmp_path: Path) -> dict[str, Path]:
    from ssl_lib.models import build_arch

    good = tmp_path / "good.pth"
    torch.save({"state_dict": build_arch("mini_resnet").state_dict()}, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:2000])
    pickled = tmp_path / "pickled.pth"
    torch.save({"state_dict": build_arch("mini_resnet").state_dict(), "opt": torch.optim.SGD}, pickled)
    return {"truncated": truncated, "pickled": pickled}


NOTEBOOK_CASES = [
    ("linear", ["-p", "modle", "byol"], "Unknown parameter of the linear notebook 'modle'"),
    ("linear", ["-p", "n_boot", "-1"], "'n_boot' must be >= 0"),
    ("fewshot", ["-p", "n_episodes", "-5"], "'n_episodes' must be >= 1"),
    ("linear", ["-p", "device", "cuda"], "has no CUDA device"),
    ("linear", ["-p", "model", "file:/nonexistent.pth?arch=mini_resnet"], "does not exist"),
    ("linear", ["-p", "model", "file:{truncated}?arch=mini_resnet"], "cannot be read"),
    ("linear", ["-p", "model", "file:{pickled}?arch=mini_resnet"], "safe load (weights_only=True) refuses"),
    ("linear", ["-p", "model", "timm:vit_tiny_patch16_224.no_such_tag"], "tag"),
    ("linear", ["-p", "dataset", "folder:{empty}"], "train/ holds no images"),
    ("linear", ["-p", "results_path", "{a_file}/results.csv"], "is not a writable folder"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("notebook", "args", "message"), NOTEBOOK_CASES, ids=[f"{c[0]}-{'-'.join(c[1][1:])[:30]}"
                                                                               for c in NOTEBOOK_CASES])
def test_bad_notebook_parameters_are_one_line_before_any_work(notebook, args, message, tmp_path):
    paths = {k: str(v) for k, v in _checkpoints(tmp_path).items()}
    (tmp_path / "empty" / "train").mkdir(parents=True)
    (tmp_path / "empty" / "test").mkdir()
    (tmp_path / "a_file").write_text("x")
    paths.update(empty=str(tmp_path / "empty"), a_file=str(tmp_path / "a_file"))
    args = [a.format(**paths) for a in args]
    results = tmp_path / "results" / "results.csv"
    if "results_path" not in args:
        args += ["-p", "results_path", str(results)]
    proc, out = _papermill(notebook, args, tmp_path)
    assert proc.returncode != 0
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert len(errors) == 1 and len(errors[0]["traceback"]) == 1, errors
    assert message in errors[0]["evalue"], errors[0]["evalue"]
    assert not results.exists() and not (results.parent / "outputs").exists()
