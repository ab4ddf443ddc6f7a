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
        pool.workers(config.Config(device="cpu"))


def test_one_worker_trains_in_this_process(runs, monkeypatch, capsys):
    monkeypatch.setenv(pool.ENV, "1")
    started = []
    monkeypatch.setattr(pool, "_in_processes", lambda *args: started.append(args))
    study.run_conditions({"a": {}}, TINY, [0, 1], "s", "nb")
    assert started == [] and capsys.readouterr().err.count(": new run: ") == 2


def test_a_lone_last_run_trains_with_the_threads_of_its_pooled_siblings(runs, monkeypatch):
    monkeypatch.setattr(pool.os, "cpu_count", lambda: 8)  # 2 workers: 4 threads each, not the 8 cores
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
