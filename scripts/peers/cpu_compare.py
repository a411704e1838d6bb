#!/usr/bin/env python3
"""attn-bench's CPU SDPA against PyTorch's CPU scaled_dot_product_attention, interleaved.

Each round measures every (shape, dtype) twice back to back: ours (`attn-bench run` on a one-case
spec, variant mha, hot cache, fixed sample count) and PyTorch's (its own CPU dispatch, the
flash-attention CPU kernel, on f32 or bf16 tensors, the same sample count) in this process; the
order alternates between rounds so neither side always runs first. Both use --threads threads.
A round's ratio is torch median / our median (> 1: ours is faster); the table gives the median
ratio over rounds and its min..max, and, per shape, our f32 median / our bf16 median per round.
Machines shared with other work give noisy single timings: the interleaving makes a ratio's two
sides see the same load, and the spread says how far to trust it.

  scripts/attn-bench env       # sets up and builds build/attn-bench
  /path/to/venv/bin/python scripts/peers/cpu_compare.py --threads 2 --rounds 3 --out results/cpu/torch-peer.json

Exit codes: 0 ok, 1 a measurement failed, 2 bad usage or PyTorch missing.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

# The shapes of the comparison: (heads, head_dim, N, causal), batch 1, MHA, q_len = kv_len = N.
DEFAULT_SHAPES = ([(8, 128, n, c) for n in (1024, 2048, 4096, 8192) for c in (False, True)] +
                  [(16, 64, n, c) for n in (1024, 4096) for c in (False, True)])


def fail(msg, code=2):
    print(f"cpu_compare.py: {msg}", file=sys.stderr)
    sys.exit(code)


def parse_shape(text):
    """H,D,N[,causal] -> (H, D, N, causal)."""
    parts = text.split(",")
    if len(parts) not in (3, 4):
        fail(f"--shape '{text}': expected H,D,N or H,D,N,causal")
    try:
        h, d, n = (int(x) for x in parts[:3])
    except ValueError:
        fail(f"--shape '{text}': H, D and N must be integers")
    return (h, d, n, len(parts) == 4 and parts[3] in ("causal", "1", "true"))


def ours(binary, shape, dtype, threads, samples, warmup, tmp):
    h, d, n, causal = shape
    spec = os.path.join(tmp, "case.yaml")
    out = os.path.join(tmp, "case.json")
    with open(spec, "w") as f:
        f.write(f"""name: cpu-peer-compare
description: one case of scripts/peers/cpu_compare.py
seed: 1
device: cpu
dtype: {dtype}
problem:
  batch: 1
  heads: {h}
  head_dim: {d}
  seq_len: {n}
  causal: {"true" if causal else "false"}
  mode: prefill
variants: [mha]
metrics:
  latency: {{warmup: {warmup}, min_samples: {samples}, max_samples: {samples}, target_rse: 0.0, max_time: 100000, cache: hot}}
