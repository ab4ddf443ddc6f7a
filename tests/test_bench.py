"""make bench's cost measurement: interleaved blocks of steps, so periodic work is counted once a block."""
from types import SimpleNamespace

import pytest

from cl import bench


class FakeTrainer:
    """A trainer whose step advances a fake clock: ``seconds`` a step, ``extra`` more every ``every``-th."""

    def __init__(self, clock, seconds, every=0, extra=0.0):
        self.clock, self.seconds, self.every, self.extra, self.steps = clock, seconds, every, extra, 0
        self.train_set, self.cfg = range(8), SimpleNamespace(batch_size=2)

    def train_step(self, idx, progress):
        self.steps += 1
        self.clock[0] += self.seconds + (self.extra if self.every and self.steps % self.every == 0 else 0)


@pytest.fixture
def clock(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(bench.time, "perf_counter", lambda: now[0])
    return now


def test_step_costs_are_per_round_ratios_with_their_interval(clock):
    costs = bench.step_costs(FakeTrainer(clock, 1.0), {"double": FakeTrainer(clock, 2.0)}, rounds=3)
    double = costs["double"]
    assert (double.mean, double.low, double.high, double.n) == (2.0, 2.0, 2.0, 3)


def test_a_block_of_a_refill_period_counts_periodic_work_once_a_round(clock):
    refill = lambda: FakeTrainer(clock, 1.0, every=4, extra=4.0)  # a refill every 4 steps, 4 s each
    single = bench.step_costs(FakeTrainer(clock, 1.0), {"refill": refill()}, rounds=5)
    assert single["refill"].high - single["refill"].low > 1  # one round in four holds a refill
    block = bench.step_costs(FakeTrainer(clock, 1.0), {"refill": refill()}, rounds=5, steps=4)
    refill_cost = block["refill"]  # (4 × 1 + 4) / 4: the amortised cost, every round
    assert (refill_cost.mean, refill_cost.low, refill_cost.high) == (2.0, 2.0, 2.0)


def test_the_pool_is_timed_at_every_width_up_to_the_cores():
    assert bench.pool_widths(1) == [1] and bench.pool_widths(2) == [1, 2]
    assert bench.pool_widths(16) == [1, 2, 4, 8, 16] and bench.pool_widths(6) == [1, 2, 4, 6]


def test_the_pool_s_throughput_is_measured_on_real_runs(capsys):
    tiny = dict(train_subset=256, test_subset=64, width=4, hidden=16, dim=8, queue=128, batch_size=64,
                epochs=1, monitor_bank=64, linear_epochs=2, device="cpu", probe=0)
    rates = bench.pool_runs_per_hour([1, 2], tiny)
    assert set(rates) == {1, 2} and all(rate > 0 for rate in rates.values())
    assert capsys.readouterr().out.count("one-epoch runs per hour") == 2
