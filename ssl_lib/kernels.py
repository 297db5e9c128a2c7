"""Notebook execution in a kernel that outlives one notebook.

Starting a kernel and importing torch, torchvision, scikit-learn and matplotlib costs 6–8 s of CPU
per notebook, longer than many of the mini study's runs themselves. :class:`WarmKernel` keeps one
kernel per worker and, between notebooks, clears everything a notebook can leave behind: the
namespace (``%reset -f``), figures and matplotlib settings, the working directory, and the global
random generators reseeded from entropy as in a new process (torch, numpy and ``random`` all
start unseeded), so that a notebook computes the same thing here as under ``papermill`` in a new
kernel. Imported modules stay imported; that is
the point. The kernel is replaced after a failure and after ``max_runs`` notebooks.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import nbformat

__all__ = ["WarmKernel", "KernelPool", "NotebookFailed"]

# A fresh process's state, restored before every notebook.
_RESET = """\
%reset -f
import os as _os, random as _random, sys as _sys
_os.chdir({cwd!r})
if "matplotlib" in _sys.modules:
    import matplotlib as _mpl, matplotlib.pyplot as _plt
    _plt.close("all")
    _mpl.rcParams.update(_mpl.rcParamsOrig)
if "torch" in _sys.modules:
    import torch as _torch
    _torch.seed()
    _torch.set_num_threads({threads})
if "numpy" in _sys.modules:
    import numpy as _np
    _np.random.seed(None)
_random.seed(None)
del _os, _random, _sys
%reset -f
"""


class NotebookFailed(Exception):
    """A cell raised: ``ename``/``evalue`` as papermill reports them; ``nb`` holds the partial outputs."""

    def __init__(self, ename: str, evalue: str, nb) -> None:
        super().__init__(f"{ename}: {evalue}")
        self.ename, self.evalue, self.nb = ename, evalue, nb


class WarmKernel:
    def __init__(self, cwd: str | Path, kernel_name: str = "python3", max_runs: int = 40) -> None:
        self.cwd, self.kernel_name, self.max_runs = str(cwd), kernel_name, max_runs
        self.km, self.runs = None, 0
        self.threads = int(os.environ.get("OMP_NUM_THREADS") or 0) or (os.cpu_count() or 1)

    def _start(self) -> None:
        from jupyter_client.manager import KernelManager

        self.km = KernelManager(kernel_name=self.kernel_name)
        self.km.start_kernel(cwd=self.cwd)
        self.runs = 0

    def shutdown(self) -> None:
        if self.km is not None:
            self.km.shutdown_kernel(now=True)
            self.km = None

    def _client(self, nb):
        from nbclient import NotebookClient

        return NotebookClient(nb, km=self.km, kernel_name=self.kernel_name, timeout=None,
                              resources={"metadata": {"path": self.cwd}})

    def execute(self, notebook: str | Path, parameters: dict):
        """The executed notebook (papermill's parameter injection); raises :class:`NotebookFailed`."""
        from nbclient.exceptions import CellExecutionError, DeadKernelError
        from papermill.iorw import load_notebook_node
        from papermill.parameterize import parameterize_notebook

        if self.km is None or not self.km.is_alive() or self.runs >= self.max_runs:
            self.shutdown()
            self._start()
        reset = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
            _RESET.format(cwd=self.cwd, threads=self.threads))])
        nb = parameterize_notebook(load_notebook_node(str(notebook)), parameters, kernel_name=self.kernel_name)
        self.runs += 1
        try:
            self._run(reset)
            self._run(nb)
        except CellExecutionError as err:
            self.shutdown()  # whatever state the failure left is not carried into the next notebook
            raise NotebookFailed(err.ename, str(err.evalue), nb) from None
        except DeadKernelError:
            self.shutdown()
            raise NotebookFailed("DeadKernelError", "the kernel died (out of memory?)", nb) from None
        return nb

    def _run(self, nb) -> None:
        client = self._client(nb)
        try:
            client.execute()
        finally:
            if client.kc is not None:
                client.kc.stop_channels()


class KernelPool:
    """One :class:`WarmKernel` per worker thread, all shut down by :meth:`close`."""

    def __init__(self, cwd: str | Path) -> None:
        self.cwd = cwd
        self._local, self._lock, self._all = threading.local(), threading.Lock(), []

    def get(self) -> WarmKernel:
        kernel = getattr(self._local, "kernel", None)
        if kernel is None:
            kernel = self._local.kernel = WarmKernel(self.cwd)
            with self._lock:
                self._all.append(kernel)
        return kernel

    def close(self) -> None:
        with self._lock:
            for kernel in self._all:
                kernel.shutdown()
            self._all.clear()
