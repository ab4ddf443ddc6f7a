"""The config's keys and defaults are frozen: each pinned identity of the smoke study
(tests/fixtures/smoke_identities.yaml) is rebuilt by cl.config.Config unchanged, so a new key or a
moved default cannot silently change which finished runs are reused."""
from pathlib import Path

import pytest
import yaml

from cl.config import Config

PINNED = yaml.safe_load((Path(__file__).parent / "fixtures" / "smoke_identities.yaml").read_text())


def test_the_pin_holds_the_whole_smoke_study():
    assert len(PINNED) >= 30 and all("seed" in identity for identity in PINNED.values())


@pytest.mark.parametrize("name", sorted(PINNED))
def test_config_rebuilds_each_pinned_identity(name):
    pinned = PINNED[name]
    rebuilt = Config.from_dict(pinned).identity()
    changed = sorted(k for k in rebuilt.keys() | pinned.keys() if rebuilt.get(k) != pinned.get(k))
    assert rebuilt == pinned, f"{name}: Config changes {changed}"
