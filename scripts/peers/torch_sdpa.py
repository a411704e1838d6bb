#!/usr/bin/env python3
"""Measure PyTorch's attention kernels on exactly the cases of an attn-bench spec.

Peers on the GPU (--device cuda, the default): SDPA with one backend forced at a time (cuDNN,
FlashAttention-2, memory-efficient) and compiled FlexAttention (no mask, causal, sink + sliding
window through a mask_mod). On the CPU (--device cpu): SDPA as PyTorch dispatches it there, its
flash-attention CPU kernel (variant torch_cpu), in f32 or bf16 tensors, on --threads threads,
timed with the wall clock; cold mode writes a buffer of 2x the last-level cache first.
Timing follows attn-bench's GPU method (docs/architecture.md): CUDA events around the call,
warm-up, cold mode flushes the L2 by writing a buffer of 2x its size before each sample,
hot mode rotates input copies past 2x L2, adaptive repetition until the median's relative
standard error reaches the target. The report uses attn-bench's schema
(docs/report-schema.md), variants torch_cudnn / torch_flash / torch_efficient / torch_flex,
case ids "<label>/<problem key>", so `attn-bench table` puts them beside ours.

  attn-bench run SPEC --emit-cases cases.json
  python3 scripts/peers/torch_sdpa.py --cases cases.json --mode cold --out peers.json
  # or, without a spec:
  python3 scripts/peers/torch_sdpa.py --batch 1 --heads 32 --head-dim 128 --seq-len 16384 \
      --causal --dtype bf16 --mode cold --out peers.json

  python3 scripts/peers/torch_sdpa.py --device cpu --threads 2 --cases cases.json --mode hot

Exit codes: 0 ok, 1 some case failed, 2 bad usage or PyTorch/CUDA missing.
"""
import argparse
import datetime
import hashlib
import json
import math
import os
import platform
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mask_program  # noqa: E402  (the mask library's programs, FlexAttention's mask_mod)

SCHEMA_VERSION = "1.0.0"
PEERS = ["cudnn", "flash", "efficient", "flex"]
CPU_PEERS = ["cpu"]
FLOPS_CONVENTION = ("multiply-add = 2 FLOPs; dense = 4*B*Hq*Nq*Nkv*d (QK^T and PV, d=v_dim for PV); "
                    "causal counts allowed pairs only")


def fail(msg, code=2):
    print(f"torch_sdpa.py: {msg}", file=sys.stderr)
    sys.exit(code)


def problem_key(p):
    """Problem::key() of src/core/problem.cpp, character for character."""
    k = f"{p['mode']}_b{p['batch']}_h{p['heads']}_kv{p['kv_heads']}_d{p['head_dim']}"
    if p.get("v_dim", p["head_dim"]) != p["head_dim"]:
        k += f"_dv{p['v_dim']}"
    k += f"_q{p['q_len']}_k{p['kv_len']}"
    k += "_causal" if p["causal"] else "_full"
    k += "_" + p["dtype"]
    return k


def allowed_pairs(q_len, kv_len, causal, window=0, sinks=0):
    """(query, key) pairs the structured mask allows for one head (bottom-right causal)."""
    off = kv_len - q_len
    total = 0
    for i in range(q_len):
        qpos = i + off
        hi = min(kv_len, qpos + 1) if causal else kv_len
        lo = 0
        if window > 0:
            lo = max(0, qpos - window + 1)
            hi = min(hi, qpos + window)
            sink_hi = min(sinks, kv_len, qpos + 1 if causal else kv_len)
            total += max(0, min(sink_hi, lo))
        total += max(0, hi - lo)
    return total


def cases_from_cli(a):
    q_len = a.q_len if a.q_len else (1 if a.decode else a.seq_len)
    kv_len = a.kv_len if a.kv_len else a.seq_len
    kvh = a.kv_heads if a.kv_heads else a.heads
    p = {"batch": a.batch, "heads": a.heads, "kv_heads": kvh, "head_dim": a.head_dim,
         "v_dim": a.head_dim, "q_len": q_len, "kv_len": kv_len, "causal": a.causal,
         "mode": "decode" if a.decode else "prefill", "dtype": a.dtype}
    p["key"] = problem_key(p)
    shape = {"batch": a.batch, "q_heads": a.heads, "kv_heads": kvh, "head_dim": a.head_dim,
             "v_dim": a.head_dim, "q_len": q_len, "kv_len": kv_len, "causal": a.causal}
    mask = {"causal": a.causal, "window": a.window, "sinks": a.sinks}
    label = "mha" if kvh == a.heads else f"gqa(kv_heads={kvh})"
    if a.window:
        label = f"streaming(window={a.window},sinks={a.sinks})"
    return [{"id": f"{label}/{p['key']}", "variant": label.split("(")[0], "label": label,
             "problem": p, "shape": shape, "mask": mask}]


