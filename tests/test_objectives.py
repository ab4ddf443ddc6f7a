"""The registry of objectives: every entry trains a step from every source it accepts;
names never fall through."""
import dataclasses

import pytest
import torch

from cl import config, losses, objectives, train
from cl.config import Config, ConfigError
from cl.moco import MoCo

TINY = dict(train_subset=256, test_subset=64, width=4, hidden=16, dim=8, queue=256, batch_size=64,
            monitor_bank=64, linear_epochs=1, probe=0, device="cpu")
CASES = [(name, source) for name, objective in objectives.OBJECTIVES.items() for source in objective.sources]


@pytest.mark.parametrize("name, source", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_every_registered_objective_trains_one_step_from_every_source_it_accepts(name, source, monkeypatch):
    objective, seen = objectives.OBJECTIVES[name], []

    def spy(cfg, similarities):
        seen.append(similarities)
        return objective.loss(cfg, similarities)

    monkeypatch.setitem(objectives.OBJECTIVES, name, dataclasses.replace(objective, loss=spy))
    trainer = train.Trainer(Config.from_dict({**TINY, "loss": name, "source": source}))
    before = [p.detach().clone() for p in trainer.encoder.parameters()]
    loss, last = trainer.train_step(torch.arange(64), 0.0)
    assert len(seen) == 1 and torch.isfinite(torch.tensor(loss))
    rows = 64 if source == "queue" else 128  # the batch source's anchors are both views
    assert seen[0].pos.shape == (rows,) and seen[0].z.shape == (rows, 8) and seen[0].labels.shape == (rows,)
    assert seen[0].neg.shape == (rows, {"queue": 256, "batch": 126, "none": 0}[source])
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.encoder.parameters()))  # it stepped
    # no key encoder or queue where nothing reads them
    assert isinstance(trainer.model, MoCo) == (source == "queue")


def test_an_unknown_objective_is_refused_by_name_never_trained_as_another():
    with pytest.raises(KeyError, match="no objective 'infonce': registered are info_nce, positives_only"):
        objectives.get("infonce")
    with pytest.raises(ConfigError, match="loss must be one of .*'supcon'.*not 'infonce'"):
        Config.from_dict({"loss": "infonce"})


def test_a_new_objective_is_one_entry_the_config_and_the_step_then_use(monkeypatch):
    scaled = objectives.Objective(lambda cfg, s: 2 * losses.info_nce(s.pos, s.neg, cfg.t), sources=("batch",))
    monkeypatch.setitem(objectives.OBJECTIVES, "twice_info_nce", scaled)
    monkeypatch.setitem(config.CHOICES, "loss", tuple(objectives.OBJECTIVES))
    with pytest.raises(ConfigError,
                       match="twice_info_nce takes its negatives from batch: use source='batch'"):
        Config.from_dict({**TINY, "loss": "twice_info_nce"})
    cfg = Config.from_dict({**TINY, "loss": "twice_info_nce", "source": "batch"})
    torch.manual_seed(0)
    twice, _ = train.Trainer(cfg).train_step(torch.arange(64), 0.0)
    torch.manual_seed(0)
    once, _ = train.Trainer(Config.from_dict({**TINY, "source": "batch"})).train_step(torch.arange(64), 0.0)
    assert twice == pytest.approx(2 * once, rel=1e-5)


def test_objectives_without_a_row_refuse_selections_and_mochi():
    with pytest.raises(ConfigError, match="supcon has no row of negatives .*use select='all'"):
        Config.from_dict({"loss": "supcon", "source": "batch", "select": "hardest", "select_fraction": 0.5})
    with pytest.raises(ConfigError, match="positives_only has no row of negatives"):
        Config.from_dict({"loss": "positives_only", "mochi_n": 8, "mochi_s": 4})


def test_dcl_and_hcl_report_when_their_estimator_sits_at_its_floor():
    pos, neg = torch.ones(4), torch.full((4, 16), -1.0)  # far negatives: N_g below its floor e^{-1/t}
    cfg = Config(t=0.5, tau_plus=0.5)
    for name in ("debiased", "hard"):
        assert objectives.get(name).clamp(cfg, pos, neg).all()
    assert objectives.get("info_nce").clamp is None


@pytest.mark.parametrize("name", ["simsiam", "byol"])
def test_no_gradient_reaches_the_encoder_through_the_target_branch(name):
    trainer = train.Trainer(Config.from_dict({**TINY, "loss": name, "source": "none", "head": "mlp_bn",
                                              "predictor_hidden": 4}))
    siamese, objective = trainer.model, objectives.get(name)
    x1, x2 = trainer.views(trainer.train_set.images[:64], torch.Generator().manual_seed(0))

    def encoder_gradients():
        pos, z = siamese(x1, x2)
        loss = objective.loss(trainer.cfg, objectives.Similarities(pos, pos.new_empty(len(pos), 0), z, z))
        return torch.autograd.grad(loss, list(siamese.encoder.parameters()), allow_unused=True)

    assert any(g is not None and g.abs().max() > 0 for g in encoder_gradients())  # through the predictor
    with torch.no_grad():  # a predictor whose output is a constant: no path left through it
        siamese.predictor[-1].weight.zero_()
        siamese.predictor[-1].bias.normal_()
    # what reaches the encoder now could only come through the other branch: sg(z) or the target
    assert all(g is None or g.abs().max() == 0 for g in encoder_gradients())


def test_byol_moves_its_target_by_momentum_and_never_by_gradient():
    trainer = train.Trainer(Config.from_dict({**TINY, "loss": "byol", "source": "none", "moco_m": 0.9}))
    siamese = trainer.model
    assert all(not p.requires_grad for p in siamese.target.parameters())
    trainer.train_step(torch.arange(64), 0.0)  # a gradient step: the online network moves away
    x = trainer.views(trainer.train_set.images[:64], torch.Generator().manual_seed(1))
    before = [p.detach().clone() for p in siamese.target.parameters()]
    online = [p.detach().clone() for p in siamese.encoder.parameters()]
    siamese(*x)
    for old, new, theta in zip(before, siamese.target.parameters(), online):
        torch.testing.assert_close(new, 0.9 * old + 0.1 * theta)


def test_simsiam_and_byol_losses_on_known_cosines():
    pos = torch.tensor([1.0, 0.5, 0.0, -0.5])
    assert losses.negative_cosine(pos).item() == pytest.approx(-0.25)
    assert losses.byol(pos).item() == pytest.approx(4 - 4 * 0.25)  # summed over the two views


def test_simsiams_predictor_can_keep_its_learning_rate_and_byols_target_momentum_rises_to_one():
    cfg = Config.from_dict({**TINY, "loss": "simsiam", "source": "none", "head": "mlp_bn_out",
                            "predictor_lr": "fixed", "epochs": 2})
    trainer = train.Trainer(cfg)
    groups = trainer.optimizer.param_groups
    assert len(groups) == 2 and groups[1].get("fixed_lr")
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in trainer.model.predictor.parameters()}
    trainer.train_epoch(1, train.RunProgress("t", 2, 4, 1, enabled=False))  # the second half of the cosine
    assert groups[1]["lr"] == cfg.lr and groups[0]["lr"] < cfg.lr / 2
    byol = train.Trainer(Config.from_dict({**TINY, "loss": "byol", "source": "none", "head": "mlp_bn",
                                           "target_schedule": "cosine", "moco_m": 0.9, "epochs": 4}))
    momentum = []
    for progress in (0.0, 2.0, 4.0):
        byol.train_step(torch.arange(64), progress)
        momentum.append(byol.model.momentum)
    assert momentum == pytest.approx([0.9, 0.95, 1.0])
