"""The run graph and its engines: order, parallelism, resumption after a kill, Ray."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from ssl_lib.engines import Outcome, Task, execute_graph, local_engine
from ssl_lib.exceptions import ConfigError
from ssl_lib.models import build_arch
from ssl_lib.results import RESUME_KEY
from ssl_lib.runner import plan_runs, run_study
from ssl_lib.study import load_study

ROOT = Path(__file__).resolve().parents[1]


def test_plan_waits_only_for_the_rows_each_page_reads(tmp_path):
    runs = {r.label: r for r in plan_runs(load_study("mini"), tmp_path, tmp_path / "r.csv")}
    models = load_study("mini").models
    assert all(not r.needs for r in runs.values() if r.model is not None)
    assert set(runs["linear/summary"].needs) == {f"linear/{m}" for m in models}
    assert set(runs["finetune/summary"].needs) == {f"{s}/{m}" for s in ("linear", "finetune") for m in models}
    assert set(runs["invariances/summary"].needs) == {f"linear/{m}" for m in models}
    # pages over every section wait for all rows, but not for summaries or for each other
    correlation = set(runs["correlation/summary"].needs)
    assert "scorecard/summary" not in correlation and "linear/summary" not in correlation
    assert {f"fewshot/{m}" for m in models} | {"retention/summary", "invariances/summary"} <= correlation
    assert runs["linear/byol"].accelerator and not runs["linear/summary"].accelerator
    assert not runs["correlation/summary"].accelerator and runs["retention/summary"].accelerator


def _recording_task(key, log, needs=(), seconds=0.05, priority=0):
    def call():
        log.append(("start", key, time.perf_counter()))
        time.sleep(seconds)
        log.append(("end", key, time.perf_counter()))
        return Outcome("done")
    return Task(key, call, needs, priority=priority)


def test_graph_runs_needs_first_and_uses_every_slot():
    log, lock_log = [], []
    tasks = [_recording_task("a", log), _recording_task("b", log), _recording_task("c", log),
             _recording_task("page", log, needs=("a", "b", "c", "not-planned"))]
    outcomes = execute_graph(tasks, local_engine(jobs=2), lambda t, o: lock_log.append(t.key))
    assert set(outcomes) == {"a", "b", "c", "page"} and lock_log[-1] == "page"
    times = {(kind, key): t for kind, key, t in log}
    assert times[("start", "page")] >= max(times[("end", k)] for k in "abc")
    running, peak = 0, 0
    for kind, _, _ in sorted(log, key=lambda e: e[2]):
        running += 1 if kind == "start" else -1
        peak = max(peak, running)
    assert peak == 2


def test_graph_starts_by_priority_and_survives_a_failing_task():
    order = []

    def boom():
        order.append("boom")
        raise RuntimeError("kernel died")

    tasks = [Task("late", lambda: order.append("late") or Outcome("done"), priority=2),
             Task("boom", boom, priority=1),
             Task("first", lambda: order.append("first") or Outcome("done"), priority=0),
             Task("after", lambda: order.append("after") or Outcome("done"), needs=("boom", "first")),
             Task("page", lambda: order.append("page") or Outcome("done"), needs=("boom",))]
    outcomes = execute_graph(tasks, local_engine(jobs=1), lambda t, o: None)
    assert order == ["first", "boom", "after", "late"]  # "after" (priority 0) is ready once "boom" ends
    assert outcomes["boom"].status == "failed" and "kernel died" in outcomes["boom"].message
    assert outcomes["after"].status == "done"  # one of its inputs is there
    # a page whose every input failed does not report an empty success
    assert outcomes["page"].status == "failed" and "every run it reads failed (boom)" in outcomes["page"].message


def test_a_cycle_and_a_bad_job_count_are_one_line_errors():
    with pytest.raises(ConfigError, match="wait on each other"):
        execute_graph([Task("x", lambda: Outcome("done"), ("y",)), Task("y", lambda: Outcome("done"), ("x",))],
                      local_engine(jobs=1), lambda t, o: None)
    with pytest.raises(ConfigError, match="at least 1"):
        local_engine(jobs=0)


@pytest.fixture
def tiny_study(tmp_path):
    """Two random-init models × linear on one small dataset, plus its summary: 3 runs."""
    specs = []
    for seed in (0, 1):
        ckpt = tmp_path / f"rand{seed}.pth"
        torch.manual_seed(seed)
        torch.save({"state_dict": build_arch("mini_resnet").state_dict()}, ckpt)
        specs.append(f"file:{ckpt}?arch=mini_resnet")
    study = tmp_path / "tiny.yaml"
    study.write_text(yaml.safe_dump({
        "name": "tiny", "zoo": "mini", "models": specs,
        "sections": {"linear": {"datasets": ["mini-digits"], "params": {"n_boot": 0}}},
    }))
    return study


def _assert_complete(book: Path, n_models: int):
    rows = pd.read_csv(book / "results" / "results.csv")  # parses: never half-written
    assert (rows.section == "linear").sum() == n_models and not rows.duplicated(RESUME_KEY).any()
    assert len(list((book / "results" / "linear").glob("*.ipynb"))) == n_models + 1
    assert not list((book / "results").rglob("*.tmp*"))


@pytest.mark.slow
def test_a_killed_study_resumes_without_repeating_finished_runs(tiny_study, tmp_path):
    book = tmp_path / "book"
    cmd = [sys.executable, "-m", "ssl_lib", "run", str(tiny_study), "--out", str(book / "results")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env,
                            start_new_session=True, cwd=ROOT)
    first = proc.stdout.readline()  # the first run has finished: kill the study mid-way
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ": done in" in first, first
    finished = first.split("] ", 1)[1].rsplit(": done in", 1)[0]
    rows = pd.read_csv(book / "results" / "results.csv")  # the finished run's rows, and it parses
    assert (rows.section == "linear").sum() == 1

    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert again.returncode == 0, again.stdout + again.stderr
    lines = again.stdout.splitlines()
    assert any(line.endswith(f"{finished}: up to date") for line in lines), lines
    assert sum(": done in" in line for line in lines) == 2, lines  # the other model and the summary
    _assert_complete(book, 2)  # and the killed run's temporary notebook is gone


@pytest.mark.slow
def test_ray_engine_runs_a_tiny_grid_on_a_local_instance(tiny_study, tmp_path):
    ray = pytest.importorskip("ray")
    book = tmp_path / "book"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        logs = []
        assert run_study(tiny_study, book_dir=book, out_dir=book / "results", engine="ray", log=logs.append) == 0, logs
        _assert_complete(book, 2)
        assert logs[-1].startswith("[3/3] linear/summary: done"), logs
        logs.clear()
        assert run_study(tiny_study, book_dir=book, out_dir=book / "results", engine="ray", log=logs.append) == 0
        assert sum(line.endswith("up to date") for line in logs) == 3, logs
    finally:
        ray.shutdown()


def _notebook(path: Path, *sources: str, parameters: str = "") -> Path:
    import nbformat

    cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]})]
    cells += [nbformat.v4.new_code_cell(src) for src in sources]
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}), path)
    return path


@pytest.mark.slow
def test_a_warm_kernel_starts_each_notebook_from_a_fresh_state(tmp_path):
    from ssl_lib.kernels import NotebookFailed, WarmKernel

    dirty = _notebook(tmp_path / "dirty.ipynb", "import os, torch, matplotlib\nleft_over = 1\ntorch.manual_seed(5)\n"
                      "matplotlib.rcParams['lines.linewidth'] = 9\nos.chdir('/')", parameters="x = 0")
    check = _notebook(tmp_path / "check.ipynb",
                      "import os, torch, matplotlib\n"
                      "assert 'left_over' not in globals() and x == 3\n"
                      "assert os.getcwd() == CWD\n"
                      "assert matplotlib.rcParams['lines.linewidth'] != 9\n"
                      "print(torch.initial_seed())", parameters="x = 0\nCWD = ''")
    kernel = WarmKernel(tmp_path)
    try:
        kernel.execute(dirty, {"x": 1})
        nb = kernel.execute(check, {"x": 3, "CWD": str(tmp_path)})
        assert kernel.runs == 2  # the same kernel ran both
        with pytest.raises(NotebookFailed, match="AssertionError"):
            kernel.execute(check, {"x": 4, "CWD": str(tmp_path)})
        assert kernel.km is None  # replaced after a failure
    finally:
        kernel.shutdown()
    # the global torch stream is reseeded from entropy, as in a new process: not the 5 set before
    printed = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert int(printed) != 5
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "x = 3" in injected[0].source