def load_cases(path):
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        fail(f"cannot read cases file '{path}': {e}")
    if not isinstance(doc, dict) or not isinstance(doc.get("cases"), list):
        fail(f"'{path}': expected {{\"cases\": [...]}} as written by `attn-bench run --emit-cases`")
    out = []
    for c in doc["cases"]:
        p = c.get("problem") or {}
        if "key" not in p:
            p["key"] = problem_key(p)
        elif p["key"] != problem_key(p):
            print(f"warning: case {c.get('id')}: problem key {p['key']} != recomputed {problem_key(p)}",
                  file=sys.stderr)
        m = c.get("mask") or {"causal": p.get("causal", False), "window": 0, "sinks": 0}
        if m.get("extra") and not m.get("program"):
            m["unsupported"] = m["extra"]
        c["mask"] = m
        out.append(c)
    return out, doc.get("spec", path)


def peer_cases(cases):
    """One peer measurement per distinct (problem, shape, mask). The label says which of our
    cases it stands beside: plain "torch_<peer>" for the dense MHA shape of the problem,
    "torch_<peer>:<our label>" when the shape or mask is a variant's own."""
    seen = {}
    for c in cases:
        p, s, m = c["problem"], c["shape"], c["mask"]
        sig = json.dumps([p["key"], s, {k: m.get(k, 0) for k in ("causal", "window", "sinks", "unsupported", "program")}],
                         sort_keys=True)
        if sig in seen:
            continue
        plain = (s["q_heads"] == p["heads"] and s["kv_heads"] == p["kv_heads"] and
                 not m.get("window") and not m.get("unsupported") and not m.get("program"))
        seen[sig] = {"problem": p, "shape": s, "mask": m, "suffix": "" if plain else ":" + c.get("label", c["variant"])}
    return list(seen.values())


class Timer:
    def __init__(self, torch, mode, target_rse, max_time, min_samples, max_samples, warmup):
        self.torch, self.mode = torch, mode
        self.target_rse, self.max_time = target_rse, max_time
        self.min_samples, self.max_samples, self.warmup = min_samples, max_samples, warmup
        props = torch.cuda.get_device_properties(0)
        self.l2 = getattr(props, "L2_cache_size", 60 << 20)
        self.flush = torch.empty(max(2 * self.l2, 64 << 20), dtype=torch.uint8, device="cuda")
        self.start = torch.cuda.Event(enable_timing=True)
        self.stop = torch.cuda.Event(enable_timing=True)

    def once(self, fn):
        if self.mode == "cold":
            self.flush.fill_(1)
        self.start.record()
        fn()
        self.stop.record()
        self.stop.synchronize()
        return self.start.elapsed_time(self.stop) * 1e-3

    def run(self, fns):
        """fns: callables over the rotated input copies. Returns the latency block."""
        for i in range(self.warmup):
            fns[i % len(fns)]()
        self.torch.cuda.synchronize()
        samples, stop = [], "max_samples"
        t0 = time.perf_counter()
        for s in range(self.max_samples):
            samples.append(self.once(fns[s % len(fns)]))
            if len(samples) >= self.min_samples:
                if median_rse(samples) <= self.target_rse:
                    stop = "rse"
                    break
                if time.perf_counter() - t0 >= self.max_time:
                    stop = "max_time"
                    break
        return samples, stop


def last_level_cache_bytes():
    best = 0
    for i in range(8):
        try:
            with open(f"/sys/devices/system/cpu/cpu0/cache/index{i}/size") as f:
                v = f.read().strip()
        except OSError:
            continue
        mult = {"K": 1 << 10, "M": 1 << 20}.get(v[-1:], 1)
        try:
            best = max(best, int(v.rstrip("KM")) * mult)
        except ValueError:
            pass
    return best


