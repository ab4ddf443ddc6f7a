"""Runs trained side by side (cl.pool): the same records as one at a time, failures and Ctrl-C in one line."""
import functools
import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

import cl
from cl import cli, config, pool, progress, study

TINY = dict(train_subset=512, test_subset=128, width=4, hidden=16, dim=8, queue=256, batch_size=64,
            epochs=2, monitor_bank=128, linear_epochs=10, device="cpu")


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setattr(cl, "RUNS", tmp_path)
    monkeypatch.setenv(pool.ENV, "2")
    return tmp_path


def test_groups_train_side_by_side_in_order_and_a_second_call_reuses_them(runs, capsys):
    groups = [({"a": {}, "b": {"t": 0.2}}, TINY, [0, 1]), ({"c": {"loss": "debiased"}}, TINY, [3])]
    results = study.run_groups(groups, "s", "nb")
    assert {name: [r["run"] for r in records] for name, records in results.items()} == {
        "a": ["a_s0", "a_s1"], "b": ["b_s0", "b_s1"], "c": ["c_s3"]}
    for name, records in results.items():
        for record in records:
            assert record["finished"] and record["notebook"] == "nb" and record["method"] == name
            assert record == json.loads((runs / "s" / record["run"] / "metrics.json").read_text())
    assert results["b"][1]["config"]["t"] == 0.2 and results["c"][0]["config"]["seed"] == 3
    err = capsys.readouterr().err
    assert err.count(": new run: ") == 5 and err.count(" epoch 2/2: ") == 5  # relayed from the processes
    again = study.run_groups(groups, "s", "nb")
    assert again == results
    assert capsys.readouterr().err.count(": reusing the finished run in ") == 5


def test_a_run_that_fails_beside_others_is_one_line_and_the_others_finish(runs):
    conditions = {"good": {}, "diverges": {"lr": 3e5}, "later": {"t": 0.3}}
    with pytest.raises(cli.UserError,
                       match=r"^diverges_s0: training diverged: .*lower lr \(now 300000.0\)") as error:
        study.run_conditions(conditions, TINY, [0], "s", "nb")
    assert "\n" not in str(error.value)
    assert json.loads((runs / "s" / "good_s0" / "metrics.json").read_text())["finished"]
    assert not (runs / "s" / "later_s0").exists()  # nothing new starts after a failure
    assert not (runs / "s" / "diverges_s0").exists()  # and the diverged run's folder is free


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_number_of_workers_is_refused(value, monkeypatch):
    monkeypatch.setenv(pool.ENV, value)
    with pytest.raises(cli.UserError, match=rf"NEGATIVES_WORKERS='{value}' is not a number of runs"):
        pool.placement(config.Config(device="cpu"))


def test_one_worker_trains_in_this_process(runs, monkeypatch, capsys):
    monkeypatch.setenv(pool.ENV, "1")
    started = []
    monkeypatch.setattr(pool, "_in_processes", lambda *args: started.append(args))
    study.run_conditions({"a": {}}, TINY, [0, 1], "s", "nb")
    assert started == [] and capsys.readouterr().err.count(": new run: ") == 2


def test_a_lone_last_run_trains_with_the_threads_of_its_pooled_siblings(runs, monkeypatch):
    monkeypatch.setattr(pool, "cores", lambda: 8)  # 2 workers: 4 threads each, not the 8 cores
    study.run_conditions({"a": {}}, TINY, [0, 1], "s", "nb")
    (runs / "s" / "a_s1" / "metrics.json").unlink()  # the one run left to train
    [record] = study.run_conditions({"a": {}}, TINY, [1], "s", "nb")["a"]
    assert record["threads"] == 4 == json.loads((runs / "s" / "a_s0" / "metrics.json").read_text())["threads"]


def test_ctrl_c_stops_every_run_at_a_clean_point_and_says_where_each_resumes(tmp_path):
    script = textwrap.dedent(f"""
        import pathlib

        import cl
        from cl import cli, study
        cl.RUNS = pathlib.Path({str(tmp_path)!r})
        try:
            study.run_conditions({{"a": {{}}, "b": {{}}}}, {dict(TINY, epochs=40)!r}, [0], "s", "nb")
        except cli.Interrupted as error:
            print(error)
    """)
    env = {**os.environ, pool.ENV: "2", progress.ENV: ""}
    # start_new_session: a kernel's process group; SIGINT at its default, as in a terminal (a background
    # job of a non-interactive shell starts with it ignored, which Python would keep)
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            preexec_fn=functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL))
    try:
        seen = set()
        while len(seen) < 2:  # both runs have checkpointed an epoch
            line = proc.stderr.readline()
            assert line, "the runs ended before Ctrl-C"
            if " epoch 1/40: " in line:
                seen.add(line.split()[0])
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err, err
    parts = out.strip().split("; ")
    assert sorted(part.split(":")[0] for part in parts) == ["a_s0", "b_s0"]
    for part in parts:
        assert re.fullmatch(r"\w_s0: running it again with the same config and run folder \(.*\) "
                            r"resumes at epoch \d+ of 40, from the checkpoint of epoch \d+", part), part


