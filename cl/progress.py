"""Progress that fits where it is shown.

* In a terminal: a tqdm bar, redrawn in place, with one line per epoch above it.
* In JupyterLab: tqdm's widget bar (ipywidgets) and one line per epoch.
* Anywhere else (a notebook executed by papermill, a pipe, a log file): one line per epoch,
  nothing per step.

``python -m cl.study run`` executes notebooks with papermill, which relays a kernel's output
line by line: a bar drawn in the kernel would be recorded as one line per refresh. So
cl.study names a progress file in ``NEGATIVES_PROGRESS`` for the kernel it starts; a run
there writes its step count to that file (and prints only its epoch lines), and
:func:`watch` draws the live bar in cl.study's own terminal from it.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import threading
import time
from pathlib import Path

from tqdm import std
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

ENV = "NEGATIVES_PROGRESS"
WRITE_EVERY = 0.5  # seconds: how often a run rewrites the progress file
POLL_EVERY = 0.25  # seconds: how often watch() reads it


def in_kernel() -> bool:
    """Whether this process is a Jupyter kernel, whose output goes to a notebook."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython else None
    return shell is not None and "IPKernelApp" in shell.config


def say(line: str) -> None:
    """One status line: into the notebook in a kernel, else to stderr (a command's stdout may carry its
    result), written so that it does not tear a live bar."""
    tqdm.write(line, file=sys.stdout if in_kernel() else sys.stderr)


def epoch_line(name: str, epochs: int, row: dict) -> str:
    """The line a run prints after an epoch."""
    return (f"{name} epoch {row['epoch']}/{epochs}: loss {row['loss']:.3f}, "
            f"kNN top-1 {row['knn_top1']:.1f} %, {row['images_per_second']:,.0f} images/s")


class RunProgress:
    """The progress of one run: its steps as a live bar, or into the progress file, and a line per epoch.

    ``enabled=False`` shows nothing (tests, and the other ranks under torchrun).
    """

    def __init__(self, name: str, epochs: int, steps_per_epoch: int, start_epoch: int, enabled: bool = True):
        self.name, self.epochs = name, epochs
        self.total, self.done = epochs * steps_per_epoch, start_epoch * steps_per_epoch
        self.enabled = enabled
        self.path = Path(os.environ[ENV]) if enabled and os.environ.get(ENV) else None
        live = enabled and self.path is None and (in_kernel() or sys.stderr.isatty())
        self.bar = tqdm(total=self.total, initial=self.done, desc=name, mininterval=1) if live else None
        self.written = -math.inf

    def step(self, epoch: int, loss: float) -> None:
        """One training step of (0-based) ``epoch`` is done."""
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix(epoch=epoch + 1, loss=f"{loss:.3f}", refresh=False)
            self.bar.update(1)  # redraws at most once a second (mininterval)
        self._write(time.monotonic() - self.written >= WRITE_EVERY, epoch=epoch + 1, saved=epoch, loss=loss)

    def epoch(self, row: dict) -> None:
        """An epoch is done; ``row`` is its row of metrics.json."""
        if self.enabled:
            say(epoch_line(self.name, self.epochs, row))
        self._write(True, epoch=min(row["epoch"] + 1, self.epochs), saved=row["epoch"], loss=row["loss"])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def _write(self, due: bool, **state) -> None:
        """Rewrite the progress file, when there is one and a write is ``due``. ``state``: the epoch in
        training (1-based), the epochs ``saved`` in checkpoints, the last loss."""
        if self.path is None or not due:
            return
        self.written = time.monotonic()
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps({"run": self.name, "step": self.done, "total": self.total,
                                       "epochs": self.epochs, **state}))
            os.replace(tmp, self.path)
        except OSError:  # a progress display that cannot be written (a full disk, say) must not stop the run
            tmp.unlink(missing_ok=True)


def slot_path(path: Path, slot: int) -> Path:
    """The progress file of the ``slot``-th of several runs training at once (cl.pool): ``path`` itself
    for the first, a sibling ``<stem>.<slot><suffix>`` for the others."""
    return path if slot == 0 else path.with_name(f"{path.stem}.{slot}{path.suffix}")


def _slot_paths(path: Path) -> list[Path]:
    """``path`` and the progress files of its other slots."""
    return [path, *sorted(path.parent.glob(f"{path.stem}.[0-9]*{path.suffix}"))]


def read_states(path: Path) -> list[dict]:
    """The last state of every run that wrote to ``path`` or to one of its slots' files."""
    return [state for state in map(read_state, _slot_paths(path)) if state is not None]


def read_state(path: Path) -> dict | None:
    """The last state a run wrote to the progress file ``path``, None before the first."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class _Drawer:
    """A terminal bar that follows a progress file: a new bar for each run named in it."""

    def __init__(self, path: Path, file, position: int = 0):
        self.path, self.file, self.position, self.run, self.bar = path, file, position, None, None

    def draw(self) -> None:
        state = read_state(self.path)
        if state is None:
            return
        if state["run"] != self.run:
            self.close()
            self.run = state["run"]
            self.bar = std.tqdm(total=state["total"], initial=state["step"], desc=self.run, file=self.file,
                                mininterval=0, dynamic_ncols=True, position=self.position)
        self.bar.set_postfix(epoch=f"{state['epoch']}/{state['epochs']}", loss=f"{state['loss']:.3f}",
                             refresh=False)
        self.bar.update(state["step"] - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


@contextlib.contextmanager
def watch(path: Path, file=None):
    """While the body runs, draw a live bar on ``file`` (default: stderr, if it is a terminal) from the
    progress file ``path``, which a run in another process writes, and one bar more for each run
    training beside it (their files: :func:`slot_path`); log records are written above them."""
    for stale in _slot_paths(path):
        stale.unlink(missing_ok=True)
    file = file if file is not None else (sys.stderr if sys.stderr.isatty() else None)
    if file is None:
        yield
        return
    drawers, stop = {}, threading.Event()

    def draw():
        for position, slot in enumerate(_slot_paths(path)):
            drawers.setdefault(slot, _Drawer(slot, file, position)).draw()

    def poll():
        while not stop.wait(POLL_EVERY):
            draw()

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        with logging_redirect_tqdm(tqdm_class=std.tqdm):
            yield
    finally:
        stop.set()
        thread.join()
        draw()
        for drawer in drawers.values():
            drawer.close()
