"""The training loop: config validation, checkpoint and resume, reuse, bad input."""
import dataclasses
import json

import pytest
import torch
import yaml

from cl import cli, config, losses, metrics, mochi, objectives, run_folder, train
from cl.config import Config, ConfigError
from cl.run_folder import TrainingDiverged

TINY = dict(train_subset=512, test_subset=128, width=4, hidden=16, dim=8, queue=256, batch_size=64,
            epochs=2, monitor_bank=128, linear_epochs=30, probe=64, device="cpu")


def test_unknown_key_names_the_valid_ones():
    with pytest.raises(ConfigError,
                       match=r"unknown parameter 'lrr' \(did you mean 'lr'\?\).*valid parameters:.*epochs"):
        Config.from_dict({"lrr": 0.1})


@pytest.mark.parametrize("key, value", [("epochs", "ten"), ("lr", "0.1"), ("symmetric", 1), ("epochs", 2.5)])
def test_wrong_type_fails(key, value):
    with pytest.raises(ConfigError, match=f"parameter '{key}' must be"):
        Config.from_dict({key: value})


@pytest.mark.parametrize("overrides, reason", [
    (dict(queue=128, batch_size=256), "smaller than the 256 keys enqueued per step"),
    (dict(queue=300, batch_size=256, symmetric=True), r"× 2 views"),
    (dict(t=0.0), r"t must be in \(0, inf\), got 0.0"),
    (dict(tau_plus=1.0), r"tau_plus must be in \[0, 1\), got 1.0"),
    (dict(batch_size=100, bn_splits=8), "split into bn_splits=8"),
    (dict(loss="supcon"), "use source='batch'"),
    (dict(loss="infonce"), "loss must be one of"),
    (dict(mochi_s=4, mochi_n=1), "mochi_n ≥ 2"),
    (dict(queue=4096, mined_queue=8192), "exceeds the bank it is mined from"),
    (dict(mined_queue=256, source="batch"), "a mined queue refills MoCo's negatives"),
    (dict(mined_queue=256, mochi_n=8, mochi_s=4), "a mined queue refills MoCo's negatives"),
    (dict(mined_queue=256, mine_every=0), r"mine_every must be in \[1, inf\)"),
    (dict(mine_rule="votes"), "apply to a mined queue only"),
])
def test_impossible_values_fail_with_the_reason(overrides, reason):
    with pytest.raises(ConfigError, match=reason):
        Config.from_dict(overrides)


def test_int_is_accepted_for_a_float_and_stored_as_float():
    assert Config.from_dict({"lr": 1}).lr == 1.0 and isinstance(Config.from_dict({"lr": 1}).lr, float)


