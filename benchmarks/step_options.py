"""Is there a faster training step than the one trials run, and does it pay for itself within a trial?

For each model, on the device a Train worker would use (CUDA if visible, else this CPU with --threads threads),
it times one training step (forward, cross-entropy, backward, Adam step; batch --batch of random faces at --size)
under each option:

- eager: the step as trials run it today, in the precision `auto` picks here (the named baseline), and eager in
  the other precision where the device has a fast one (fp32 vs bf16 autocast + channels_last);
- compiled: `torch.compile` of the model (inductor; on CUDA also mode="reduce-overhead", which replays the step
  as CUDA graphs). Its compile time is the first steps' wall time minus eager's, and "pays after" the steps it
  takes to earn that back (in steps, and in epochs of the official training split: 225 steps at batch 128);
- ensemble: --copies copies of the model (as a trial's paired seeds) trained together as one vmapped ensemble
  (torch.func.stack_module_state + vmap, each copy its own batch, as seeds see their own batch order), against the
  copies stepped one after another; images/s of all copies together. Batch norm is unchanged by it: under vmap each copy
  normalises with its own batch's statistics and updates its own slice of the stacked running statistics. The
  script checks that: with dropout switched off, one vmapped forward + backward and each copy's own give the same
  losses, running statistics and gradients up to rounding (the last column; see `batchnorm_check`).

    python benchmarks/step_options.py                                   # the study's five CNNs + vgg_fer, 64x64
    python benchmarks/step_options.py --models baseline,optimized --size 32     # a short CPU run

Last line: the fastest option against the eager baseline, summed over the models (time per image).
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fer_models import TrainConfig, build_model, make_optimizer  # noqa: E402
from fer_models.perf import host_kind, set_threads, tune_malloc  # noqa: E402
from fer_models.training import setup_precision  # noqa: E402

STUDY = ["baseline", "no_batchnorm", "no_dropout", "fewer_layers", "optimized"]
N_TRAIN = 28_709  # faces in the official training split


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batch(n: int, size: int, device, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, size, size, generator=g)
    return x.to(device), torch.randint(0, 7, (n,), generator=g).to(device)


def timed(step, steps: int, device) -> tuple[float, float]:
    """(seconds of the first two steps, seconds per step after them)."""
    sync(device)
    t0 = time.perf_counter()
    step()
    step()
    sync(device)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return first, (time.perf_counter() - t0) / steps


def single(name: str, size: int, bs: int, prec, compile_mode: str | None, steps: int) -> tuple[float, float]:
    torch.manual_seed(0)
    model = prec.prepare(build_model(name, input_size=size))
    opt = make_optimizer(model, TrainConfig())
    net = model if compile_mode is None else torch.compile(model, mode=compile_mode)
    x, y = batch(bs, size, prec.device, 0)
    if prec.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def step():
        if compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # a new iteration: CUDA graphs may reuse the last one's memory
        train_step(net, opt, x, y, prec)

    return timed(step, steps, prec.device)


def batch_loss(forward, x, y, prec) -> torch.Tensor:
    """Cross-entropy in fp32 of `forward(x)` run in the precision's autocast: the loss of every option."""
    with prec.autocast():
        logits = forward(x)
    return F.cross_entropy(logits.float(), y)


def train_step(net, opt, x, y, prec) -> None:
    """The bare training step the eager and compiled options time: loss, backward, optimiser step."""
    loss = batch_loss(net, x, y, prec)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def copies(name: str, size: int, k: int, prec, *, dropout: bool = True) -> list[nn.Module]:
    """`k` copies of the model as seeds 0..k-1 initialise them, in training mode (dropout off if asked)."""
    out = []
    for seed in range(k):
        torch.manual_seed(seed)
        m = prec.prepare(build_model(name, input_size=size)).train()
        for d in m.modules():
            if isinstance(d, nn.Dropout) and not dropout:
                d.eval()  # dropout off: the two ways draw their masks differently
        out.append(m)
    return out


def stacked(models: list[nn.Module], prec):
    """`models` as one: (stacked params, stacked buffers, vmapped per-copy loss of (params, buffers, xs, ys))."""
    from torch.func import functional_call, stack_module_state, vmap

    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")

    def loss(p, b, x, y):
        return batch_loss(lambda inputs: functional_call(base, (p, b), (inputs,)), x, y, prec)

    return params, buffers, vmap(loss, randomness="different")  # each copy its own dropout masks


def ensemble_step(models: list[nn.Module], xs, ys, prec):
    params, buffers, losses = stacked(models, prec)
    # The trials' optimiser over the stacked tensors (Adam is elementwise: the same as one per copy).
    opt = make_optimizer(SimpleNamespace(parameters=lambda: list(params.values())), TrainConfig())

    def step():
        opt.zero_grad(set_to_none=True)
        losses(params, buffers, xs, ys).sum().backward()
        opt.step()

    return step


