"""The plan (cl.plan): every run listed before a notebook executes; trained first, then reused."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

import cl
from cl import cli, launch, parameters, plan, pool, study

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(train_subset=512, test_subset=128, width=4, hidden=16, dim=8, queue=256, batch_size=64,
            epochs=1, monitor_bank=128, linear_epochs=2, device="cpu")


def identity(config):
    return {k: v for k, v in sorted(config.items()) if k not in ("device", "probe")}


def test_the_smoke_plan_is_every_pinned_run_of_the_smoke_study_with_its_identity():
    """tests/fixtures/smoke_identities.yaml pins the runs the executed smoke notebooks leave in runs/smoke
    (tests/smoke_identities_check.py): the plan lists exactly those, without executing a notebook."""
    pinned = yaml.safe_load((ROOT / "tests" / "fixtures" / "smoke_identities.yaml").read_text())
    runs = plan.study_plan("smoke")
    assert sorted(run.name for run in runs) == sorted(pinned)
    assert all(identity(run.config.to_dict()) == pinned[run.name] for run in runs)
    by_name = {run.name: run for run in runs}
    assert by_name["moco_s0"].notebooks[0] == "00_contrastive_learning"  # first user, then the others
    assert {"02_which_negatives_matter", "08_conclusions"} <= set(by_name["moco_s0"].notebooks)
    assert by_name["control_untrained_s0"].control == "untrained"


def test_a_plan_cell_stops_after_its_last_run_call():
    source = "a = 1\nr = study.run_groups(x)\nr.update(controls.ensure(y))\nplot(r)\nb = 2\n"
    namespace = {"study": None}
    code = plan.up_to_last_run_call("a = 1\nb = a + 1\n", "cell")
    exec(code, namespace)
    assert namespace["b"] == 2  # a cell without a run call runs whole
    calls = []

    class Fake:
        def run_groups(self, x):
            calls.append(x)
            return {}

        def ensure(self, y):
            calls.append(y)
            return {}

    def plot(r):
        raise AssertionError("the analysis after the last run call ran")

    namespace = {"study": Fake(), "controls": Fake(), "x": 1, "y": 2, "plot": plot}
    exec(plan.up_to_last_run_call(source, "cell"), namespace)
    assert calls == [1, 2] and "b" not in namespace


def notebook(folder: Path, stem: str, body: str) -> None:
    """A notebook in py:percent of a parameters cell and one plan cell running ``body``."""
    (folder / f"{stem}.py").write_text(textwrap.dedent("""\
        # %% tags=["parameters"]
        scale = "s"

        # %% tags=["plan"]
        from cl import study
        """) + textwrap.dedent(body))


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A study of made-up notebooks (their parameters: the scale only) over a runs folder of its own."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    monkeypatch.setattr(cl, "NOTEBOOKS", folder)
    monkeypatch.setattr(cl, "RUNS", tmp_path / "runs")
    monkeypatch.setattr(plan, "notebooks", lambda: sorted(folder.glob("*.py")))
    monkeypatch.setattr(plan, "parameters", lambda scale, stem, given: {"scale": scale})
    monkeypatch.setattr(plan, "check_notebook_parameters", lambda scale, only, given: None)
    monkeypatch.setenv(pool.ENV, "1")
    return folder


def test_a_run_name_given_two_configs_is_one_clear_error(project):
    notebook(project, "a", f"study.run_conditions({{'base': {{}}}}, {TINY}, [0], scale, 'a')\n")
    notebook(project, "b", f"study.run_conditions({{'base': {{'t': 0.5}}}}, {TINY}, [0], scale, 'b')\n")
    with pytest.raises(cli.UserError, match=r"base_s0 is given two configs, in a and b \(t: .*rename one"):
        plan.study_plan("s")


def test_the_plan_trains_every_run_once_and_the_notebooks_then_train_nothing(project, capsys):
    notebook(project, "a", f"""\
        r = study.run_conditions({{'base': {{}}}}, {TINY}, [0, 1], scale, 'a')
        r['base'][0]['final']  # analysis after the call: not reached while planning
        """)
    groups = f"[({{'base': {{}}, 'warm': {{'t': 0.5}}}}, {TINY}, [0])]"
    notebook(project, "b", f"study.run_groups({groups}, scale, 'b')\n")
    runs = plan.study_plan("s")
    assert [(run.name, run.notebooks) for run in runs] == [
        ("base_s0", ["a", "b"]), ("base_s1", ["a"]), ("warm_s0", ["b"])]
    assert not (cl.RUNS / "s").exists()  # listing trained nothing
    assert "3 runs, 3 to train" in plan.table(runs)
    _, trained, minutes = study.train_plan("s")
    assert trained == {"base_s0", "base_s1", "warm_s0"} and set(minutes) == {"a", "b"}
    stamps = {p: p.stat().st_mtime_ns for p in (cl.RUNS / "s").glob("*/metrics.json")}
    assert json.loads((cl.RUNS / "s" / "warm_s0" / "metrics.json").read_text())["notebook"] == "b"
    capsys.readouterr()
    records = study.run_groups([({"base": {}, "warm": {"t": 0.5}}, TINY, [0])], "s", "b")  # notebook b's cell
    assert records["warm"][0]["finished"] and "new run" not in capsys.readouterr().err
    assert stamps == {p: p.stat().st_mtime_ns for p in (cl.RUNS / "s").glob("*/metrics.json")}
    assert "0 to train" in plan.table(plan.study_plan("s"))


def test_two_notebooks_training_one_shared_run_side_by_side_both_finish(tmp_path):
    """The second process waits for the first to finish the shared run, then reuses it."""
    script = textwrap.dedent(f"""
        import sys, cl, pathlib
        cl.RUNS = pathlib.Path({str(tmp_path)!r})
        from cl import study
        record = study.run_conditions({{"shared": {{}}}}, {TINY}, [0], "s", sys.argv[1])["shared"][0]
        print(record["notebook"], record["final"]["knn_top1"])
        """)
    env = {**parameters_free_env(), pool.ENV: "1"}
    start = lambda name: subprocess.Popen([sys.executable, "-c", script, name], env=env, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = start("first")
    try:
        assert "new run" in first.stderr.readline()  # it holds the lock now
        first.send_signal(signal.SIGSTOP)  # keep it there until the second has met the lock
        second = start("second")
        waiting = second.stderr.readline()
        assert "in use by process" in waiting and "waiting for it to end" in waiting
        first.send_signal(signal.SIGCONT)
        out, _ = first.communicate(timeout=600)
        reused, err = second.communicate(timeout=600)
    finally:
        first.kill()
    assert first.returncode == 0 and second.returncode == 0, err
    assert "reusing the finished run" in err and "new run" not in err
    assert reused.split() == ["first", out.split()[1]]  # the first's run, reused


def parameters_free_env():
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", parameters.NOTEBOOK_ENV: ""}


def test_submitit_jobs_train_the_plan_and_a_preempted_job_resumes_from_its_checkpoint(project, monkeypatch):
    """Real submitit jobs (its local executor), real checkpoints: one job is sent the signal of a timeout or
    a preemption (USR2, as SLURM sends it) after its first epoch, is requeued, and its run resumes at
    epoch 2."""
    conditions = "{'long': {'epochs': 3}, 'short': {}}"
    notebook(project, "a", f"study.run_conditions({conditions}, {TINY}, [0], scale, 'a')\n")
    monkeypatch.setattr(launch, "POLL_EVERY", 0.5)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    runs = plan.study_plan("s")
    chosen = launch.executor("submitit-local", cl.RUNS / "s" / "submitit", minutes=10)
    jobs = launch.submit(runs, chosen)
    long_job, long_dir = jobs[0], runs[0].run_dir
    deadline = time.monotonic() + 300
    while not (long_dir / "checkpoint.pt").exists():  # its first epoch has ended
        assert time.monotonic() < deadline and not long_job.done(), long_job.stderr()
        time.sleep(0.2)
    controller = long_job._process.pid  # submitit's local controller; the job's process is its child
    [task] = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    os.kill(int(task), signal.SIGUSR2)  # what SLURM sends before a timeout or a preemption
    records = launch.wait(jobs, runs)
    assert [record["run"] for record in records] == ["long_s0", "short_s0"]
    assert all(record["finished"] for record in records)
    said = long_job.stderr()
    assert "resum" in said and "at epoch 2" in said, said
    assert [row["epoch"] for row in records[0]["epochs"]] == [1, 2, 3]
    assert "Requeued job" in long_job.stdout()


def test_slurm_needs_a_partition():
    with pytest.raises(cli.UserError, match="--launcher slurm needs --partition"):
        launch.executor("slurm", Path("/tmp/none"))
