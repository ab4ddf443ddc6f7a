"""The registry of objectives: every entry trains a step from every source it accepts;
names never fall through."""
import pytest
import torch

from cl import losses, objectives, train
from cl.train import Config, ConfigError

TINY = dict(train_subset=256, test_subset=64, width=4, hidden=16, dim=8, queue=256, batch_size=64,
            monitor_bank=64, linear_epochs=1, probe=0, device="cpu")
CASES = [(name, source) for name, objective in objectives.OBJECTIVES.items() for source in objective.sources]


@pytest.mark.parametrize("name, source", CASES, ids=[f"{n}-{s}" for n, s in CASES])
def test_every_registered_objective_trains_one_step_from_every_source_it_accepts(name, source, monkeypatch):
    objective, seen = objectives.OBJECTIVES[name], []

    def spy(cfg, similarities):
        seen.append(similarities)
        return objective.loss(cfg, similarities)

    monkeypatch.setitem(objectives.OBJECTIVES, name,
                        objectives.Objective(spy, objective.sources, objective.row, objective.clamp))
    trainer = train.Trainer(Config.from_dict({**TINY, "loss": name, "source": source}))
    before = [p.detach().clone() for p in trainer.encoder.parameters()]
    loss, last = trainer.train_step(torch.arange(64), progress=0.0)
    assert len(seen) == 1 and torch.isfinite(torch.tensor(loss))
    rows = 64 if source == "queue" else 128  # the batch source's anchors are both views
    assert seen[0].pos.shape == (rows,) and seen[0].z.shape == (rows, 8) and seen[0].labels.shape == (rows,)
    assert seen[0].neg.shape == ((rows, 256) if source == "queue" else (rows, 126))
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.encoder.parameters()))  # it stepped
    assert (trainer.moco is None) == (source == "batch")  # no key encoder or queue where nothing reads them


def test_an_unknown_objective_is_refused_by_name_never_trained_as_another():
    with pytest.raises(KeyError, match="no objective 'infonce': registered are info_nce, positives_only"):
        objectives.get("infonce")
    with pytest.raises(ConfigError, match="loss must be one of .*'supcon'.*not 'infonce'"):
        Config.from_dict({"loss": "infonce"})


def test_a_new_objective_is_one_entry_the_config_and_the_step_then_use(monkeypatch):
    scaled = objectives.Objective(lambda cfg, s: 2 * losses.info_nce(s.pos, s.neg, cfg.t), sources=("batch",))
    monkeypatch.setitem(objectives.OBJECTIVES, "twice_info_nce", scaled)
    monkeypatch.setitem(train.CHOICES, "loss", tuple(objectives.OBJECTIVES))
    with pytest.raises(ConfigError,
                       match="twice_info_nce takes its negatives from batch: use source='batch'"):
        Config.from_dict({**TINY, "loss": "twice_info_nce"})
    cfg = Config.from_dict({**TINY, "loss": "twice_info_nce", "source": "batch"})
    torch.manual_seed(0)
    twice, _ = train.Trainer(cfg).train_step(torch.arange(64), progress=0.0)
    torch.manual_seed(0)
    once, _ = train.Trainer(Config.from_dict({**TINY, "source": "batch"})).train_step(torch.arange(64),
                                                                                      progress=0.0)
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
