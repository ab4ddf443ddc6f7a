"""The run folder: what a training run keeps on disk, and how nothing in it is ever half-written.

``runs/<scale>/<run>/`` holds ``config.yaml`` (written with the first checkpoint),
``checkpoint.pt`` and ``checkpoint.prev.pt`` (after every epoch; the one it replaces is kept
for when the latest is unreadable), ``metrics.json`` (``finished`` once the final evaluation
is in) and ``probe.pt`` (the probe set's embeddings after every epoch). Every file is written
atomically; a lock (``.lock``, released by the OS however the process ends) keeps a second
process out while one trains; ``finished_run`` decides whether a finished run is reused.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import math
import os
import pickle
import socket
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist

from cl import cli
from cl.cli import UserError
from cl.config import Config, ConfigError
from cl.moco import distributed
from cl.progress import say


class RunLocked(UserError, RuntimeError):
    """Another process is training in the run folder; ``holder`` names it."""

    def __init__(self, message: str, holder: str = "another process"):
        super().__init__(message)
        self.holder = holder


class CheckpointError(UserError, RuntimeError):
    """A checkpoint file cannot be read: truncated, corrupt, or not written by this code."""


class DiskFull(UserError, RuntimeError):
    """No space left for a file of the run; nothing half-written is left behind."""


class TrainingDiverged(UserError, RuntimeError):
    """The loss, the model's parameters or buffers, or the metrics became NaN or infinite."""


CHECKPOINT, PREVIOUS, PROBE_SET = "checkpoint.pt", "checkpoint.prev.pt", "probe.pt"
CONFIG, METRICS = "config.yaml", "metrics.json"
WAIT_EVERY = 2.0  # seconds between tries at a run folder another process holds (locked(wait=True))
CHECKPOINT_KEYS = {"config", "epoch", "model", "optimizer", "generator", "device_generator", "history"}


def atomic_write(path: Path, content: bytes, keep: Path | None = None):
    """Write ``content`` to ``path`` through a temporary file: a reader finds the old file or the new
    one, never part of one. ``keep``: where the file it replaces goes. A full disk raises DiskFull,
    and no temporary file is left, whatever stops the write."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(content)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            raise DiskFull(f"no space left on the device of {path.parent} for {path.name} "
                           f"({len(content) / 1e6:.1f} MB): free some space, then run again "
                           f"(a run resumes from its last checkpoint)") from error
        raise
    if keep is not None and path.exists():
        os.replace(path, keep)
    os.replace(tmp, path)


def write_json(path: Path, obj):
    atomic_write(path, json.dumps(obj, indent=1).encode())


def save_torch(path: Path, obj, keep: Path | None = None):
    """``torch.save`` of ``obj`` to ``path``, atomically (``keep``: as for :func:`atomic_write`)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write(path, buffer.getvalue(), keep=keep)

def read_checkpoint(path: Path, device="cpu") -> dict:
    """The state a checkpoint holds; CheckpointError when the file is truncated, corrupt or not a checkpoint
    of this code (tensors only: pickled code is refused)."""
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files that are not its own
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # garbage makes the unpickler fail in any way (IndexError, KeyError, ...)
        raise CheckpointError(f"checkpoint {path} cannot be read ({_unreadable(error)})") from error
    if not isinstance(state, dict) or not CHECKPOINT_KEYS <= state.keys():
        raise CheckpointError(f"checkpoint {path} cannot be read (it is not a checkpoint of cl.train)")
    return state


def _unreadable(error: Exception) -> str:
    """Why torch.load failed, in a few words (without torch's advice to load it unsafely)."""
    if isinstance(error, pickle.UnpicklingError):
        return "it holds something other than tensors"
    if isinstance(error, EOFError):
        return "it ends early"
    if isinstance(error, (RuntimeError, OSError)):
        return str(error).split(". ")[0]
    return f"it is corrupt: {type(error).__name__}"


def is_main() -> bool:
    """Whether this process writes the run folder: the only one, or rank 0 under torchrun."""
    return not distributed() or dist.get_rank() == 0