class CpuTimer(Timer):
    """Wall clock around each call; cold mode first writes a buffer of 2x the last-level cache
    (at least 128 MiB), as attn-bench's CPU backend does."""

    def __init__(self, torch, mode, target_rse, max_time, min_samples, max_samples, warmup):
        self.torch, self.mode = torch, mode
        self.target_rse, self.max_time = target_rse, max_time
        self.min_samples, self.max_samples, self.warmup = min_samples, max_samples, warmup
        self.l2 = last_level_cache_bytes()
        self.flush = torch.empty(max(2 * self.l2, 128 << 20), dtype=torch.uint8) if mode == "cold" else None

    def once(self, fn):
        if self.flush is not None:
            self.flush.add_(1)
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    def run(self, fns):
        for i in range(self.warmup):
            fns[i % len(fns)]()
        samples, stop = [], "max_samples"
        t0 = time.perf_counter()
        for s in range(self.max_samples):
            samples.append(self.once(fns[s % len(fns)]))
            if len(samples) >= self.min_samples:
                if median_rse(samples) <= self.target_rse:
                    stop = "rse"
                    break
                if time.perf_counter() - t0 >= self.max_time:
                    stop = "max_time"
                    break
        return samples, stop


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def summarize(v):
    s = sorted(v)
    n = len(s)

    def q(f):
        x = f * (n - 1)
        lo = int(math.floor(x))
        hi = min(lo + 1, n - 1)
        return s[lo] + (s[hi] - s[lo]) * (x - lo)

    mean = sum(s) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in s) / (n - 1)) if n > 1 else 0.0
    return {"min": s[0], "median": q(0.5), "p10": q(0.1), "p90": q(0.9), "mean": mean, "stddev": sd}


def median_rse(v):
    if len(v) < 2:
        return 1.0
    st = summarize(v)
    return 1.2533 * st["stddev"] / math.sqrt(len(v)) / st["median"] if st["median"] > 0 else 1.0


class Nvml:
    def __init__(self):
        self.h = None
        try:
            import pynvml
            pynvml.nvmlInit()
            self.nv = pynvml
            self.h = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:
            pass

    def clocks(self):
        if self.h is None:
            return None
        try:
            return {"sm_mhz": float(self.nv.nvmlDeviceGetClockInfo(self.h, self.nv.NVML_CLOCK_SM)),
                    "temperature_c": float(self.nv.nvmlDeviceGetTemperature(self.h, self.nv.NVML_TEMPERATURE_GPU))}
        except Exception:
            return None

    def driver(self):
        if self.h is None:
            return ""
        try:
            d = self.nv.nvmlSystemGetDriverVersion()
            return d.decode() if isinstance(d, bytes) else d
        except Exception:
            return ""

    def max_clock(self, which):
        if self.h is None:
            return None
        try:
            return float(self.nv.nvmlDeviceGetMaxClockInfo(self.h, which))
        except Exception:
            return None


