"""Every condition the gpu-scale parameters define is a valid config and trains one step on
the CPU, so that a GPU user never meets a config error that a CPU could have caught."""
import dataclasses

import pytest
import torch

from cl import parameters
from cl.config import Config
from cl.train import Trainer

# keys of a notebook's parameters that hold cl.config.Config overrides (one dict, or a dict of dicts)
OVERRIDES = ("paper_setting", "mochi", "mochi_large", "baseline", "transfer", "larger_bank", "small_queue",
             "mined_nearest", "mined_votes", "mined_random")
NAMED_OVERRIDES = ("variants", "positives")


def gpu_conditions():
    for py in parameters.notebooks():
        params = parameters.parameters("gpu", py.stem)
        if "base" not in params:  # a notebook that trains nothing (07 reads the others' runs)
            continue
        base = params["base"]
        yield f"{py.stem}:base", base
        for key in OVERRIDES:
            if key in params:
                yield f"{py.stem}:{key}", {**base, **params[key]}
        for key in NAMED_OVERRIDES:
            for name, overrides in params.get(key, {}).items():
                yield f"{py.stem}:{key}.{name}", {**base, **overrides}
        for t in params.get("temperatures", []):
            yield f"{py.stem}:t={t}", {**base, "t": t}
        for tp in params.get("tau_plus_sweep", []):
            yield f"{py.stem}:tau_plus={tp}", {**base, "loss": "debiased", "tau_plus": tp}
        for b in params.get("beta_sweep", []):
            yield f"{py.stem}:beta={b}", {**base, "loss": "hard", "beta": b}
        for b in params.get("paper_betas", []):
            yield f"{py.stem}:paper beta={b}", {**base, **params["paper_setting"], "loss": "hard", "beta": b}


CONDITIONS = dict(gpu_conditions())


def test_the_gpu_parameters_define_the_paper_settings():
    assert CONDITIONS["03_debiased:paper_setting"]["t"] == 0.5
    assert CONDITIONS["04_hard_negative_sampling:paper beta=0.5"]["optimizer"] == "adam"
    mochi = CONDITIONS["05_hard_negative_mixing:mochi"]
    assert mochi["mochi_n"] / mochi["queue"] == 1024 / 16384  # the paper's N/K on ImageNet-100


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_gpu_condition_is_a_valid_config(name):
    cfg = Config.from_dict(CONDITIONS[name])  # validated as the GPU run will validate it
    assert cfg.epochs >= 100, "a gpu-scale schedule"


def code_path(overrides: dict) -> tuple:
    """What decides which code a step runs: the config less the loss's scalar parameters."""
    return tuple(sorted((k, v) for k, v in overrides.items() if k not in ("t", "tau_plus", "beta", "lr")))


STRUCTURAL = {code_path(c): name for name, c in sorted(CONDITIONS.items())}


@pytest.mark.parametrize("name", sorted(STRUCTURAL.values()))
def test_gpu_condition_trains_one_step_on_cpu(name):
    cfg = Config.from_dict(CONDITIONS[name])
    # the same config on a tiny subset: the data, the model and one step, on the CPU
    tiny = dataclasses.replace(cfg, device="cpu", train_subset=256, test_subset=64, batch_size=64,
                               queue=max(cfg.mochi_n, cfg.mined_queue, 256), monitor_bank=64, linear_epochs=1)
    tiny.validate()
    run = Trainer(tiny)
    loss, _ = run.train_step(torch.arange(64), cfg.epochs / 2)
    assert torch.isfinite(torch.tensor(loss))
