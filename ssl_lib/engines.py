"""Where a study's runs execute: a local pool of kernels, or a Ray cluster.

The runner hands an engine a dependency graph of runs. An engine only decides *where* and *how
many at once*; what a run does (papermill into an atomically written notebook) and when it may
start (all the runs it reads have finished) are the runner's. Both engines write the same files,
so a study started on a laptop can be finished on a cluster and vice versa.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from ._registry import Registry
from .exceptions import ConfigError

__all__ = ["ENGINES", "Task", "Outcome", "execute_graph", "local_engine", "ray_engine"]


@dataclass(frozen=True)
class Task:
    """One unit of work: ``call()`` runs it; ``needs`` are the keys of tasks that must finish first."""

    key: str
    call: Callable[[], "Outcome"]
    needs: tuple[str, ...] = ()
    accelerator: bool = False  # wants a GPU where the engine has them
    priority: int = 0  # among ready tasks, lower starts first (long ones early shorten the study)


@dataclass(frozen=True)
class Outcome:
    status: str  # "done" | "up to date" | "skipped" | "failed"
    message: str = ""
    seconds: float = 0.0


class Engine:
    """``submit`` starts a task and returns a handle; ``wait`` returns the finished handles."""

    def submit(self, task: Task) -> Any: ...

    def wait(self, handles: list) -> list: ...

    def result(self, handle) -> Outcome: ...

    @property
    def slots(self) -> int: ...

    def close(self) -> None: ...


def execute_graph(tasks: Iterable[Task], engine: Engine, on_finish: Callable[[Task, Outcome], None]) -> dict[str, Outcome]:
    """Run every task once its needs have finished, at most ``engine.slots`` at a time, by priority
    and then in the given order among the ready ones. A task whose needs *all* failed fails
    without running (a page over rows that no run wrote would report an empty success); needs
    outside the graph are ignored."""
    tasks = list(tasks)
    keys = {t.key for t in tasks}
    waiting = {t.key: {n for n in t.needs if n in keys and n != t.key} for t in tasks}
    needs = {k: set(v) for k, v in waiting.items()}
    by_key = {t.key: t for t in tasks}
    order = sorted(range(len(tasks)), key=lambda i: (tasks[i].priority, i))
    pending, running, outcomes = [tasks[i].key for i in order], {}, {}
    while pending or running:
        for key in [k for k in pending if not waiting[k]]:
            if needs[key] and all(outcomes[n].status == "failed" for n in needs[key]):
                pending.remove(key)
                outcomes[key] = Outcome("failed", f"every run it reads failed ({', '.join(sorted(needs[key]))})")
                for rest in waiting.values():
                    rest.discard(key)
                on_finish(by_key[key], outcomes[key])
                continue
            if len(running) >= engine.slots:
                break
            pending.remove(key)
            running[engine.submit(by_key[key])] = key
        if not running:
            if not pending:
                break
            if all(waiting[k] for k in pending):  # a cycle would leave tasks waiting forever
                raise ConfigError(f"Runs wait on each other: {pending}")
            continue
        for handle in engine.wait(list(running)):
            key = running.pop(handle)
            outcome = engine.result(handle)
            outcomes[key] = outcome
            for rest in waiting.values():
                rest.discard(key)
            on_finish(by_key[key], outcome)
    return outcomes


ENGINES: Registry = Registry("engine")


class _Local(Engine):
    """``jobs`` kernels at once on this machine, each given an equal share of the CPU threads."""

    def __init__(self, jobs: int = 1) -> None:
        if jobs < 1:
            raise ConfigError(f"--jobs must be at least 1, got {jobs}.")
        self.jobs = jobs
        if jobs > 1:  # kernels inherit this; two 1-thread jobs beat one 2-thread job on small tensors
            os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
        self.pool = ThreadPoolExecutor(jobs, thread_name_prefix="ssl-run")

    @property
    def slots(self) -> int:
        return self.jobs

    def submit(self, task: Task) -> Future:
        return self.pool.submit(task.call)

    def wait(self, handles: list) -> list:
        return list(wait(handles, return_when=FIRST_COMPLETED).done)

    def result(self, handle: Future) -> Outcome:
        try:
            return handle.result()
        except Exception as err:  # noqa: BLE001 - one failed run must not stop the study
            return Outcome("failed", f"{type(err).__name__}: {err}")

    def close(self) -> None:
        self.pool.shutdown(wait=True)


@ENGINES.register("local")
def local_engine(jobs: int = 1, **_: Any) -> Engine:
    return _Local(jobs)


def _call(task_call):
    return task_call()


class _Ray(Engine):
    """One Ray task per run: one GPU for runs that evaluate models (when the cluster has GPUs), one
    CPU for pages that only read result rows. A run whose worker dies is retried ``retries`` times;
    a run that fails in its notebook is not (it would fail again)."""

    def __init__(self, address: str | None = None, retries: int = 2, **_: Any) -> None:
        try:
            import ray
        except ImportError:
            raise ConfigError("The Ray engine needs ray: pip install -e '.[ray]' (or pip install 'ray>=2.30').") from None
        self.ray = ray
        if not ray.is_initialized():
            ray.init(address=address or os.environ.get("RAY_ADDRESS") or None, include_dashboard=False,
                     log_to_driver=False, ignore_reinit_error=True)
        resources = ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        self.cpus = max(1, int(resources.get("CPU", 1)))
        self.remote = ray.remote(max_retries=retries, retry_exceptions=False)(_call)

    @property
    def slots(self) -> int:
        return max(self.cpus, self.gpus)  # Ray queues what does not fit; this bounds the driver's bookkeeping

    def submit(self, task: Task):
        gpus = 1 if task.accelerator and self.gpus else 0
        return self.remote.options(num_cpus=1, num_gpus=gpus).remote(task.call)

    def wait(self, handles: list) -> list:
        done, _ = self.ray.wait(handles, num_returns=1)
        return done

    def result(self, handle) -> Outcome:
        try:
            return self.ray.get(handle)
        except Exception as err:  # noqa: BLE001 - a worker that died past its retries
            return Outcome("failed", f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}")

    def close(self) -> None:
        pass  # the cluster outlives the study; a local instance ends with the process


@ENGINES.register("ray")
def ray_engine(address: str | None = None, retries: int = 2, **_: Any) -> Engine:
    return _Ray(address, retries)