""")
    r = subprocess.run([binary, "run", spec, "-o", out, "--threads", str(threads), "-q"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"attn-bench exited {r.returncode}: {r.stderr.strip()[-500:]}")
    with open(out) as f:
        rep = json.load(f)
    case = rep["cases"][0]
    if case.get("status") != "ok":
        raise RuntimeError(f"attn-bench case {case.get('status')}: {case.get('reason')}")
    lat = case["metrics"]["latency"]
    return lat["median"], rep["meta"].get("devices", [])


def theirs(torch, shape, dtype, samples, warmup):
    import torch.nn.functional as F
    h, d, n, causal = shape
    dt = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype]
    q, k, v = (torch.randn(1, h, n, d, dtype=dt) for _ in range(3))
    fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal)  # noqa: E731
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(samples):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def flops(shape):
    h, d, n, causal = shape
    pairs = n * (n + 1) // 2 if causal else n * n
    return 4.0 * h * pairs * d


def name(shape):
    h, d, n, causal = shape
    return f"H{h} d{d} N{n} {'causal' if causal else 'full'}"


def spread(xs):
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}–{max(xs):.2f})"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build",
                                                  "attn-bench"), help="attn-bench binary (default build/attn-bench)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--samples", type=int, default=3, help="timed calls per side per round (their median counts)")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--dtypes", default="f32,bf16")
    ap.add_argument("--shape", action="append", default=[], help="H,D,N[,causal] (repeatable; default: H8 d128 N 1k-8k, H16 d64 N 1k and 4k, causal and not)")
    ap.add_argument("--out", default="", help="write every round's medians and the summary as JSON")
    a = ap.parse_args()
    dtypes = [x for x in a.dtypes.split(",") if x]
    for x in dtypes:
        if x not in ("f32", "bf16"):
            fail(f"--dtypes: unknown dtype '{x}' (f32, bf16)")
    if a.rounds < 1 or a.samples < 1 or a.threads < 1:
        fail("--rounds, --samples and --threads must be at least 1")
    shapes = [parse_shape(s) for s in a.shape] or DEFAULT_SHAPES
    binary = os.path.abspath(a.bin)
    if not os.access(binary, os.X_OK):
        fail(f"no attn-bench binary at {binary} (build it: scripts/attn-bench env, or pass --bin)")
    try:
        import torch
    except ImportError as e:
        fail(f"PyTorch is required ({e}); install it in a virtual environment: python3 -m pip install torch")
    torch.set_num_threads(a.threads)

    rows = {}  # (shape, dtype) -> {"ours": [...], "torch": [...]}
    devices = []
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(a.rounds):
            for shape in shapes:
                for dtype in dtypes:
                    r = rows.setdefault((shape, dtype), {"ours": [], "torch": []})
                    order = ("ours", "torch") if rnd % 2 == 0 else ("torch", "ours")
                    for side in order:
                        try:
                            if side == "ours":
                                t, devices = ours(binary, shape, dtype, a.threads, a.samples, a.warmup, tmp)
                            else:
                                t = theirs(torch, shape, dtype, a.samples, a.warmup)
                        except Exception as e:  # noqa: BLE001 - reported, then the run stops
                            print(f"{name(shape)} {dtype} {side}: {e}", file=sys.stderr)
                            return 1
                        r[side].append(t)
                    print(f"round {rnd + 1}/{a.rounds} {name(shape):24s} {dtype:4s} ours {r['ours'][-1] * 1e3:9.1f} ms"
                          f"  torch {r['torch'][-1] * 1e3:9.1f} ms  ratio {r['torch'][-1] / r['ours'][-1]:.2f}",
                          flush=True)

    print()
    print(f"torch {torch.__version__} (CPU capability {torch.backends.cpu.get_cpu_capability()}), "
          f"{a.threads} threads, {a.rounds} rounds x {a.samples} samples; ratio = torch time / our time "
          "(median over rounds, min–max)")
    print()
    header = "| shape | " + " | ".join(f"{dt} ours ms | {dt} torch ms | {dt} ratio" for dt in dtypes)
    if "f32" in dtypes and "bf16" in dtypes:
        header += " | ours bf16 vs f32"
    print(header + " |")
    print("|" + "---|" * (1 + 3 * len(dtypes) + ("f32" in dtypes and "bf16" in dtypes)))
    summary = []
    for shape in shapes:
        cells = [name(shape)]
        entry = {"shape": {"batch": 1, "heads": shape[0], "head_dim": shape[1], "seq_len": shape[2],
                           "causal": shape[3]}, "gflop": flops(shape) / 1e9}
        for dt in dtypes:
            r = rows[(shape, dt)]
            ratios = [t / o for o, t in zip(r["ours"], r["torch"])]
            cells += [f"{statistics.median(r['ours']) * 1e3:.1f}", f"{statistics.median(r['torch']) * 1e3:.1f}",
                      spread(ratios)]
            entry[dt] = {"ours_s": r["ours"], "torch_s": r["torch"], "ratio": ratios,
                         "ratio_median": statistics.median(ratios)}
        if "f32" in dtypes and "bf16" in dtypes:
            sp = [f / b for f, b in zip(rows[(shape, "f32")]["ours"], rows[(shape, "bf16")]["ours"])]
            cells.append(spread(sp))
            entry["ours_bf16_speedup"] = sp
        print("| " + " | ".join(cells) + " |")
        summary.append(entry)
    if a.out:
        meta = {"tool": "scripts/peers/cpu_compare.py", "argv": sys.argv, "torch": torch.__version__,
                "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": a.threads,
                "rounds": a.rounds, "samples": a.samples, "warmup": a.warmup, "host": platform.uname()._asdict(),
                "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "attn_bench_devices": devices}
        with open(a.out, "w") as f:
            json.dump({"meta": meta, "results": summary}, f, indent=1)
        print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
