"""The MoCo v2 core: momentum update, queue, shuffle BN, split BN, and two-process training."""
import os

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from cl import mochi, models
from cl.moco import MoCo, shuffle_batch, unshuffle_batch
from cl.negatives import batch_pairs


def tiny_moco(K=64, m=0.9, shuffle_bn=True, bn_splits=1):
    torch.manual_seed(0)
    enc = models.build_encoder("small_cnn", 1, 4, "mlp", 8, 16, bn_splits)
    return MoCo(enc, dim=8, K=K, m=m, shuffle_bn=shuffle_bn)


def test_key_encoder_is_a_copy_without_gradient():
    moco = tiny_moco()
    for pq, pk in zip(moco.encoder_q.parameters(), moco.encoder_k.parameters()):
        assert torch.equal(pq, pk) and not pk.requires_grad


def test_momentum_update_is_the_ema():
    moco = tiny_moco(m=0.75)
    before_k = [p.clone() for p in moco.encoder_k.parameters()]
    with torch.no_grad():
        for p in moco.encoder_q.parameters():
            p.add_(1.0)
    moco.momentum_update()
    for pk, bk, pq in zip(moco.encoder_k.parameters(), before_k, moco.encoder_q.parameters()):
        torch.testing.assert_close(pk, 0.75 * bk + 0.25 * pq)


def test_forward_gives_the_loss_contract():
    moco = tiny_moco(K=32)
    x1, x2 = torch.randn(8, 1, 28, 28), torch.randn(8, 1, 28, 28)
    (pair,) = moco(x1, x2)
    assert pair.pos.shape == (8,) and pair.neg.shape == (8, 32)
    torch.testing.assert_close(pair.pos, (pair.q * pair.k).sum(1))
    torch.testing.assert_close(pair.neg, pair.q @ moco.queue.T)
    assert pair.q.requires_grad and not pair.k.requires_grad
    assert len(moco(x1, x2, symmetric=True)) == 2


def test_queue_is_fifo_and_keeps_labels_and_indices():
    moco = tiny_moco(K=10)
    k = F.normalize(torch.randn(4, 8), dim=1)
    for step in range(3):  # 12 keys into 10 slots: the first two are overwritten
        moco.enqueue(k + step, torch.arange(4) + 10 * step, torch.arange(4) + 100 * step)
    assert moco.queue_ptr.item() == 2
    assert moco.queue_labels.tolist() == [22, 23, 2, 3, 10, 11, 12, 13, 20, 21]
    assert moco.queue_index.tolist() == [202, 203, 2, 3, 100, 101, 102, 103, 200, 201]
    torch.testing.assert_close(moco.queue[0], (k + 2)[2])
    with pytest.raises(ValueError, match="do not fit"):
        moco.enqueue(torch.randn(11, 8), torch.zeros(11, dtype=torch.long), torch.zeros(11, dtype=torch.long))


def test_mochis_similarity_table_follows_the_queue_through_enqueue_and_loading():
    moco, synthesis = tiny_moco(K=10), mochi.Mochi(4, 2, 1)
    similarity = lambda m, table: table.pair_similarity(m.queue, m.queue_ptr, i, j)
    i, j = torch.meshgrid(torch.arange(10), torch.arange(10), indexing="ij")
    torch.testing.assert_close(similarity(moco, synthesis), moco.queue @ moco.queue.T)
    for step in range(5):  # 3 keys a step into 10 slots: wraps around the end of the queue
        keys = F.normalize(torch.randn(3, 8), dim=1)
        synthesis.enqueued(moco.queue, moco.enqueue(keys, torch.zeros(3, dtype=torch.long), torch.arange(3)))
        torch.testing.assert_close(similarity(moco, synthesis), moco.queue @ moco.queue.T)
    other, table = tiny_moco(K=10), mochi.Mochi(4, 2, 1)
    similarity(other, table)
    other.load_state_dict(moco.state_dict())
    table.forget()
    torch.testing.assert_close(similarity(other, table), moco.queue @ moco.queue.T)


def test_enqueue_after_loss_does_not_touch_the_gradient_graph():
    moco = tiny_moco(K=16)
    (pair,) = moco(torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28))
    loss = -pair.pos.mean() + pair.neg.logsumexp(1).mean()
    moco.enqueue(pair.k, torch.zeros(4, dtype=torch.long), torch.arange(4))
    loss.backward()  # would fail if the queue used by the loss had been modified in place
    assert all(p.grad is not None for p in moco.encoder_q.parameters())
    assert moco.queue.grad is None


def test_shuffle_then_unshuffle_is_the_identity():
    x = torch.arange(12.0).view(6, 2)
    shuffled, undo = shuffle_batch(x, torch.Generator().manual_seed(1))
    assert not torch.equal(shuffled, x) and sorted(shuffled[:, 0].tolist()) == x[:, 0].tolist()
    assert torch.equal(unshuffle_batch(shuffled, undo), x)