def git_info():
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        sha = subprocess.run(["git", "-C", here, "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", here, "status", "--porcelain"], capture_output=True, text=True,
                               timeout=5).stdout.strip() != ""
        return {"sha": sha, "dirty": dirty}
    except Exception:
        return {"sha": "", "dirty": False}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", help="cases file from `attn-bench run SPEC --emit-cases FILE`")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--heads", type=int, default=32)
    ap.add_argument("--kv-heads", type=int, default=0)
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--seq-len", type=int, default=4096)
    ap.add_argument("--q-len", type=int, default=0)
    ap.add_argument("--kv-len", type=int, default=0)
    ap.add_argument("--decode", action="store_true", help="q_len 1 (unless --q-len) against --seq-len keys")
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--window", type=int, default=0)
    ap.add_argument("--sinks", type=int, default=0)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "f16", "f32"],
                    help="f32: --device cpu only")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--threads", type=int, default=0, help="--device cpu: torch threads (0 = every core)")
    ap.add_argument("--mode", default="cold", choices=["cold", "hot"])
    ap.add_argument("--peers", default="", help="comma list of " + ",".join(PEERS) + " (cuda, all by default) or "
                    + ",".join(CPU_PEERS) + " (cpu)")
    ap.add_argument("--filter", default="", help="run only peer cases whose id matches this regex "
                    "(e.g. 'torch_(cudnn|flash)|torch_flex/prefill_.*q16384': each new shape recompiles Flex)")
    ap.add_argument("--out", default="", help="report path (default results/runs/peers-<stamp>.json)")
    ap.add_argument("--target-rse", type=float, default=0.01)
    ap.add_argument("--max-time", type=float, default=3.0, help="seconds of sampling per case")
    ap.add_argument("--min-samples", type=int, default=5)
    ap.add_argument("--max-samples", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=3)
    a = ap.parse_args()
    cpu = a.device == "cpu"
    known = CPU_PEERS if cpu else PEERS
    peers = [x for x in (a.peers or ",".join(known)).split(",") if x]
    for x in peers:
        if x not in known:
            fail(f"--peers: unknown peer '{x}' for --device {a.device} (known: {', '.join(known)})")
    if a.dtype == "f32" and not cpu:
        fail("--dtype f32: the GPU peers run bf16/f16 only (f32 is for --device cpu)")

    try:
        import torch
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError as e:
        fail(f"PyTorch is required for the peer measurements and was not found ({e}); "
             "install torch (pip install torch; any build runs on the CPU)")
    if not cpu and not torch.cuda.is_available():
        fail("PyTorch sees no CUDA device (torch.cuda.is_available() is False); --device cpu measures its CPU kernel")
    dev = "cpu" if cpu else "cuda"
    if cpu and a.threads > 0:
        torch.set_num_threads(a.threads)

    def sync():
        if not cpu:
            torch.cuda.synchronize()

    if a.cases:
        cases, spec_path = load_cases(a.cases)
    else:
        cases, spec_path = cases_from_cli(a), "(command line)"
    work = peer_cases(cases)

    flex_fn, create_block_mask = None, None
    if "flex" in peers and not cpu:
        try:
            from torch.nn.attention.flex_attention import flex_attention, create_block_mask
            flex_fn = torch.compile(flex_attention, dynamic=False)
        except Exception as e:  # recorded per case below
            flex_fn = e

    dt = {"bf16": torch.bfloat16, "f16": torch.float16}
    if cpu:
        dt["f32"] = torch.float32
    timer = (CpuTimer if cpu else Timer)(torch, a.mode, a.target_rse, a.max_time, a.min_samples,
                                         a.max_samples, a.warmup)
    nvml = Nvml() if not cpu else None
    backend_of = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                  "efficient": SDPBackend.EFFICIENT_ATTENTION}

    if cpu:
        device = {"backend": "cpu", "name": cpu_model(), "threads": torch.get_num_threads(),
                  "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
                  "last_level_cache_bytes": timer.l2}
    else:
        props = torch.cuda.get_device_properties(0)
        device = {"backend": "cuda", "name": props.name, "compute_capability": f"{props.major}.{props.minor}",
                  "sms": props.multi_processor_count, "memory_bytes": props.total_memory,
                  "l2_bytes": timer.l2, "driver": nvml.driver(), "runtime": torch.version.cuda or "",
                  "clocks": {"sm_max_mhz": nvml.max_clock(1) if nvml.h else None,
                             "mem_max_mhz": nvml.max_clock(2) if nvml.h else None}}
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    spec_sha = ""
    if a.cases:
        with open(a.cases, "rb") as f:
            spec_sha = hashlib.sha256(f.read()).hexdigest()
    meta = {
        "tool": {"name": "torch_sdpa.py", "version": "0.1.0"},
        "git": git_info(),
        "argv": sys.argv,
        "spec": {"path": spec_path, "sha256": spec_sha, "name": "peers", "description":
                 "PyTorch SDPA backends and FlexAttention on attn-bench's cases"},
        "timestamp": stamp,
        "host": {"cpu_model": cpu_model(), "cores": os.cpu_count(), "hostname": socket.gethostname(),
                 "os": " ".join(platform.uname()[:3])},
        "build": {"compiler": f"torch {torch.__version__}", "flags": "", "build_type": "",
                  "cuda": torch.version.cuda or "",
                  "cudnn": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else ""},
        "run": {"device": dev, "mode": a.mode, "peers": peers, "note": "",
                "threads": torch.get_num_threads() if cpu else 0},
        "devices": [device],
    }
    out_path = a.out
    if not out_path:
        os.makedirs("results/runs", exist_ok=True)
        out_path = "results/runs/peers-" + stamp.replace(":", "-") + ".json"

    report = {"schema_version": SCHEMA_VERSION, "complete": False, "meta": meta, "cases": []}

    def save(complete=False):
        report["complete"] = complete
        tmp = out_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, out_path)

    n_failed = 0
    for w in work:
        p, s, m = w["problem"], w["shape"], w["mask"]
        B, Hq, Hkv, D, Dv = s["batch"], s["q_heads"], s["kv_heads"], s["head_dim"], s["v_dim"]
        Nq, Nkv = s["q_len"], s["kv_len"]
        causal, window, sinks = bool(m.get("causal")), int(m.get("window") or 0), int(m.get("sinks") or 0)
        dtype = dt.get(p["dtype"])
        program = m.get("program")
        # A library predicate: the pairs attn-bench counted for it (exact, per batch and head).
        pairs = m["allowed_pairs"] if program and "allowed_pairs" in m else allowed_pairs(Nq, Nkv, causal, window, sinks)
        # As attn-bench's dense_equivalent: the run shape's heads, causal-aware pairs, no window.
        dense_pairs = allowed_pairs(Nq, Nkv, causal)
        e = 2 if p["dtype"] in ("bf16", "f16") else 4  # bytes per element of the peer's tensors
        flops = {"convention": FLOPS_CONVENTION,
                 "executed": 2.0 * B * Hq * pairs * (D + Dv),
                 "dense_equivalent": 2.0 * B * Hq * dense_pairs * (D + Dv),
                 "estimation": 0.0,
                 "bytes_min": float((B * Hq * Nq * D + B * Hkv * Nkv * (D + Dv) + B * Hq * Nq * Dv) * e),
                 "density": 1.0}

        # Inputs, rotated past 2x L2 in hot mode (cold mode flushes instead).
        in_bytes = (B * Hq * Nq * D + B * Hkv * Nkv * (D + Dv)) * e
        copies = 1 if (a.mode == "cold" or dtype is None) else min(64, 2 * timer.l2 // max(in_bytes, 1) + 1)
        inputs = []
        if dtype is not None:
            for _ in range(copies):
                inputs.append((torch.randn(B, Hq, Nq, D, device=dev, dtype=dtype),
                               torch.randn(B, Hkv, Nkv, D, device=dev, dtype=dtype),
                               torch.randn(B, Hkv, Nkv, Dv, device=dev, dtype=dtype)))

        for peer in peers:
            label = f"torch_{peer}{w['suffix']}"
            if a.filter and not re.search(a.filter, f"{label}/{p['key']}"):
                continue
            case = {"id": f"{label}/{p['key']}", "variant": f"torch_{peer}", "label": label, "params": {},
                    "problem": p, "shape": s, "backend": dev, "status": "ok", "reason": "", "metrics": {}}
            case["metrics"]["flops"] = flops
            notes = []
            try:
                if dtype is None:
                    raise NotImplementedError(f"dtype {p['dtype']}: the peers run " + ("f32/bf16/f16" if cpu else "bf16/f16") + " only")
                if m.get("unsupported"):
                    raise NotImplementedError(f"mask predicate '{m['unsupported']}' has no peer implementation")
                if peer == "flex":
                    if isinstance(flex_fn, Exception) or flex_fn is None:
                        raise RuntimeError(f"FlexAttention unavailable: {flex_fn}")
                    off = Nkv - Nq

                    full_prog = mask_program.full_mask(m, Nq, Nkv) if program else None

                    def mask_mod(b, h, qi, kj):
                        qpos = qi + off
                        if full_prog:
                            return mask_program.allows(full_prog, qpos, kj)
                        ok = (kj <= qpos) if causal else (kj >= 0)
                        if window > 0:
                            near = ((qpos - kj) < window) & ((kj - qpos) < window)
                            ok = ok & (near | (kj < sinks))
                        return ok

                    bm = None
                    if causal or window > 0 or full_prog:
                        bm = create_block_mask(mask_mod, B=None, H=None, Q_LEN=Nq, KV_LEN=Nkv, device=dev)
                    gqa = Hq != Hkv
                    fns = [(lambda q=q, k=k, v=v: flex_fn(q, k, v, block_mask=bm, enable_gqa=gqa))
                           for q, k, v in inputs]
                else:
                    if window > 0 or program:
                        raise NotImplementedError(
                            f"torch sdpa {peer}: no sliding-window/sink or predicate mask without materialising "
                            "a dense mask tensor (FlexAttention measures this case)")
                    kwargs = {}
                    if causal and Nq == Nkv:
                        kwargs["is_causal"] = True
                    elif causal and Nq > 1:
                        from torch.nn.attention.bias import causal_lower_right
                        kwargs["attn_mask"] = causal_lower_right(Nq, Nkv)
                        notes.append("causal_lower_right bias (bottom-right aligned, as attn-bench)")
                    # causal with one query row: the last row sees every key, no mask needed.
                    gqa = Hq != Hkv
                    expand = False
                    if gqa:
                        try:
                            q, k, v = inputs[0]
                            if cpu:
                                F.scaled_dot_product_attention(q, k, v, enable_gqa=True, **kwargs)
                            else:
                                with sdpa_kernel(backend_of[peer]):
                                    F.scaled_dot_product_attention(q, k, v, enable_gqa=True, **kwargs)
                            sync()
                            kwargs["enable_gqa"] = True
                        except Exception:
                            expand = True
                            notes.append("kv heads repeated to the query heads outside the timed region "
                                         "(this backend rejects enable_gqa)")
                    rot = []
                    for q, k, v in inputs:
                        if expand:
                            k = k.repeat_interleave(Hq // Hkv, dim=1)
                            v = v.repeat_interleave(Hq // Hkv, dim=1)
                        rot.append((q, k, v))
                    bk = backend_of.get(peer)

                    def make(q, k, v):
                        if cpu:  # PyTorch's own CPU dispatch: its flash-attention CPU kernel
                            return lambda: F.scaled_dot_product_attention(q, k, v, **kwargs)

                        def f():
                            with sdpa_kernel(bk):
                                F.scaled_dot_product_attention(q, k, v, **kwargs)
                        return f

                    fns = [make(*x) for x in rot]
                    fns[0]()  # raises here when the backend cannot run this case
                    sync()
                before = nvml.clocks() if nvml else None
                samples, stop = timer.run(fns)
                after = nvml.clocks() if nvml else None
                st = summarize(samples)
                lat = {"unit": "s", "cache": a.mode, "warmup": a.warmup, "n": len(samples), "stop": stop,
                       "target_rse": a.target_rse, "rse": median_rse(samples)}
                lat.update(st)
                lat["samples"] = samples
                lat["phases"] = {"plan": {"median": 0.0, "samples": [0.0] * len(samples)},
                                 "attention": {"median": st["median"], "samples": samples}}
                lat["rotation_copies"] = len(fns)
                med = st["median"]
                lat["rates"] = {"tflops_executed": flops["executed"] / med / 1e12,
                                "tflops_dense_equivalent": flops["dense_equivalent"] / med / 1e12,
                                "gbps": flops["bytes_min"] / med / 1e9}
                warnings = []
                if before and after:
                    lat["clocks"] = {"before": before, "after": after}
                    if after["sm_mhz"] < 0.95 * before["sm_mhz"]:
                        warnings.append(f"SM clock dropped from {before['sm_mhz']:.0f} to {after['sm_mhz']:.0f} MHz")
                if lat["rse"] > a.target_rse:
                    warnings.append(f"relative standard error {lat['rse']:.4f} above target (stopped by {stop})")
                lat["warnings"] = warnings + notes
                case["metrics"]["latency"] = lat
                case["metrics"]["accuracy"] = {"status": "n/a", "reason": "peer kernel: checked by its own tests"}
                r = lat["rates"]
                if cpu:
                    print(f"{case['id']:90s} {med * 1e3:9.3f} ms {r['tflops_executed'] * 1e3:7.1f} GFLOP/s "
                          f"{r['gbps']:7.2f} GB/s", flush=True)
                else:
                    print(f"{case['id']:90s} {med * 1e3:9.3f} ms {r['tflops_executed']:7.1f} TFLOP/s "
                          f"{r['gbps'] / 1e3:6.3f} TB/s", flush=True)
            except NotImplementedError as ex:
                case["status"], case["reason"] = "skipped", str(ex)
                print(f"{case['id']:90s} skipped: {ex}", flush=True)
            except Exception as ex:  # a backend that cannot run the case: a result, not a crash
                msg = str(ex).strip().splitlines()
                msg = msg[0] if msg else type(ex).__name__
                if "No available kernel" in str(ex) or "not supported" in str(ex).lower():
                    case["status"] = "skipped"
                else:
                    case["status"] = "failed"
                    n_failed += 1
                case["reason"] = f"{type(ex).__name__}: {msg}"[:500]
                print(f"{case['id']:90s} {case['status']}: {case['reason']}", flush=True)
                sync()
            report["cases"].append(case)
            save()
        del inputs
        if not cpu:
            torch.cuda.empty_cache()
    save(complete=True)
    print(f"wrote {out_path} ({len(report['cases'])} cases)")
    return 1 if n_failed else 0


if __name__ == "__main__":
    sys.exit(main())