def test_yaml_is_read_with_the_safe_loader(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("epochs: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(cli.UserError, match=r"evil.yaml, line 1: not valid YAML \(could not determine a "):
        config.load_config(path)


def test_cosine_lr_schedule():
    cfg = Config.from_dict(dict(lr=0.1, epochs=10))
    assert train.learning_rate(cfg, 0.0) == pytest.approx(0.1)
    assert train.learning_rate(cfg, 5.0) == pytest.approx(0.05)  # halfway through the 10 epochs
    assert train.learning_rate(cfg, 10.0) == pytest.approx(0.0, abs=1e-12)


def test_constant_lr_schedule_and_adam_as_in_the_dcl_code():
    cfg = Config.from_dict(dict(lr=1e-3, epochs=10, lr_schedule="constant", optimizer="adam",
                                weight_decay=1e-6))
    assert [train.learning_rate(cfg, epoch) for epoch in (0.0, 5.0, 9.9)] == [1e-3] * 3
    opt = train.build_optimizer(cfg, [torch.nn.Parameter(torch.zeros(2))])
    assert isinstance(opt, torch.optim.Adam) and opt.defaults["weight_decay"] == 1e-6
    with pytest.raises(ConfigError, match="optimizer must be one of"):
        Config.from_dict(dict(optimizer="lamb"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    return run_dir, train.run(TINY, run_dir, notebook="test", method="moco", progress=False)


def test_a_run_writes_metrics_per_epoch_and_final(finished):
    run_dir, result = finished
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["finished"] and saved["method"] == "moco" and len(saved["epochs"]) == 2
    for row in saved["epochs"]:
        assert {"loss", "knn_top1", "alignment", "uniformity", "images_per_second", "negatives"} <= row.keys()
        assert 0 <= row["knn_top1"] <= 100 and row["images_per_second"] > 0
    final = saved["final"]
    assert 10 < final["knn_top1"] <= 100 and 10 < final["linear_top1"] <= 100
    assert 0 <= final["alignment"] <= 4 and final["uniformity"] < 0


def test_a_finished_run_is_reused_not_retrained(finished, monkeypatch):
    run_dir, result = finished
    monkeypatch.setattr(train, "Trainer", lambda cfg: pytest.fail("a finished run was retrained"))
    assert train.run(TINY, run_dir, progress=False)["final"] == result["final"]


def test_a_run_directory_of_another_config_is_refused(finished):
    run_dir, _ = finished
    with pytest.raises(ConfigError, match=r"different config \(lr: 0.03 → 0.5\)"):
        train.run({**TINY, "lr": 0.5}, run_dir, progress=False)


def test_a_checkpoint_of_another_config_is_refused(finished, tmp_path):
    run_dir, _ = finished
    study = train.Trainer(Config.from_dict({**TINY, "t": 0.2}))
    with pytest.raises(ConfigError, match=r"checkpoint .* different config \(t: 0.1 → 0.2\)"):
        study.load(run_dir / "checkpoint.pt")


def test_interrupted_run_resumes_to_the_same_weights(finished, tmp_path, monkeypatch):
    run_dir, result = finished
    resumed = tmp_path / "resumed"
    original = train.Trainer.train_epoch

    def interrupt_in_second_epoch(self, epoch, bar):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, bar)

    monkeypatch.setattr(train.Trainer, "train_epoch", interrupt_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train.run(TINY, resumed, progress=False)
    assert torch.load(resumed / "checkpoint.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(train.Trainer, "train_epoch", original)
    again = train.run(TINY, resumed, progress=False)
    a = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(resumed / "checkpoint.pt", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)
    assert again["final"]["knn_top1"] == result["final"]["knn_top1"]


def test_nan_loss_stops_clearly_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    run_dir = tmp_path / "nan"
    original, calls = objectives.OBJECTIVES["info_nce"], []

    def nan_from_the_ninth_step(cfg, similarities):  # 8 steps per epoch: the 9th is epoch 2, step 1
        calls.append(1)
        loss = original.loss(cfg, similarities)
        return loss * float("nan") if len(calls) > 8 else loss

    monkeypatch.setitem(objectives.OBJECTIVES, "info_nce",
                        dataclasses.replace(original, loss=nan_from_the_ninth_step))
    with pytest.raises(TrainingDiverged, match=r"loss is nan at epoch 2, step 1: lower lr"):
        train.run(TINY, run_dir, progress=False)
    assert torch.load(run_dir / "checkpoint.pt", weights_only=True)["epoch"] == 1


def test_command_line_entry(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "epochs": 1}))
    train.main([str(cfg), "--run-dir", str(tmp_path / "cli")])
    assert "knn_top1" in json.loads(capsys.readouterr().out)
    bad = tmp_path / "bad.yaml"
    bad.write_text("epoch: 3\n")
    assert train.main([str(bad)]) == 1
    assert capsys.readouterr().err.startswith("error: unknown parameter 'epoch' (did you mean 'epochs'?)")


@pytest.mark.parametrize("port, overrides", [
    (29517, {}),
    (29518, {"source": "batch", "loss": "debiased"}),  # two forwards (one per view) under DDP
    (29519, {"mochi_n": 32, "mochi_s": 8, "mochi_s_prime": 8, "mochi_warmup": 0, "select": "random",
             "select_fraction": 0.1}),  # MoCHi's similarity table on each rank's copy of the queue
])
def test_command_line_entry_under_torchrun(tmp_path, port, overrides):
    """Two CPU processes (gloo) through torchrun: one run, written once, by rank 0."""
    import os
    import subprocess
    import sys
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "epochs": 1, **overrides}))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                           "--master_port", str(port), "-m", "cl.train", str(cfg),
                           "--run-dir", str(tmp_path / "ddp")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert result["finished"] and result["final"]["knn_top1"] > 10


def test_bf16_encoder_returns_float32_so_similarities_never_tie_at_bf16():
    from cl import models
    enc = models.build_encoder("small_cnn", 1, 4, "mlp", 8, 16)
    x = torch.randn(4, 1, 28, 28)
    enc.bf16 = True
    z, f = enc(x), enc.features(x)
    assert z.dtype == f.dtype == torch.float32
    enc.bf16 = False
    assert (enc(x) - z).abs().max() > 0  # bf16 autocast really ran (its rounding differs)


def test_a_run_folder_of_another_precision_is_not_mistaken_for_this_run(tmp_path):
    old = {**Config.from_dict(TINY).to_dict(), "precision": "fp32"}
    assert Config.from_dict(TINY).precision == "bf16"
    run_dir = tmp_path / "old"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(yaml.safe_dump(old))
    with pytest.raises(ConfigError, match="precision: 'fp32' → 'bf16'"):
        train.run(TINY, run_dir, progress=False)


def test_mochi_warmup_in_fractional_epochs_counts_steps(monkeypatch):
    cfg = Config.from_dict(dict(TINY, mochi_n=8, mochi_s=4, mochi_s_prime=2, mochi_warmup=0.5))

    class Drawn(Exception):
        """MoCHi started drawing its mixes."""

    def draw(*args, **kwargs):
        raise Drawn

    monkeypatch.setattr(mochi, "draw_mixes", draw)
    trainer = train.Trainer(cfg)
    idx = torch.arange(cfg.batch_size)
    trainer.train_step(idx, 0.49)  # warm-up: no synthesis
    with pytest.raises(Drawn):
        trainer.train_step(idx, 0.5)  # half an epoch in: synthesis starts


def test_dcl_runs_record_the_share_of_clamped_rows_per_epoch(tmp_path):
    debiased = train.run({**TINY, "epochs": 1, "loss": "debiased"}, tmp_path / "dcl", progress=False)
    rate = debiased["epochs"][0]["clamp_rate"]
    assert isinstance(rate, float) and 0 <= rate <= 1
    plain = train.run({**TINY, "epochs": 1}, tmp_path / "nce", progress=False)
    assert "clamp_rate" not in plain["epochs"][0]  # InfoNCE has no clamp


def test_every_epoch_embeds_the_same_probe_images_without_changing_the_training(finished, tmp_path):
    run_dir, record = finished
    probe = run_folder.read_probe_set(run_dir / run_folder.PROBE_SET)
    assert sorted(probe["embeddings"]) == [1, 2]
    assert probe["embeddings"][1].shape == (TINY["probe"], TINY["dim"])
    assert torch.allclose(probe["embeddings"][2].norm(dim=1), torch.ones(TINY["probe"]))
    assert not torch.equal(probe["embeddings"][1], probe["embeddings"][2])  # it trained in between
    full = train.Trainer(Config.from_dict({**TINY, "train_subset": 0, "seed": 5}))  # another seed, no subset
    assert torch.equal(full.probe_set_index, probe["indices"])
    assert torch.equal(full.probe_set_labels, probe["labels"])
    assert torch.equal(full.train_set.labels[probe["indices"]], probe["labels"])
    unprobed = train.run({**TINY, "probe": 0}, tmp_path / "unprobed", progress=False)
    assert not (tmp_path / "unprobed" / run_folder.PROBE_SET).exists()
    timing = ("train_seconds", "images_per_second")
    assert ({k: v for k, v in unprobed["final"].items() if k not in timing}
            == {k: v for k, v in record["final"].items() if k not in timing})


def test_an_unreadable_probe_file_is_started_anew_and_the_training_goes_on(tmp_path, capsys):
    run_dir = tmp_path / "run"
    train.run({**TINY, "epochs": 1}, run_dir, progress=False)
    (run_dir / run_folder.PROBE_SET).write_bytes(b"not a tensor file")
    trainer = train.Trainer(Config.from_dict({**TINY, "epochs": 2}))
    run_folder.add_probe_set(run_dir, 2, trainer.embed_probe_set(), trainer.probe_set_index,
                             trainer.probe_set_labels)
    assert "probe.pt cannot be read" in capsys.readouterr().err
    assert list(run_folder.read_probe_set(run_dir / run_folder.PROBE_SET)["embeddings"]) == [2]


def test_a_mined_queue_gives_the_loss_only_the_mined_keys_and_their_labels():
    cfg = Config.from_dict(dict(TINY, queue=256, mined_queue=16, mine_every=2, select="drop_same_class"))
    trainer = train.Trainer(cfg)
    moco, idx = trainer.model, torch.arange(cfg.batch_size)
    _, last = trainer.train_step(idx, 0.0)
    assert last.neg.shape == (cfg.batch_size, 16)  # the loss row: the mined keys, not the bank of 256
    assert torch.equal(last.neg_labels, moco.mined_labels)  # the oracle reads the mined keys' labels
    mined_before = moco.mined_keys.clone()
    trainer.train_step(idx, 0.0)  # step 2 of every 2: no refill
    assert torch.equal(moco.mined_keys, mined_before)
    bank = moco.queue.clone()  # what step 3 mines from (its own keys are enqueued after the loss)
    trainer.train_step(idx, 0.0)  # step 3: refilled
    assert not torch.equal(moco.mined_keys, mined_before)
    assert {tuple(k.tolist()) for k in moco.mined_keys} <= {tuple(k.tolist()) for k in bank}


def test_a_key_added_later_is_left_out_at_its_default_so_earlier_runs_keep_their_identity():
    assert "positives" not in Config().to_dict() and "positives" not in Config().identity()
    several = Config.from_dict({"source": "batch", "loss": "debiased", "positives": 4})
    assert several.to_dict()["positives"] == 4 and several.identity() != Config.from_dict(
        {"source": "batch", "loss": "debiased"}).identity()
    refused = [({"loss": "debiased", "positives": 2}, "source='queue' takes one"),
               ({"source": "batch", "positives": 2}, "info_nce with source='batch' takes one"),
               ({"source": "batch", "loss": "debiased", "positives": 0}, r"positives must be in \[1")]
    for overrides, why in refused:
        with pytest.raises(ConfigError, match=why):
            Config.from_dict(overrides)


def test_dcl_with_m_positives_gives_each_anchor_its_other_views_and_keeps_the_negatives(monkeypatch):
    seen = []
    record = lambda pos, neg, t, tau_plus: seen.append((pos, neg)) or pos.mean()
    monkeypatch.setattr(losses, "debiased", record)
    idx = torch.arange(32)
    for positives in (3, 1):
        overrides = {"positives": positives} if positives > 1 else {}
        cfg = {**TINY, "source": "batch", "loss": "debiased", "batch_size": 32, **overrides}
        trainer = train.Trainer(Config.from_dict(cfg))
        trainer.train_step(idx, 0.0)
    (several, neg), (one, _) = seen
    assert several.shape == (64, 3) and neg.shape == (64, 62)  # M = 3 positives, still 2B − 2 negatives
    assert one.shape == (64,)  # M = 1: the official form, unchanged
    assert several.abs().max() <= 1 + 1e-5 and not torch.allclose(several[:, 1], several[:, 2])


def test_a_mined_queue_records_its_same_class_share_at_the_refills(tmp_path):
    mined = {**TINY, "epochs": 1, "queue": 512, "mined_queue": 64, "mine_every": 2}
    record = train.run(mined, tmp_path / "mined", progress=False)
    share = record["epochs"][0]["refill_same_class"]
    assert isinstance(share, float) and 0 <= share <= 1
    trainer = train.Trainer(Config.from_dict(mined))
    refills = []
    for step in range(4):
        _, last = trainer.train_step(torch.arange(64) + 64 * step, 0.0)
        refills.append(last.refilled)
    assert refills == [True, False, True, False]  # every mine_every steps, counted from the first
    plain = train.run({**TINY, "epochs": 1}, tmp_path / "plain", progress=False)
    assert "refill_same_class" not in plain["epochs"][0]


def test_a_collapsed_run_says_so_in_one_line_names_the_cause_and_is_kept(tmp_path, capsys):
    """The thresholds on the runs that collapse by design (no negatives) and on those that do not."""
    setting = dict(train_subset=1024, test_subset=256, width=8, hidden=64, queue=1024, batch_size=128,
                   epochs=2, monitor_bank=256, linear_epochs=2, device="cpu")
    spread = train.run({**setting}, tmp_path / "moco", progress=False)
    collapsed = train.run({**setting, "loss": "positives_only"}, tmp_path / "positives", progress=False)
    frozen = train.run({**setting, "t": 1e-6}, tmp_path / "cold", progress=False)
    assert spread["collapsed"] is None and spread["final"]["uniformity"] < metrics.UNIFORMITY_COLLAPSED
    assert collapsed["collapsed"].startswith("uniformity loss") and collapsed["finished"]
    assert frozen["collapsed"] is not None
    said = [line for line in capsys.readouterr().err.splitlines() if "finished, but" in line]
    kept = "The run is kept (metrics.json records the collapse)"
    assert said == [
        f"positives: finished, but its embedding collapsed ({collapsed['collapsed']}); likely cause: no "
        f"negatives: nothing keeps the embeddings apart (notebook 00 shows this on purpose). {kept}",
        f"cold: finished, but its embedding collapsed ({frozen['collapsed']}); likely cause: the temperature "
        f"t=1e-06, far below the papers' 0.07–0.5: raise t. {kept}"]
    recorded = json.loads((tmp_path / "positives" / "metrics.json").read_text())["collapsed"]
    assert recorded == collapsed["collapsed"]


def test_collapse_reads_the_uniformity_loss_and_the_effective_rank():
    assert metrics.collapse(-3.2, 40.0) is None
    assert metrics.collapse(-0.05, 40.0).startswith("uniformity loss -0.050 > -0.1")
    assert metrics.collapse(-2.0, 1.2).startswith("effective rank 1.20 < 2")


def test_the_likely_cause_of_a_collapse_follows_the_config():
    cause = lambda **kw: train.collapse_cause(config.Config(**kw))
    assert cause(loss="positives_only").startswith("no negatives")
    assert cause(loss="byol").startswith("the predictor and stop-gradient")
    assert cause(t=1e-6).startswith("the temperature t=1e-06")
    assert cause(select="hardest", select_fraction=0.05).startswith(
        "the negatives kept (select hardest, select_fraction 0.05)")
    assert cause(lr=3.0).startswith("the learning rate lr=3")