def test_split_batch_norm_normalises_each_split_on_its_own():
    """As in the official demo, sample n falls in group n mod num_splits."""
    bn = models.SplitBatchNorm(3, num_splits=2)
    x = torch.stack([torch.randn(4, 3, 2, 2), 10 + 5 * torch.randn(4, 3, 2, 2)], dim=1).flatten(0, 1)
    out = bn(x)
    for half in (out[0::2], out[1::2]):
        torch.testing.assert_close(half.mean((0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    plain = torch.nn.BatchNorm2d(3)(x)
    assert not torch.allclose(plain[:4].mean((0, 2, 3)), torch.zeros(3), atol=1e-2)
    with pytest.raises(ValueError, match="cannot be split"):
        bn(torch.randn(5, 3, 2, 2))


def test_shuffled_keys_stay_aligned_with_their_images():
    """With one BN group, shuffling cannot change the keys: it only reorders the batch."""
    x = torch.randn(8, 1, 28, 28)
    shuffled, plain = tiny_moco(shuffle_bn=True), tiny_moco(shuffle_bn=False)
    torch.testing.assert_close(shuffled.keys(x, torch.Generator().manual_seed(0)), plain.keys(x))
    # with split BN the shuffle changes which images share statistics, so keys change
    split_shuffled = tiny_moco(shuffle_bn=True, bn_splits=2)
    split_plain = tiny_moco(shuffle_bn=False, bn_splits=2)
    assert not torch.allclose(split_shuffled.keys(x, torch.Generator().manual_seed(0)), split_plain.keys(x))


def test_batch_pairs_is_the_simclr_source():
    z = F.normalize(torch.randn(6, 4), dim=1)  # B = 3 images, two views
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    pos, neg, neg_labels = batch_pairs(z, labels)
    assert pos.shape == (6,) and neg.shape == (6, 4)
    torch.testing.assert_close(pos[0], z[0] @ z[3])
    torch.testing.assert_close(pos[4], z[4] @ z[1])
    expected = [z[0] @ z[j] for j in (1, 2, 4, 5)]
    torch.testing.assert_close(neg[0], torch.stack(expected))
    assert neg_labels[0].tolist() == [1, 2, 1, 2]


def _worker(rank, world, init_file, out_dir, overrides):
    import torch.distributed as dist

    from cl.config import Config
    from cl.progress import RunProgress
    from cl.train import Trainer
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    cfg = Config.from_dict(dict(train_subset=256, test_subset=64, width=4, hidden=16, dim=8, queue=256,
                                batch_size=32, epochs=1, device="cpu", monitor_bank=64, seed=3, **overrides))
    trainer = Trainer(cfg)
    trainer.train_epoch(0, RunProgress("ddp", 1, len(trainer.train_set) // cfg.batch_size, 0, enabled=False))
    torch.save({"model": trainer.model_state()}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.parametrize("overrides", [{}, {"mined_queue": 32, "mine_every": 2, "mine_rule": "random"}],
                         ids=["queue", "mined queue"])
def test_two_processes_hold_identical_queues_and_weights(tmp_path, overrides):
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path), overrides), nprocs=2, join=True)
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    # BN running statistics are per rank (DDP broadcasts rank 0's at each forward, as in
    # the official MoCo); weights, the queue and its labels must agree exactly.
    shared = [k for k in a if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))]
    assert any(k.startswith("encoder_k.") for k in shared) and "queue" in shared
    assert ("mined_keys" in shared) == bool(overrides)
    for key in shared:
        torch.testing.assert_close(a[key], b[key], msg=f"ranks differ in {key}")
    # 8 steps of 32 keys gathered from both ranks filled the 256-slot queue: no initial noise left
    assert (a["queue_labels"] >= 0).all()
    assert a["queue_index"].unique().numel() == 256


def test_mining_copies_the_bank_keys_hardest_for_some_query_with_their_labels():
    moco = MoCo(models.build_encoder("small_cnn", 1, 4, "mlp", 2, 16, 1), dim=2, K=6, mined=2)
    angles = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
    moco.queue.copy_(torch.stack([angles.cos(), angles.sin()], 1))
    moco.queue_labels.copy_(torch.arange(6) * 10)
    q = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])  # hardest for q0: angle 0; for q1: angle 3.0 (nearest to π)
    slots = moco.mine(q)
    assert sorted(slots.tolist()) == [0, 5]
    assert sorted(moco.mined_labels.tolist()) == [0, 50]
    (pair,) = moco(torch.randn(4, 1, 28, 28), torch.randn(4, 1, 28, 28))
    assert pair.neg.shape == (4, 2)
    torch.testing.assert_close(pair.neg, pair.q @ moco.mined_keys.T)


def test_a_mined_queue_larger_than_its_bank_is_refused():
    with pytest.raises(ValueError, match="mined <= K"):
        MoCo(models.build_encoder("small_cnn", 1, 4, "mlp", 8, 16, 1), dim=8, K=4, mined=5)
