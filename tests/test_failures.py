"""Runs that fail cleanly: every expected failure is one clear line, and nothing finished is lost.

Faults are real where they can be: a learning rate that diverges, a second process on the
same folder, a truncated file, a full (small, temporary) file system, Ctrl-C.
"""
import dataclasses
import functools
import json
import os
import pickle
import random
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from cl import cli, config, data, run_folder, train
from cl.config import Config, ConfigError
from cl.run_folder import CheckpointError, DiskFull, RunLocked, TrainingDiverged

ROOT = Path(__file__).resolve().parents[1]
NOT_A_CHECKPOINT = pickle.dumps({"model": "not tensors"}) * 100
TINY = dict(train_subset=512, test_subset=128, width=4, hidden=16, dim=8, queue=256, batch_size=64,
            epochs=2, monitor_bank=128, linear_epochs=30, device="cpu")


def quiet_env(**extra):
    """The environment of a child process: the project importable, no progress file, no debugging."""
    env = {k: v for k, v in os.environ.items() if k not in ("NEGATIVES_PROGRESS", "NEGATIVES_DEBUG")}
    return {**env, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **extra}


def epoch_of(checkpoint: Path) -> int:
    return torch.load(checkpoint, weights_only=True)["epoch"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """An uninterrupted TINY run: what a run that failed and was resumed must end up equal to."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    return run_dir, train.run(TINY, run_dir, progress=False)


def unfinished_copy(finished, to: Path) -> Path:
    """The finished run's folder as it was before its final evaluation: both checkpoints, no final metrics."""
    shutil.copytree(finished[0], to)
    (to / "metrics.json").unlink()
    return to


# --------------------------------------------------------------------------- the config alone

@pytest.mark.parametrize("overrides, message", [
    (dict(batch_size=1024),
     r"batch_size must be in \[2, 512\] \(the 512 training images of the run\), got 1024"),
    (dict(bn_splits=0), r"bn_splits must be in \[1, inf\), got 0"),
    (dict(lr=-0.1), r"lr must be in \(0, inf\), got -0.1"),
    (dict(lr=0), r"lr must be in \(0, inf\), got 0.0"),
    (dict(sgd_momentum=-0.5), r"sgd_momentum must be in \[0, 1\), got -0.5"),
    (dict(weight_decay=-1e-4), r"weight_decay must be in \[0, inf\), got -0.0001"),
    (dict(width=0), r"width must be in \[1, inf\), got 0"),
    (dict(dim=0), r"dim must be in \[1, inf\), got 0"),
    (dict(knn_k=0), r"knn_k must be in \[1, inf\), got 0"),
    (dict(monitor_bank=-1), r"monitor_bank must be in \[0, inf\), got -1"),
    (dict(train_subset=70_000),
     r"train_subset must be in \[0, 60000\] \(fashion_mnist has 60,000 train images\)"),
    (dict(test_subset=20_000), r"test_subset must be in \[0, 10000\]"),
    (dict(dataset="mnist"), r"dataset must be one of fashion_mnist, cifar10, .*, imagefolder:<path>, not"),
    (dict(dataset="imagefolder:/no/such/folder"), r"/no/such/folder has no train/ and no test/ folder"),
    (dict(device="tpu"), r"device must be auto, cpu, cuda or cuda:N, not 'tpu'"),
    pytest.param(dict(device="cuda"), r"device 'cuda', but this machine has no CUDA GPU: use device: auto",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")),
])
def test_a_config_that_cannot_run_fails_before_anything_is_loaded_or_written(overrides, message, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setattr(data, "load", lambda *a, **k: pytest.fail("a config that cannot run loaded data"))
    with pytest.raises(ConfigError, match=message):
        train.run({**TINY, **overrides}, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_a_batch_larger_than_the_loaded_data_is_refused_before_anything_is_written():
    """An image folder's size is known only once it is loaded: Trainer checks it then."""
    images = data.Dataset(torch.zeros(40, 3, 8, 8, dtype=torch.uint8), torch.zeros(40, dtype=torch.long),
                          ["a"], None, "imagefolder:tiny")
    with pytest.raises(ConfigError, match=r"batch_size must be in \[2, 40\] \(the 40 training images of "
                                          r"imagefolder:tiny\), got 64"):
        config.check_data(Config.from_dict(TINY), images)


def test_every_number_has_a_range_and_every_string_its_choices():
    fields = {f.name: f.type for f in dataclasses.fields(Config)}
    numbers = {name for name, kind in fields.items() if kind in ("int", "float")}
    # free-form strings, each with its own check: the data set and device (here), the image folder's
    # splits (test_imagefolder.py), the class sets of a transfer run (test_transfer.py)
    free = {"dataset", "device", "train_split", "test_split", "train_classes", "eval_classes"}
    strings = {name for name, kind in fields.items() if kind == "str"} - free
    assert set(config.RANGES) == numbers and set(config.CHOICES) == strings


def test_numbers_are_read_as_people_write_them(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("weight_decay: 5e-4\nlr: 1e6\nt: 1E-1\nknn_t: .5e-1\n")
    cfg = config.load_config(path)
    assert (cfg.weight_decay, cfg.lr, cfg.t, cfg.knn_t) == (5e-4, 1e6, 0.1, 0.05)
    # papermill's YAML 1.1 reader hands 5e-4 over as a string
    assert Config.from_dict({"weight_decay": "5e-4"}).weight_decay == 5e-4


def test_an_empty_or_missing_config_file_is_refused_and_an_empty_mapping_is_the_defaults(tmp_path):
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"empty.yaml is empty: write the parameters to change, or \{\} "):
        config.load_config(empty)
    with pytest.raises(ConfigError, match=r"no config file .*missing.yaml"):
        config.load_config(tmp_path / "missing.yaml")
    empty.write_text("{}\n")
    assert config.load_config(empty) == Config()


# --------------------------------------------------------------------------- divergence

@pytest.mark.parametrize("lr, message", [
    # batch-norm running variances overflow while the loss stays finite
    (1e5, r"training diverged: the model's encoder_q\.backbone\.\d+\.running_var.* hold inf or NaN after "
          r"epoch 1: lower lr \(now 100000.0\) or raise t \(now 0.1\); nothing was kept in"),
    # the queries themselves become NaN within the epoch
    (3e5, r"training diverged: the model holds inf or NaN at epoch 1, step \d+ \(.*running_var.*\): "
          r"lower lr \(now 300000.0\)"),
])
def test_a_real_divergence_is_stopped_and_never_checkpointed(lr, message, tmp_path):
    run_dir = tmp_path / "diverged"
    with pytest.raises(TrainingDiverged, match=message):
        train.run({**TINY, "epochs": 1, "lr": lr}, run_dir, progress=False)
    assert not run_dir.exists()  # no checkpoint, no config.yaml, no metrics: the folder is free


def test_a_non_finite_state_after_a_good_epoch_keeps_the_good_checkpoint(finished, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    original = train.Trainer.train_epoch

    def overflow_in_epoch_2(self, epoch, bar):
        row = original(self, epoch, bar)
        if epoch == 1:
            self.encoder.backbone[1].running_var.fill_(float("inf"))
        return row

    monkeypatch.setattr(train.Trainer, "train_epoch", overflow_in_epoch_2)
    diverged = (r"the model's encoder_q\.backbone\.1\.running_var holds inf or NaN after epoch 2: lower lr "
                r".*keeps the last good checkpoint \(epoch 1\)")
    with pytest.raises(TrainingDiverged, match=diverged):
        train.run(TINY, run_dir, progress=False)
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not json.loads((run_dir / "metrics.json").read_text())["finished"]
    monkeypatch.setattr(train.Trainer, "train_epoch", original)
    assert train.run(TINY, run_dir, progress=False)["final"]["knn_top1"] == finished[1]["final"]["knn_top1"]


def test_non_finite_final_metrics_are_never_marked_finished(finished, tmp_path, monkeypatch):
    run_dir = unfinished_copy(finished, tmp_path / "run")
    monkeypatch.setattr(train.metrics, "linear_probe", lambda *a, **k: float("nan"))
    with pytest.raises(TrainingDiverged, match=r"linear_top1 is not finite in the final evaluation"):
        train.run(TINY, run_dir, progress=False)
    assert not (run_dir / "metrics.json").exists() and epoch_of(run_dir / "checkpoint.pt") == 2


def test_a_diverged_run_marked_finished_before_the_guard_is_not_reused(finished, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished[0], run_dir)
    record = json.loads((run_dir / "metrics.json").read_text())
    record["final"].update(alignment=float("nan"), uniformity=float("nan"))
    (run_dir / "metrics.json").write_text(json.dumps(record))
    refused = (rf"{run_dir} holds a diverged run \(alignment, uniformity not finite\) marked finished: "
               r"delete it, then lower lr or raise t")
    with pytest.raises(TrainingDiverged, match=refused):
        train.run(TINY, run_dir, progress=False)


# --------------------------------------------------------------------------- the run folder

def test_a_failed_start_leaves_the_folder_to_the_corrected_config(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    for bad in (dict(dataset="mnist"), dict(lr=-0.1), dict(batch_size=1024)):
        with pytest.raises(ConfigError):
            train.run({**TINY, **bad}, run_dir, progress=False)
    original = data.load

    def data_gone(*args, **kwargs):
        raise data.DataError("the data are gone")

    monkeypatch.setattr(data, "load", data_gone)
    with pytest.raises(data.DataError, match="the data are gone"):  # fails after the lock, while building
        train.run(TINY, run_dir, progress=False)
    assert not run_dir.exists()
    monkeypatch.setattr(data, "load", original)
    assert train.run({**TINY, "epochs": 1}, run_dir, progress=False)["finished"]


def start_training(tmp_path, stdout=subprocess.PIPE):
    """``python -m cl.train`` on a 3-epoch TINY config in tmp_path/run, as a background process."""
    cfg, run_dir = tmp_path / "c.yaml", tmp_path / "run"
    cfg.write_text(yaml.safe_dump({**TINY, "epochs": 3}))
    process = subprocess.Popen([sys.executable, "-m", "cl.train", str(cfg), "--run-dir", str(run_dir)],
                               env=quiet_env(), stdout=stdout, stderr=subprocess.PIPE, text=True)
    return process, run_dir


def test_a_run_folder_is_locked_while_one_process_trains_in_it(tmp_path):
    """Two processes on one folder: the second is told who holds it; the first finishes undisturbed."""
    first, run_dir = start_training(tmp_path)
    try:
        started = first.stderr.readline()
        assert started.startswith("run: new run: info_nce on fashion_mnist (512 training images), 3 epochs")
        first.send_signal(signal.SIGSTOP)  # it holds the lock and has built its run; keep it there
        with pytest.raises(RunLocked, match=rf"{run_dir} is in use by process {first.pid} on .*: wait until"):
            train.run({**TINY, "epochs": 3}, run_dir, progress=False)
        first.send_signal(signal.SIGCONT)
        out, err = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 0, err
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["finished"] and json.loads(out)["knn_top1"] == saved["final"]["knn_top1"]
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.prev.pt", "checkpoint.pt", "config.yaml",
                                                           "metrics.json", "probe.pt"]


def test_a_killed_run_releases_its_folder_and_resumes(tmp_path):
    first, run_dir = start_training(tmp_path, stdout=subprocess.DEVNULL)
    try:
        first.stderr.readline()  # "run: new run: ..."
        assert first.stderr.readline().startswith("run epoch 1/3: loss ")
    finally:
        first.kill()
        first.wait()
    result = train.run({**TINY, "epochs": 3}, run_dir, progress=False)
    assert result["finished"] and len(result["epochs"]) == 3


def test_under_torchrun_a_held_folder_is_refused_with_its_holder(tmp_path):
    cfg, run_dir = tmp_path / "c.yaml", tmp_path / "run"
    cfg.write_text(yaml.safe_dump({**TINY, "epochs": 1}))
    lock = run_folder.RunLock(run_dir)
    try:
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                    "--master_port", "29521"]
        done = subprocess.run([*torchrun, "-m", "cl.train", str(cfg), "--run-dir", str(run_dir)],
                              env=quiet_env(), capture_output=True, text=True, timeout=300)
    finally:
        lock.release()
    refused = f"error: {run_dir} is in use by process {os.getpid()} on "
    # every rank raises the same one-line error; torchrun may stop the second rank before it
    # prints (torchrun's own report of a failed worker follows)
    told = sum(line.startswith(refused) for line in done.stderr.splitlines())
    assert done.returncode != 0 and 1 <= told <= 2
    assert not run_dir.exists()


def test_the_lock_names_its_holder_and_goes_with_its_release(tmp_path):
    run_dir = tmp_path / "run"
    lock = run_folder.RunLock(run_dir)
    with pytest.raises(RunLocked, match=rf"in use by process {os.getpid()} on "):
        run_folder.RunLock(run_dir)
    lock.release()
    assert not run_dir.exists()  # it made the folder and nothing else was written there
    run_folder.RunLock(run_dir).release()


# --------------------------------------------------------------------------- checkpoints and disks

def test_a_truncated_latest_checkpoint_falls_back_to_the_previous_one(finished, tmp_path, capsys):
    run_dir = unfinished_copy(finished, tmp_path / "run")
    latest = run_dir / "checkpoint.pt"
    latest.write_bytes(latest.read_bytes()[:1000])
    result = train.run(TINY, run_dir, progress=False)
    err = capsys.readouterr().err
    assert (f"checkpoint {latest} cannot be read (PytorchStreamReader failed reading zip archive: failed "
            f"finding central directory): resuming from the previous one, checkpoint.prev.pt") in err
    assert "run: resuming at epoch 2" in err
    assert result["final"]["knn_top1"] == finished[1]["final"]["knn_top1"]
    assert result["final"]["linear_top1"] == finished[1]["final"]["linear_top1"]
    assert epoch_of(latest) == 2 and epoch_of(run_dir / "checkpoint.prev.pt") == 1


def test_an_unreadable_checkpoint_without_a_previous_one_says_to_delete_it(finished, tmp_path):
    run_dir = unfinished_copy(finished, tmp_path / "run")
    (run_dir / "checkpoint.prev.pt").unlink()
    (run_dir / "checkpoint.pt").write_bytes(NOT_A_CHECKPOINT)
    with pytest.raises(CheckpointError) as failure:
        train.run(TINY, run_dir, progress=False)
    assert str(failure.value) == (
        f"checkpoint {run_dir / 'checkpoint.pt'} cannot be read (it holds something other than tensors), and "
        f"there is no previous one: delete it to train the run from the start")
    for garbage in range(5):  # whatever random bytes make the unpickler raise, it is this error
        (run_dir / "checkpoint.pt").write_bytes(random.Random(garbage).randbytes(4096))
        with pytest.raises(CheckpointError, match=r"checkpoint .* cannot be read \(.*\), and there is no"):
            train.run(TINY, run_dir, progress=False)


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs: a disk the test can fill."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.decode().strip() or done.returncode})")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def fill(disk: Path) -> Path:
    """Fill the file system of ``disk`` to the last byte."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:  # unbuffered: nothing left to fail when it closes
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


@pytest.mark.parametrize("full_at", [1, 2])
def test_a_full_disk_says_so_and_leaves_no_temporary_file(full_at, finished, small_disk, monkeypatch):
    run_dir = small_disk / "run"
    original, filled = train.Trainer.save, []

    def disk_fills_before_a_checkpoint(self, path, epoch):
        if epoch == full_at:
            filled.append(fill(small_disk))
        return original(self, path, epoch)

    monkeypatch.setattr(train.Trainer, "save", disk_fills_before_a_checkpoint)
    with pytest.raises(DiskFull, match=rf"no space left on the device of {run_dir} for checkpoint.pt "
                                       r"\(\d+\.\d MB\): free some space, then run again"):
        train.run(TINY, run_dir, progress=False)
    if full_at == 1:
        assert not run_dir.exists()  # no epoch was kept: nothing to block the folder
    else:
        assert not list(run_dir.glob("*.tmp")) and epoch_of(run_dir / "checkpoint.pt") == 1
        assert not json.loads((run_dir / "metrics.json").read_text())["finished"]
    filled[0].unlink()
    monkeypatch.setattr(train.Trainer, "save", original)
    assert train.run(TINY, run_dir, progress=False)["final"]["knn_top1"] == finished[1]["final"]["knn_top1"]


# --------------------------------------------------------------------------- the command line

@pytest.mark.parametrize("config, message", [
    (None, r"error: no config file .*missing.yaml: give the path of a YAML file"),
    ("", r"error: .*c.yaml is empty"),
    ("lr: [1\n", r"error: .*c.yaml, line 2: not valid YAML \(expected ',' or '\]'.*\): fix it$"),
    ("epochs: !!python/object/apply:os.system ['echo pwned']\n",
     r"error: .*c.yaml, line 1: not valid YAML \(could not determine a constructor"),
    ({**TINY, "lr": -0.1}, r"error: lr must be in \(0, inf\), got -0.1"),
    ({**TINY, "epochs": 1, "lr": 1e5}, r"error: training diverged: .* after epoch 1: lower lr"),
])
def test_the_command_line_reports_an_expected_failure_in_one_line(config, message, tmp_path, capsys):
    path = tmp_path / ("missing.yaml" if config is None else "c.yaml")
    if config is not None:
        path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    assert train.main([str(path), "--run-dir", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) - sum(line.startswith("run: new run") for line in err) == 1
    assert re.match(message, err[-1]), err[-1]


def test_a_run_folder_of_another_config_and_a_corrupt_checkpoint_are_one_line(finished, tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "lr": 0.5}))
    assert train.main([str(cfg), "--run-dir", str(finished[0])]) == 1
    assert capsys.readouterr().err == (
        f"error: {finished[0]} holds a run of a different config (lr: 0.03 → 0.5); delete that directory "
        f"or give this config another run name\n")
    run_dir = unfinished_copy(finished, tmp_path / "run")
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        (run_dir / name).write_bytes(NOT_A_CHECKPOINT)
    cfg.write_text(yaml.safe_dump(TINY))
    assert train.main([str(cfg), "--run-dir", str(run_dir)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == (f"error: checkpoint {run_dir / 'checkpoint.prev.pt'} cannot be read "
                       f"(it holds something other than tensors)")
    assert not any("weights_only" in line for line in err)


def test_ctrl_c_says_which_epoch_resumes_and_debugging_shows_the_traceback(tmp_path):
    cfg, run_dir = tmp_path / "c.yaml", tmp_path / "run"
    cfg.write_text(yaml.safe_dump({**TINY, "epochs": 30}))
    command = [sys.executable, "-m", "cl.train", str(cfg), "--run-dir", str(run_dir)]
    # SIGINT back to its default in the child: Python keeps it ignored where the tests run as a
    # background job of a non-interactive shell, and Ctrl-C would not reach the run at all
    default_ctrl_c = functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL)
    proc = subprocess.Popen(command, env=quiet_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=default_ctrl_c)
    try:
        proc.stderr.readline()  # "run: new run: ..."
        assert proc.stderr.readline().startswith("run epoch 1/30: ")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and out == "" and "Traceback" not in err
    resumes = re.fullmatch(
        rf"interrupted: running it again with the same config and run folder \({run_dir}\) resumes at "
        r"epoch (\d+) of 30, from the checkpoint of epoch (\d+)", err.splitlines()[-1])
    assert resumes and int(resumes[1]) == int(resumes[2]) + 1 == epoch_of(run_dir / "checkpoint.pt") + 1
    shutil.rmtree(run_dir)
    cfg.write_text(yaml.safe_dump({**TINY, "lr": -1}))
    debug = subprocess.run(command, env=quiet_env(NEGATIVES_DEBUG="1"), capture_output=True, text=True,
                           timeout=120)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert debug.stderr.splitlines()[-1].endswith("ConfigError: lr must be in (0, inf), got -1.0")


def test_a_run_folder_that_cannot_be_made_is_named_as_the_run_folder(tmp_path):
    (tmp_path / "a_file").write_text("")
    for where in (tmp_path / "a_file", tmp_path / "a_file" / "run", Path("/proc/no_run_here")):
        expected = (rf"^the run folder {where} cannot be made or written \(.+\): give a folder you may write "
                    r"\(--run-dir, or NEGATIVES_RUNS for runs/\)")
        with pytest.raises(cli.UserError, match=expected):
            train.run(TINY, where, progress=False)
