"""The prepared GPU check (cl.gpu_check), as it runs without a GPU: the pool's rows, the table, the JSON;
and the expected GPU-hours that make run SCALE=gpu prints from a committed check."""
import json

from cl import config, gpu_check, pool

TINY = dict(train_subset=256, test_subset=64, width=4, hidden=16, dim=8, queue=128, batch_size=64, epochs=1,
            monitor_bank=64, linear_epochs=2, probe=0, device="cpu")


def test_without_a_gpu_the_check_measures_the_pool_at_every_width(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check, "SMALL", TINY)
    monkeypatch.setattr(pool, "cores", lambda: 2)
    assert gpu_check.main(["--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].endswith("on no GPU, 2 cores")
    written = json.loads((tmp_path / "gpu_check.json").read_text())
    assert written["device"] == "no GPU" and written["cores"] == 2
    names = [f"pool of {width} small-CNN runs side by side (CPU)" for width in (1, 2)]
    assert list(written["rows"]) == names and all(written["rows"][name] > 0 for name in names)
    assert [line.split("  ")[0] for line in printed[-2:]] == names


def test_the_expected_gpu_hours_come_from_the_committed_step_time(tmp_path):
    check = tmp_path / "gpu-check.json"
    configs = [config.Config(arch="resnet18", epochs=200), config.Config(arch="resnet18", epochs=100,
                                                                          train_subset=30_000)]
    assert "not measured yet" in gpu_check.expected_hours(configs, tmp_path / "none.json")
    check.write_text(json.dumps({"device": "NVIDIA H100", "date": "2026-12-07",
                                 "rows": {"ResNet-18 step, bf16 (default)": 5000.0}}))
    hours = (200 * 60_000 + 100 * 30_000) / 5000 / 3600
    assert gpu_check.expected_hours(configs, check) == (
        f"expected GPU time: at least {hours:.1f} GPU-hours for 2 runs, from the ResNet-18 step measured "
        f"on NVIDIA H100 (2026-12-07)")