class RunLock:
    """An exclusive lock on a run folder, held while a process trains in it.

    ``flock`` on ``<run>/.lock``: the OS releases it when the process ends, however it ends, so a
    killed run never leaves its folder locked. The file names the holder (process id, host),
    for the message another process gets. It is removed on release, and so is the folder when
    the lock made it and nothing else was written to it (a failed start leaves nothing behind).
    """

    NAME = ".lock"

    def __init__(self, run_dir: Path):
        self.run_dir, self.path = Path(run_dir), Path(run_dir) / self.NAME
        self.made_dir = not self.run_dir.exists()
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644))
        except OSError as error:
            raise UserError(f"the run folder {self.run_dir} cannot be made or written "
                            f"({error.strerror or error}): give a folder you may write (--run-dir, or "
                            f"NEGATIVES_RUNS for runs/)") from None
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                holder = ""
                with contextlib.suppress(OSError):
                    holder = self.path.read_text().strip()
                holder = holder or "another process"
                raise RunLocked(f"{self.run_dir} is in use by {holder}: wait until it ends, or stop it (the "
                                f"run resumes from its last checkpoint)", holder) from None
            # the holder before us may have removed the file after we opened it: lock the file that is there
            if os.path.exists(self.path) and os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                break
            os.close(fd)
        self.fd = fd
        with contextlib.suppress(OSError):  # on a full disk the lock holds all the same, unnamed
            os.ftruncate(fd, 0)
            os.write(fd, f"process {os.getpid()} on {socket.gethostname()} "
                         f"(since {time.strftime('%Y-%m-%d %H:%M')})".encode())

    def release(self):
        self.path.unlink(missing_ok=True)
        os.close(self.fd)  # closing releases the lock
        if self.made_dir:
            with contextlib.suppress(OSError):  # not empty: the run wrote something
                self.run_dir.rmdir()


@contextlib.contextmanager
def locked(run_dir: Path, wait: bool = False):
    """Hold the run folder's lock for the body. Under torchrun, rank 0 holds it and the other ranks
    wait until it has it (or share its RunLocked). ``wait``: while another process holds it (two
    notebooks training one shared baseline), wait for that process, saying so once, instead of failing."""
    lock, problem, said = None, None, False
    while is_main() and lock is None:
        try:
            lock = RunLock(run_dir)
        except RunLocked as error:
            if not wait:
                problem = str(error)
                break
            if not said:
                said = True
                say(f"{run_dir.name}: in use by {error.holder}; waiting for it to end")
            time.sleep(WAIT_EVERY)
    if distributed():
        shared = [problem]
        dist.broadcast_object_list(shared, src=0)
        problem = shared[0]
    if problem:
        raise RunLocked(problem)
    try:
        yield
    finally:
        if lock is not None:
            lock.release()



def read_probe_set(path: Path) -> dict:
    """A run's probe.pt: ``indices`` and ``labels`` of the probe set's images in the training set,
    and ``embeddings``: {epoch: (P, dim) normalised z after that epoch}."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated or not a tensor file: only this record is lost
        raise UserError(f"{path} cannot be read ({cli.one_line(error)}): delete it; a run that trains "
                        f"again writes it anew") from None


def add_probe_set(run_dir: Path, epoch: int, z: torch.Tensor, indices: torch.Tensor,
              labels: torch.Tensor) -> None:
    """Add the probe set's embeddings ``z`` after ``epoch`` to the run's probe.pt (indices, labels,
    embeddings by epoch); an unreadable probe.pt is started anew, and that is said."""
    path = run_dir / PROBE_SET
    record = {"indices": indices, "labels": labels, "embeddings": {}}
    if path.exists():
        try:
            record = read_probe_set(path)
        except UserError as error:  # the training goes on; only the earlier epochs' embeddings are lost
            say(f"{error}; starting it anew at epoch {epoch}")
    record["embeddings"][epoch] = z
    save_torch(path, record)


def non_finite_metrics(row: dict) -> list[str]:
    """The numbers of a row of metrics (an epoch's, or the final one) that are NaN or infinite."""
    return [key for key, value in row.items() if isinstance(value, float) and not math.isfinite(value)]


def names(items: list[str], shown: int = 3) -> str:
    """The first few of a list of names, and how many more there are."""
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


def config_diff(a: dict, b: dict) -> str:
    """The keys on which two configs differ, ``key: a → b``."""
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in keys)


def _stored_identity(cfg_path: Path) -> dict:
    """The identity of the config in a run folder (its device is not checked: it may be another machine's)."""
    try:
        return Config.from_dict({**cli.load_yaml(cfg_path.read_text()), "device": "auto"}).identity()
    except ConfigError as error:
        raise ConfigError(f"{cfg_path} is not a valid config ({error}): delete its run folder") from None


def finished_run(cfg: Config, run_dir: Path) -> dict | None:
    """The metrics of the finished run of ``cfg`` in ``run_dir``; None when it has not finished there.

    ConfigError when the folder holds a run of another config; TrainingDiverged when its
    metrics.json says finished but holds numbers that are not finite (a file edited by hand
    or damaged: training never marks such a run finished).
    """
    cfg_path, metrics_path = run_dir / CONFIG, run_dir / METRICS
    if not cfg_path.exists():
        return None
    old = _stored_identity(cfg_path)
    if old != cfg.identity():
        raise ConfigError(f"{run_dir} holds a run of a different config "
                          f"({config_diff(old, cfg.identity())}); "
                          f"delete that directory or give this config another run name")
    done = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    if not done.get("finished"):
        return None
    if bad := non_finite_metrics(done["final"]):
        raise TrainingDiverged(f"{run_dir} holds a diverged run ({names(bad)} not finite) marked finished: "
                               f"delete it, then lower lr or raise t")
    return done
