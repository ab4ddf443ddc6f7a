"""Progress that fits where it is shown: a line per epoch where output is kept, a live bar in a terminal."""
import io
import json

import nbformat

import cl
from cl import progress, study, train

TINY = dict(train_subset=512, test_subset=128, width=4, hidden=16, dim=8, queue=256, batch_size=64,
            epochs=2, monitor_bank=128, linear_epochs=30, device="cpu")


def test_a_run_says_what_trains_then_one_line_per_epoch_and_writes_its_steps(tmp_path, monkeypatch, capsys):
    tracked = tmp_path / "progress.json"
    monkeypatch.setenv(progress.ENV, str(tracked))
    train.run(TINY, tmp_path / "tiny", method="moco")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == (f"tiny: new run: moco on fashion_mnist (512 training images), 2 epochs, in "
                        f"{tmp_path}/tiny")
    assert [line.split(":")[0] for line in lines[1:]] == ["tiny epoch 1/2", "tiny epoch 2/2"]
    state = json.loads(tracked.read_text())
    assert state.pop("loss") > 0
    assert state == {"run": "tiny", "step": 16, "total": 16, "epochs": 2, "epoch": 2, "saved": 2}
    train.run(TINY, tmp_path / "tiny", method="moco")
    assert capsys.readouterr().err.startswith(f"tiny: reusing the finished run in {tmp_path / 'tiny'} (moco, "
                                              f"fashion_mnist, 2 epochs; kNN top-1 ")


def test_the_terminal_bar_follows_the_progress_file(tmp_path):
    tracked, terminal = tmp_path / "progress.json", io.StringIO()
    with progress.watch(tracked, file=terminal):
        tracked.write_text(json.dumps({"run": "moco_s0", "step": 6, "total": 16, "epochs": 2, "epoch": 1,
                                       "saved": 0, "loss": 5.25}))
    shown = terminal.getvalue()
    assert "moco_s0:  38%" in shown and "6/16" in shown and "epoch=1/2, loss=5.250" in shown


def test_make_run_trains_the_plan_quietly_keeping_each_run_s_lines_in_its_log(tmp_path, monkeypatch, capsys):
    """What `make run` shows and records: the plan's runs train first, their start and epoch lines going to
    a log per run (no progress bar), the terminal gets a few lines, and the executed notebook reuses every
    run and keeps its own output in a log beside it."""
    monkeypatch.setenv("NEGATIVES_RUNS", str(tmp_path))
    monkeypatch.setattr(cl, "RUNS", tmp_path)
    study.execute("smoke", ["01_moco_v2"])
    terminal = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(terminal) <= 6 and terminal[-2].startswith("[1/1] 01_moco_v2 ")  # 6: a note on bf16 here
    assert any(line.startswith("plan: 6 runs, 6 to train or evaluate") for line in terminal)
    assert "6 runs trained" in terminal[-2]
    run_dir = tmp_path / "smoke" / "moco_3ep_s0"
    log = (tmp_path / "smoke" / "logs" / "moco_3ep_s0.log").read_text().splitlines()
    assert log[0] == (f"moco_3ep_s0: new run: moco_3ep on fashion_mnist (1,024 training images), 3 epochs, "
                      f"in {run_dir}")
    assert [line.split(":")[0] for line in log[1:]] == [f"moco_3ep_s0 epoch {e}/3" for e in (1, 2, 3)]
    executed = tmp_path / "smoke" / "notebooks" / "01_moco_v2.ipynb"
    streams = "".join("".join(o.text) for c in nbformat.read(executed, as_version=4).cells
                      for o in c.get("outputs", []) if o.output_type == "stream")
    assert "moco_3ep_s0: reusing the finished run" in streams and "new run" not in streams
    html = executed.with_suffix(".html").read_text()
    assert "it/s" not in html and "%|" not in html
    assert "reusing the finished run" in executed.with_suffix(".log").read_text()
