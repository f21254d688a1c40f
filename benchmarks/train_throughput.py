"""Training-step throughput: the project's step (fer_models.train_one_epoch, precision="auto", threads set)
vs a bare fp32 PyTorch loop on the same model, batch, input size and threads, measured in the same run.

    python benchmarks/train_throughput.py                      # baseline + optimized, batch 128, 64x64
    python benchmarks/train_throughput.py --precision bf16     # force bf16 + channels_last for the project step
    python benchmarks/train_throughput.py --accuracy-check     # fp32 vs bf16: short real FER-2013 run, same seed

Rounds interleave the two loops (A B A B ...) and report medians, because the 2 cores are shared and
timings drift. The last line is the ratio: `speedup vs bare fp32 loop: baseline 1.0x, optimized 1.0x`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fer_models import TrainConfig, build_model, evaluate, make_optimizer, train_one_epoch  # noqa: E402
from fer_models import perf  # noqa: E402

FER_CSV = Path("/work/shared/datasets/fer2013/icml_face_data.csv.gz")


def bare_loop(model, opt, x, y, steps: int) -> float:
    """Plain fp32 NCHW loop: forward, CE, backward, Adam step. Returns images/s."""
    model.train()
    t = time.perf_counter()
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * x.shape[0] / (time.perf_counter() - t)


def project_loop(model, opt, x, y, steps: int, precision: str) -> float:
    out = train_one_epoch(model, [(x, y)] * steps, opt, precision=precision, device="cpu")
    return out["images"] / out["seconds"]


def throughput(args) -> None:
    threads = perf.set_threads(args.threads)
    prec = perf.resolve_precision(args.precision, "cpu")
    print(f"torch {torch.__version__}, {threads} threads, cpu capability {torch.backends.cpu.get_cpu_capability()}, "
          f"native bf16: {perf.cpu_has_native_bf16()}, project precision {args.precision!r} -> {prec}, "
          f"channels_last: {perf.use_channels_last(prec, 'cpu')}; batch {args.batch}, input {args.input_size}, "
          f"{args.rounds} rounds x {args.steps} steps, Adam lr 1e-3")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 1, args.input_size, args.input_size, generator=g)
    y = torch.randint(0, 7, (args.batch,), generator=g)
    ratios = {}
    for name in args.models:
        torch.manual_seed(0)
        m_bare = build_model(name, input_size=args.input_size)
        torch.manual_seed(0)
        m_proj = build_model(name, input_size=args.input_size)
        o_bare = torch.optim.Adam(m_bare.parameters(), lr=1e-3)
        o_proj = make_optimizer(m_proj, TrainConfig(lr=1e-3))
        bare_loop(m_bare, o_bare, x, y, 1)  # warm-up: allocator, oneDNN primitive cache
        project_loop(m_proj, o_proj, x, y, 1, args.precision)
        bare, proj = [], []
        for _ in range(args.rounds):  # interleaved A B A B: both see the same background load
            bare.append(bare_loop(m_bare, o_bare, x, y, args.steps))
            proj.append(project_loop(m_proj, o_proj, x, y, args.steps, args.precision))
        b, p = statistics.median(bare), statistics.median(proj)
        ratios[name] = p / b
        print(f"{name:<10} bare fp32 loop {b:7.1f} img/s   project step ({prec}) {p:7.1f} img/s   "
              f"rounds bare {[round(v) for v in bare]} project {[round(v) for v in proj]}", flush=True)
    print("speedup vs bare fp32 loop: " + ", ".join(f"{n} {r:.2f}x" for n, r in ratios.items()))


def load_fer(n_train: int, n_val: int, seed: int):
    """Stratified-free random subset of the official Training / PublicTest rows, as float32 [N,1,48,48] in [0,1]."""
    import pandas as pd

    if not FER_CSV.is_file():
        raise SystemExit(f"{FER_CSV}: missing; the accuracy check needs the real FER-2013 CSV")
    df = pd.read_csv(FER_CSV)
    df.columns = [c.strip() for c in df.columns]  # the Kaggle header has " Usage", " pixels"
    rng = np.random.default_rng(seed)
    out = []
    for usage, n in (("Training", n_train), ("PublicTest", n_val)):
        part = df[df["Usage"] == usage]
        part = part.iloc[rng.permutation(len(part))[:n]]
        x = np.stack([np.asarray(s.split(), dtype=np.uint8) for s in part["pixels"]]).reshape(-1, 1, 48, 48)
        out += [torch.from_numpy(x.astype(np.float32) / 255.0), torch.from_numpy(part["emotion"].to_numpy(np.int64).copy())]
    return out


def accuracy_check(args) -> None:
    perf.set_threads(args.threads)
    xt, yt, xv, yv = load_fer(args.n_train, args.n_val, seed=0)
    bs = 64
    print(f"accuracy check: baseline at 48x48, {len(yt)} Training / {len(yv)} PublicTest faces (random subset, seed 0), "
          f"{args.epochs} epochs, Adam 1e-3, batch {bs}, same seed and batch order for both precisions")
    for prec in ("fp32", "bf16"):
        torch.manual_seed(0)
        model = build_model("baseline", input_size=48)
        opt = make_optimizer(model, TrainConfig(lr=1e-3))
        g = torch.Generator().manual_seed(0)
        t0 = time.perf_counter()
        for epoch in range(args.epochs):
            idx = torch.randperm(len(yt), generator=g)
            batches = [(xt[idx[i:i + bs]], yt[idx[i:i + bs]]) for i in range(0, len(yt), bs)]
            tr = train_one_epoch(model, batches, opt, precision=prec, device="cpu")
        val = evaluate(model, [(xv[i:i + 256], yv[i:i + 256]) for i in range(0, len(yv), 256)],
                       device="cpu", precision=prec)
        print(f"  {prec}: train loss {tr['loss']:.4f} acc {tr['acc']:.4f} | val loss {val['loss']:.4f} "
              f"acc {val['acc']:.4f} | {time.perf_counter() - t0:.0f} s", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["baseline", "optimized"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--input-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=None, help="default: CPUs available to this process")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3, help="training steps per timed round")
    ap.add_argument("--precision", default="auto", choices=perf.PRECISIONS)
    ap.add_argument("--accuracy-check", action="store_true", help="fp32 vs bf16 short real run instead")
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--n-val", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    accuracy_check(args) if args.accuracy_check else throughput(args)


if __name__ == "__main__":
    main()