def batchnorm_check(name: str, size: int, k: int, xs, ys, prec) -> str:
    """How far one vmapped forward + backward of `k` copies (dropout off) lies from each copy's own: the largest
    loss difference and running-statistics difference (batch norm's batch and running statistics), and the median
    over copies of the gradients' relative L2 difference (a median: a max-pool tie or a ReLU at 0 that rounding
    tips the other way changes a copy's gradient by ~1e-3 without anything being wrong)."""
    a, b = copies(name, size, k, prec, dropout=False), copies(name, size, k, prec, dropout=False)
    params, buffers, losses = stacked(a, prec)
    vm = losses(params, buffers, xs, ys)
    vm.sum().backward()
    loss_diff = stats_diff = 0.0
    grad_diffs = []
    for i, (m, x, y) in enumerate(zip(b, xs, ys)):
        loss = batch_loss(m, x, y, prec)
        loss.backward()
        loss_diff = max(loss_diff, abs(vm[i].item() - loss.item()))
        for n, t in m.named_buffers():
            stats_diff = max(stats_diff, (buffers[n][i].float() - t.float()).abs().max().item())
        diff = sum(((params[n].grad[i] - t.grad) ** 2).sum() for n, t in m.named_parameters()).sqrt()
        grad_diffs.append((diff / sum((t.grad ** 2).sum() for t in m.parameters()).sqrt()).item())
    return f"{loss_diff:.0e}, {stats_diff:.0e}, {statistics.median(grad_diffs):.0e}"


def sequential_step(models: list[nn.Module], xs, ys, prec):
    opts = [make_optimizer(m, TrainConfig()) for m in models]

    def step():
        for m, opt, x, y in zip(models, opts, xs, ys):
            train_step(m, opt, x, y, prec)

    return step


def ensemble(name: str, size: int, bs: int, k: int, prec, steps: int) -> dict:
    xs, ys = (torch.stack(t) for t in zip(*(batch(bs, size, prec.device, s) for s in range(k))))
    out = {"check": batchnorm_check(name, size, k, xs, ys, prec)}
    out["vmap"] = timed(ensemble_step(copies(name, size, k, prec), xs, ys, prec), steps, prec.device)[1]
    out["seq"] = timed(sequential_step(copies(name, size, k, prec), xs, ys, prec), steps, prec.device)[1]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(STUDY + ["vgg_fer"]))
    p.add_argument("--size", type=int, default=64, help="input side (the paper profile: 64; settle: 32)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="timed steps per option, after two warm-up steps")
    p.add_argument("--copies", type=int, default=5, help="models in the vmapped ensemble (a profile's seeds)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads (a Train worker's --cpus-per-worker)")
    args = p.parse_args()
    tune_malloc()
    set_threads(args.threads)
    # A cold compile, as a trial's first on a fresh node: inductor keeps compiled kernels in a cache that outlives
    # the process, so later trials on the same node compile faster than this run says.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="step_options_inductor_")
    auto = setup_precision("auto")
    dev = auto.device
    other = {"fp32": "bf16", "bf16": "fp32", "fp16": "fp32"}[auto.name]
    # The other precision only where it can be fast: on a CPU without native bf16 it is emulated (~6-20x slower).
    alt = setup_precision(other) if dev.type == "cuda" or auto.name == "bf16" else None
    modes = [None, "reduce-overhead"] if dev.type == "cuda" else [None]
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"{host_kind()}, {args.threads} thread(s)"
    print(f"device: {where}; torch {torch.__version__}; {args.size}x{args.size}, batch {args.batch}; "
          f"{args.steps} timed steps per option; images/s (sequential, vmapped: {args.copies} copies together)")
    compiled = {m: "compiled" if m is None else f"compiled {m}" for m in modes}  # column per compile mode
    cols = [f"eager {auto.name}"] + ([f"eager {alt.name}"] if alt else []) + list(compiled.values()) + \
        ["sequential", "vmapped"]
    print(f"{'model':<14}" + "".join(f"{c:>22}" for c in cols)
          + f"   {'compile s, pays after':<32}   vmapped vs alone: loss, stats, grads")
    base_total = best_total = 0.0
    # The process's first steps run several times slower whatever the option (allocator and oneDNN warm-up, beyond
    # the two untimed steps of each option): a throw-away eager run first.
    single(args.models.split(",")[0], args.size, args.batch, auto, None, args.steps)
    for name in args.models.split(","):
        first, eager = single(name, args.size, args.batch, auto, None, args.steps)
        seconds = {cols[0]: eager}  # per batch of --batch images
        if alt:
            seconds[cols[1]] = single(name, args.size, args.batch, alt, None, args.steps)[1]
        notes = []
        for m in modes:
            c_first, c_step = single(name, args.size, args.batch, auto, "default" if m is None else m, args.steps)
            seconds[compiled[m]] = c_step
            extra = c_first - first
            pays = "never"
            if c_step < eager:
                after = extra / (eager - c_step)
                pays = f"{after:,.0f} steps ({after / -(-N_TRAIN // args.batch):.1f} epochs)"
            notes.append(f"{extra:.0f} s, {pays}")
        ens = ensemble(name, args.size, args.batch, args.copies, auto, args.steps)
        seconds["sequential"], seconds["vmapped"] = ens["seq"] / args.copies, ens["vmap"] / args.copies
        print(f"{name:<14}" + "".join(f"{args.batch / seconds[c]:>22,.0f}" for c in cols)
              + f"   {'; '.join(notes):<32}   {ens['check']}", flush=True)
        base_total += eager
        best_total += min(seconds.values())
        fastest = min(seconds, key=seconds.get)
        print(f"{'':<14}fastest: {fastest} ({eager / seconds[fastest]:.2f}x eager {auto.name})")
    print(f"fastest option per model vs eager {auto.name} (the trials' step), time per image summed over models: "
          f"{base_total / best_total:.2f}x")


if __name__ == "__main__":
    main()
