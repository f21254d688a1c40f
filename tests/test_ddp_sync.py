"""Two-rank DDP through the project's own training step really synchronises gradients (gloo on loopback, no Ray).

A multi-worker trial (sweep/trial.py) wraps the model with `ray.train.torch.prepare_model`, which on CPU is
exactly `torch.nn.parallel.DistributedDataParallel(model)` (no device_ids), and hands the wrapper to
`fer_models.training.train_one_epoch`, each rank on its own share of the faces (every world-th face, as
`trial._rank_share` takes it). This test runs that same combination, the project's `build_model`,
`make_optimizer` and `train_one_epoch` on a `DistributedDataParallel` built the way prepare_model builds it, in two
processes joined by a gloo process group, because Ray's `prepare_model` only works inside a Ray Train worker
and a two-worker TorchTrainer costs ~10 s of fixed overhead per run (and the Ray test only looks at rank 0).

What would let a broken setup pass the old end-to-end test (tests/test_sweep_ray.py) fails here: if gradients
were never all-reduced (the step bypassing the wrapper, a no_sync left on, an optimiser over other tensors),
each rank would end where it ends training alone on its shard, so the ranks would differ. The checks:
  1. after k steps the two ranks' weights are bitwise identical;
  2. they equal (to float rounding) one process taking the same k steps on both shards' batches concatenated,
     which is what averaged gradients mean (hence a model without BatchNorm and with dropout off: both are per
     rank and would break that equality, not the synchronisation);
  3. they differ, by far more than that rounding, from each rank trained alone on its shard;
  4. control: the same wrapper with synchronisation switched off (`DDP.no_sync`) ends exactly where each rank
     alone ends, i.e. checks 1 and 3 do detect a DDP that does not synchronise.
Not covered here: that the Ray adapter passes the wrapped model to the loop (that wiring is trial.py's).
"""
from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path

import pytest
import torch

WORLD = 2
STEPS = 4  # optimiser steps per rank
BATCH = 16  # images per step per rank
SIZE = 24  # input side in pixels
SEED = 0


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    """WORLD * STEPS * BATCH synthetic faces x [N, 1, SIZE, SIZE] float in [0, 1), labels y [N] in 0..6."""
    g = torch.Generator().manual_seed(123)
    n = WORLD * STEPS * BATCH
    return torch.rand(n, 1, SIZE, SIZE, generator=g), torch.randint(0, 7, (n,), generator=g)


def _shard(x, y, rank: int):
    return x[rank::WORLD], y[rank::WORLD]  # as sweep.trial._rank_share


def _batches(x, y) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(x[i:i + BATCH], y[i:i + BATCH]) for i in range(0, len(y), BATCH)]


def _model():
    from fer_models import build_model

    torch.manual_seed(SEED)  # identical initialisation on every rank, as the trial seeds it
    # the L2 penalty stays on: the loop adds it to the loss through the wrapper, so it goes through DDP too
    return build_model("no_batchnorm", input_size=SIZE, dropout=0.0, l2=1e-3)


def _train(net, params_of, batches) -> None:
    from fer_models import TrainConfig, make_optimizer, train_one_epoch

    # SGD, not Adam: Adam divides by sqrt of the second moment, which blows float rounding up where a gradient
    # is near zero and would make check 2 fragile. Constant lr (no scheduler), fp32 on CPU.
    optimizer = make_optimizer(params_of, TrainConfig(optimizer="sgd", lr=0.05, momentum=0.9, lr_schedule="none"))
    train_one_epoch(net, batches, optimizer, precision="fp32", device="cpu")


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    torch.set_num_threads(1)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")  # loopback only, whatever the hostname resolves to
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=timedelta(seconds=120))
    try:
        batches = _batches(*_shard(*_data(), rank))
        results = {}
        model = _model()
        _train(DistributedDataParallel(model), model, batches)  # what prepare_model returns on CPU
        results["ddp"] = _state(model)

        model = _model()
        net = DistributedDataParallel(model)
        with net.no_sync():  # control: the same wrapper, gradients never all-reduced
            _train(net, model, batches)
        results["no_sync"] = _state(model)

        model = _model()
        _train(model, model, batches)  # this rank alone on its shard
        results["alone"] = _state(model)
        torch.save(results, Path(out) / f"rank{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _max_diff(a: dict, b: dict) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.timeout(900)  # ~20 s of CPU in all; minutes of wall time when the machine is busy (spawned ranks import torch)
def test_two_ranks_stay_identical_and_match_one_big_batch_only_when_gradients_sync(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD))

    # One process, both shards: step i sees rank 0's batch i and rank 1's batch i together (equal sizes, so the
    # batch-mean loss is the mean of the two ranks' losses and its gradient the mean of their gradients).
    torch.set_num_threads(1)
    x, y = _data()
    b0, b1 = _batches(*_shard(x, y, 0)), _batches(*_shard(x, y, 1))
    model = _model()
    init = _state(model)
    _train(model, model, [(torch.cat([xa, xb]), torch.cat([ya, yb])) for (xa, ya), (xb, yb) in zip(b0, b1)])
    big = _state(model)

    # 1. the ranks hold the same weights, bit for bit
    assert all(torch.equal(r0["ddp"][k], r1["ddp"][k]) for k in r0["ddp"]), \
        f"DDP ranks diverged by up to {_max_diff(r0['ddp'], r1['ddp']):.3g}"
    # 2. and they are the big-batch weights
    rounding = _max_diff(r0["ddp"], big)
    for k in big:
        torch.testing.assert_close(r0["ddp"][k], big[k], rtol=1e-4, atol=1e-5, msg=lambda m: f"{k}: {m}")
    # 3. far from what either rank reaches alone (and training moved the weights at all). Measured: rounding
    # 1.5e-8, alone 3e-2, moved 2e-2.
    alone = min(_max_diff(r0["ddp"], r0["alone"]), _max_diff(r0["ddp"], r1["alone"]))
    assert alone > 1e-3 and alone > 100 * rounding, (alone, rounding)
    assert _max_diff(r0["alone"], r1["alone"]) > 1e-3  # the shards differ, so unsynchronised ranks would too
    assert _max_diff(big, init) > 1e-3
    # 4. control: with synchronisation off, each rank ends exactly where it ends alone, and the ranks differ
    for r in (r0, r1):
        assert all(torch.equal(r["no_sync"][k], r["alone"][k]) for k in r["alone"])
    assert not all(torch.equal(r0["no_sync"][k], r1["no_sync"][k]) for k in r0["no_sync"])