def test_the_terminal_draws_one_bar_per_run_training_side_by_side(tmp_path):
    import io
    tracked, terminal = tmp_path / "progress.json", io.StringIO()
    with progress.watch(tracked, file=terminal):
        for slot, name in enumerate(["a_s0", "b_s0"]):
            progress.slot_path(tracked, slot).write_text(json.dumps(
                {"run": name, "step": 3, "total": 10, "epochs": 2, "epoch": 1, "saved": 0, "loss": 1.0}))
    assert "a_s0" in terminal.getvalue() and "b_s0" in terminal.getvalue()
    assert [s["run"] for s in progress.read_states(tracked)] == ["a_s0", "b_s0"]


@pytest.mark.parametrize("affinity, quota, expected", [(2, None, (2, 1)), (8, None, (8, 1)),
                                                       (16, None, (16, 1)), (16, 4.0, (4, 1)),
                                                       (16, 2.5, (3, 1))])
def test_a_cpu_trains_a_run_per_core_it_may_use(affinity, quota, expected, monkeypatch, tmp_path):
    """The cores are the process's affinity capped by the cgroup's quota, not the machine's count."""
    monkeypatch.setattr(cl, "RUNS", tmp_path)  # no bench.json
    monkeypatch.delenv(pool.ENV, raising=False)
    monkeypatch.setattr(pool.os, "sched_getaffinity", lambda pid: set(range(affinity)))
    monkeypatch.setattr(pool.os, "cpu_count", lambda: 64)
    monkeypatch.setattr(pool, "cgroup_cpus", lambda: quota)
    where = pool.placement(config.Config(device="cpu"))
    assert (where.width, where.threads, where.gpus) == (*expected, [])


def test_the_width_make_bench_measured_best_on_this_many_cores_is_used(monkeypatch, tmp_path):
    monkeypatch.setattr(cl, "RUNS", tmp_path)
    monkeypatch.delenv(pool.ENV, raising=False)
    monkeypatch.setattr(pool, "cores", lambda: 16)
    measured = {"cores": 16, "pool_runs_per_hour_by_width": {"1": 10.0, "2": 19.0, "4": 36.0, "8": 60.0,
                                                             "16": 55.0}}
    (tmp_path / "bench.json").write_text(json.dumps(measured))
    where = pool.placement(config.Config(device="cpu"))
    assert (where.width, where.threads) == (8, 2)
    (tmp_path / "bench.json").write_text(json.dumps({**measured, "cores": 2}))  # another machine's
    assert pool.placement(config.Config(device="cpu")).width == 16


V1 = "cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us"


@pytest.mark.parametrize("files, expected", [({"cpu.max": "max 100000\n"}, None),
                                             ({"cpu.max": "400000 100000\n"}, 4.0),
                                             (dict(zip(V1, ["-1\n", "100000"])), None),
                                             (dict(zip(V1, ["150000", "100000"])), 1.5),
                                             ({}, None)])
def test_the_cgroup_quota_is_read_from_v2_or_v1(files, expected, tmp_path):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert pool.cgroup_cpus(tmp_path) == expected


@pytest.mark.parametrize("arch, device, expected", [("small_cnn", "auto", (16, [0, 1, 2, 3])),
                                                    ("resnet18", "cuda", (4, [0, 1, 2, 3])),
                                                    ("small_cnn", "cuda:1", (1, []))])
def test_runs_go_to_every_visible_gpu(arch, device, expected, monkeypatch):
    """One ResNet-18 run per GPU, several small-CNN runs per GPU; a GPU named by number trains alone."""
    monkeypatch.delenv(pool.ENV, raising=False)
    monkeypatch.setattr(pool.torch.cuda, "device_count", lambda: 4)
    monkeypatch.setattr(pool.train, "resolve_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(pool, "cores", lambda: 16)
    cfg = config.Config.__new__(config.Config)  # its validation would look for the GPUs
    cfg.__dict__.update(config.Config().__dict__, arch=arch, device=device)
    where = pool.placement(cfg)
    assert (where.width, where.gpus) == expected and where.threads == 16 // expected[0]


def test_each_slot_of_the_pool_sees_only_its_gpu(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(pool.subprocess, "Popen", lambda cmd, **kw: seen.append(kw["env"]) or FakeProcess())
    cfg = config.Config(**{k: v for k, v in TINY.items()})
    jobs = [(i, cfg, tmp_path / f"r{i}", "m", None) for i in range(3)]
    pool._in_processes(jobs, 3, 1, relay=False, gpus=[0, 1])
    assert [env["CUDA_VISIBLE_DEVICES"] for env in seen] == ["0", "1", "0"]


class FakeProcess:
    """A training process that has ended well at once."""

    returncode = 0
    stderr = iter(())

    def wait(self, timeout=None):
        return 0


def test_a_collapse_is_said_here_even_when_the_runs_lines_go_to_their_logs(runs, capsys):
    collapsing = config.Config.from_dict({**TINY, "loss": "positives_only", "train_subset": 1024,
                                          "batch_size": 128})
    pool.train_all([(collapsing, runs / "s" / "p_s0"), (config.Config.from_dict(TINY), runs / "s" / "m_s0")],
                   relay=False)
    said = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in said] == ["p_s0"] and "its embedding collapsed" in said[0]
    assert "p_s0: new run" in (runs / "s" / "logs" / "p_s0.log").read_text()
