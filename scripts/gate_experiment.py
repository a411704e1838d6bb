#!/usr/bin/env python3
"""Measure the CI gate on this machine: false alarms and power (docs/ci.md, "Checking the gate").

Experiments (each optional, all by default):

  aa      N independent A/A decisions: `attn-bench ab --aa BIN SPEC`, one binary against
          itself; a decision is flagged when ab exits 1. Target: at most 2% flagged.
  power   N decisions per slowdown fraction: `attn-bench ab BIN SLOW SPEC`, SLOW being the
          same binary run with ATTN_TEST_SLOWDOWN=VARIANT:FRACTION (a real busy-wait of that
          fraction of every kernel call of VARIANT, test-only). Detected: ab exits 1 and a
          REGRESSED row is a case of VARIANT. A flag on another variant only is counted apart
          (a false alarm inside a power trial).
  single  K separate plain `attn-bench run SPEC`, then `attn-bench compare` (one report per
          side) on all K(K-1)/2 pairs, earlier run as BASE. Target: at most 1 flagged.

Every decision's command, exit code, flagged cases and wall time go to OUT/results.json; the
summary is printed. Nothing is built except by scripts/build.sh when --bin is not given and
build/attn-bench is missing.

  scripts/gate_experiment.py --aa 45 --power 0.10:20 --power 0.05:20 --single 10
"""
import argparse
import concurrent.futures
import itertools
import threading
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, log, env=None):
    t0 = time.monotonic()
    with open(log, "w") as f:
        rc = subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
    return rc, time.monotonic() - t0


def flagged_rows(verdict_json):
    """(case id or variant, ratio, ci) of REGRESSED rows and variant groups, and whether the
    summary regressed."""
    try:
        docs = json.load(open(verdict_json))
    except (OSError, ValueError):
        return [], False
    if isinstance(docs, dict):
        docs = [docs]
    rows, summary = [], False
    for d in docs:
        summary = summary or d.get("summary", {}).get("regressed", False)
        for r in d.get("rows", []):
            if r.get("verdict") == "REGRESSED":
                rows.append({"id": r["id"], "ratio": r.get("ratio"), "ci": r.get("ci")})
        # A variant's cases together (compare's per-variant groups): the id is the variant.
        for g in d.get("groups", []):
            if g.get("verdict") == "REGRESSED":
                rows.append({"id": g["variant"], "ratio": g.get("ratio"), "ci": g.get("ci"), "group": True})
    return rows, summary


def rejudge(args):
    """The stored runs of each decision, compared again: `compare OUT/x/A OUT/x/B [--noise]`."""
    old = json.load(open(os.path.join(args.rejudge, "results.json")))
    noise = os.path.join(args.rejudge, "noise.json")
    extra = ["--noise", noise] if os.path.exists(noise) else []
    variant = args.variant
    aa_ids = [rec["i"] for rec in old.get("aa", [])
              if os.path.isdir(os.path.join(args.rejudge, f"aa-{rec['i']:03d}", "B"))]

    def calibration(leave_out):
        """`compare --save-noise` over the runs of every stored A/A decision but `leave_out`: the
        calibration a user makes once with `ab --aa` and then gives to every gate (--noise).
        Decision i is judged with a calibration that never saw its own runs."""
        tag = f"loo-{leave_out:03d}" if leave_out else "all"
        cal = os.path.join(args.rejudge, "calibrations", tag)
        path = cal + ".json"
        if os.path.exists(path):
            return path
        for side in ("A", "B"):
            os.makedirs(os.path.join(cal, side), exist_ok=True)
        for i in aa_ids:
            if i == leave_out:
                continue
            for side in ("A", "B"):
                src = os.path.join(args.rejudge, f"aa-{i:03d}", side)
                for f in sorted(os.listdir(src)):
                    if f.endswith(".json"):
                        link = os.path.join(cal, side, f"aa{i:03d}-{f}")
                        if not os.path.exists(link):
                            os.symlink(os.path.abspath(os.path.join(src, f)), link)
        rc, _ = run([os.path.abspath(args.bin), "compare", os.path.join(cal, "A"), os.path.join(cal, "B"),
                     "--save-noise", path], cal + ".log")
        if not os.path.exists(path):
            sys.exit(f"calibration {tag} failed (exit {rc}): see {cal}.log")
        return path

    def judge(kind, i):
        d = os.path.join(args.rejudge, f"{kind}-{i:03d}")
        if not (os.path.isdir(os.path.join(d, "A")) and os.path.isdir(os.path.join(d, "B"))):
            return None
        out = d + (".rejudged-loo.json" if args.loo_calibration else ".rejudged.json")
        noise_args = extra
        if args.loo_calibration:
            noise_args = ["--noise", calibration(i if kind == "aa" else 0)]
        rc, _ = run([os.path.abspath(args.bin), "compare", os.path.join(d, "A"), os.path.join(d, "B"),
                     "--json", out, *noise_args, *args.compare_arg], out[:-5] + ".log")
        rows, summary = flagged_rows(out)
        return {"i": i, "rc": rc, "regressed": rows, "summary_regressed": summary,
                "runs": len(os.listdir(os.path.join(d, "A")))}
    lines = []
    aa = [r for r in (judge("aa", rec["i"]) for rec in old.get("aa", [])) if r]
    if aa:
        f = sum(r["rc"] == 1 for r in aa)
        lines.append(f"A/A: {f}/{len(aa)} flagged" + "".join(
            f"; #{r['i']}: {', '.join(x['id'] for x in r['regressed']) or 'summary'}" for r in aa if r["rc"] == 1))
    for frac, recs in old.get("power", {}).items():
        rs = [r for r in (judge(f"power{frac}", rec["i"]) for rec in recs) if r]
        if not rs:
            continue
        det = sum(r["rc"] == 1 and any(x["id"].split("/")[0] == variant for x in r["regressed"]) for r in rs)
        other = sum(any(x["id"].split("/")[0] != variant for x in r["regressed"]) for r in rs)
        summ = sum(r["summary_regressed"] for r in rs)
        lines.append(f"power {float(frac) * 100:g}%: {det}/{len(rs)} detected ({variant} case REGRESSED); "
                     f"{other} with another variant flagged; {summ} with the summary flagged")
    print("\n".join(lines))


def regroup(args):
    """The stored rounds of earlier experiments, pooled per kind and cut into decisions of
    args.regroup rounds each, judged by this binary's compare: what the gate would have decided
    with that many rounds, without running the machine again. Rounds from different decisions
    sit side by side in a regrouped decision; the pairing within a round is kept."""
    import tempfile
    work = tempfile.mkdtemp(prefix="gate-regroup-")
    lines = []
    kinds = {}
    for src in args.rejudge_dirs:
        for name in sorted(os.listdir(src)):
            d = os.path.join(src, name)
            if not (os.path.isdir(os.path.join(d, "A")) and os.path.isdir(os.path.join(d, "B"))):
                continue
            kind = name.rsplit("-", 1)[0]
            a = sorted(f for f in os.listdir(os.path.join(d, "A")) if f.endswith(".json"))
            b = sorted(f for f in os.listdir(os.path.join(d, "B")) if f.endswith(".json"))
            if a != b:
                continue
            kinds.setdefault(kind, []).extend(
                (os.path.join(d, "A", f), os.path.join(d, "B", f)) for f in a)
    for kind, rounds in sorted(kinds.items()):
        n = len(rounds) // args.regroup
        flagged = detected = 0
        for k in range(n):
            d = os.path.join(work, kind, f"{k:03d}")
            for side in ("A", "B"):
                os.makedirs(os.path.join(d, side))
            for j, (a, b) in enumerate(rounds[k * args.regroup:(k + 1) * args.regroup]):
                os.symlink(os.path.abspath(a), os.path.join(d, "A", f"run-{j + 1:02d}.json"))
                os.symlink(os.path.abspath(b), os.path.join(d, "B", f"run-{j + 1:02d}.json"))
            rc, _ = run([os.path.abspath(args.bin), "compare", os.path.join(d, "A"), os.path.join(d, "B"),
                         "--json", d + ".json", *args.compare_arg], d + ".log")
            rows, _ = flagged_rows(d + ".json")
            flagged += rc == 1
            detected += rc == 1 and any(x["id"].split("/")[0] == args.variant for x in rows)
        what = (f"{flagged} flagged" if kind == "aa"
                else f"{detected} detected ({args.variant} REGRESSED), {flagged} flagged in all")
        lines.append(f"{kind}: {len(rounds)} stored rounds -> {n} decisions of {args.regroup} rounds: {what}")
    print("\n".join(lines))
    print(f"regrouped decisions in {work}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "attn-bench"))
    ap.add_argument("--spec", default=os.path.join(ROOT, "configs", "quick.yaml"))
    ap.add_argument("--out", default=os.path.join(ROOT, "results", "gate-experiment-" + time.strftime("%Y%m%dT%H%M%S")))
    ap.add_argument("--aa", type=int, default=0, help="number of A/A decisions")
    ap.add_argument("--power", action="append", default=[], metavar="FRACTION:N",
                    help="N decisions with a slowdown of FRACTION (repeatable), e.g. 0.10:20")
    ap.add_argument("--variant", default="mha", help="the variant slowed down in the power trials")
    ap.add_argument("--single", type=int, default=0, metavar="K",
                    help="K plain runs, then compare on all K(K-1)/2 pairs")
    ap.add_argument("--calibrate", type=int, default=0, metavar="ROUNDS",
                    help="first an `ab --aa` of ROUNDS rounds; its noise calibration goes to every later ab")
    ap.add_argument("--jobs", type=int, default=1,
                    help="ab decisions run at once (default 1). With 2 on a 2-core machine and "
                         "--ab-arg=--threads=1 every core is busy: a noisier machine than one decision "
                         "sees; time one decision alone for the cost figure")
    ap.add_argument("--max-minutes", type=float, default=0,
                    help="stop starting new ab decisions after this long (the single-report part still runs)")
    ap.add_argument("--ab-arg", action="append", default=[], metavar="ARG",
                    help="extra argument for every `ab` (repeatable), e.g. --ab-arg=--rounds=3")
    ap.add_argument("--rejudge", metavar="OUT", action="append", dest="rejudge_dirs", default=[],
                    help="decide again every ab of an earlier OUT from its stored runs with this binary's "
                         "compare (same rule as ab), and print the summary")
    ap.add_argument("--regroup", type=int, metavar="R",
                    help="with --rejudge (repeatable): pool the stored rounds of each kind over every given "
                         "OUT and judge them as decisions of R rounds each")
    ap.add_argument("--loo-calibration", action="store_true",
                    help="with --rejudge: judge each decision with a noise calibration made from the stored "
                         "A/A decisions' runs (leaving out an A/A decision's own runs when judging it)")
    ap.add_argument("--compare-arg", action="append", default=[], metavar="ARG",
                    help="with --rejudge: extra argument for every `compare` (repeatable)")
    args = ap.parse_args()
    if args.regroup:
        if not args.rejudge_dirs:
            sys.exit("--regroup needs --rejudge OUT (one or more)")
        return regroup(args)
    if args.rejudge_dirs:
        if len(args.rejudge_dirs) > 1:
            sys.exit("--rejudge takes one OUT (several only with --regroup)")
        args.rejudge = args.rejudge_dirs[0]
        return rejudge(args)
    if not (args.aa or args.power or args.single):
        args.aa, args.power, args.single = 45, ["0.10:20", "0.05:20"], 10

    if not os.access(args.bin, os.X_OK):
        if args.bin != os.path.join(ROOT, "build", "attn-bench"):
            sys.exit(f"no executable at {args.bin}")
        subprocess.check_call([os.path.join(ROOT, "scripts", "build.sh")])
    binary = os.path.abspath(args.bin)
    spec = os.path.abspath(args.spec)
    os.makedirs(args.out, exist_ok=True)
    results = {"binary": binary, "spec": spec, "ab_args": args.ab_arg, "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "uname": " ".join(os.uname()), "aa": [], "power": {}, "single": []}
    save = lambda: json.dump(results, open(os.path.join(args.out, "results.json"), "w"), indent=2)

    def ab_decision(kind, i, sides, env_note=""):
        out = os.path.join(args.out, f"{kind}-{i:03d}")
        cmd = [binary, "ab", *sides, spec, "-o", out, *args.ab_arg]
        rc, wall = run(cmd, out + ".log")
        rows, summary = flagged_rows(os.path.join(out, "verdict.json"))
        rec = {"i": i, "cmd": " ".join(cmd) + env_note, "rc": rc, "wall_s": round(wall, 1),
               "regressed": rows, "summary_regressed": summary}
        print(f"{kind} {i}: exit {rc} in {wall:.0f} s" + (f"; REGRESSED: {', '.join(r['id'] for r in rows)}" if rows else "")
              + ("; summary regressed" if summary else ""), flush=True)
        if rc not in (0, 1):
            print(open(out + ".log").read()[-2000:], file=sys.stderr)
        return rec

    if args.calibrate:
        noise = os.path.join(args.out, "noise.json")
        cmd = [binary, "ab", "--aa", binary, spec, "-o", os.path.join(args.out, "calibration"),
               "--rounds", str(args.calibrate), "--save-noise", noise,
               *[a for a in args.ab_arg if not a.startswith("--rounds")]]
        rc, wall = run(cmd, os.path.join(args.out, "calibration.log"))
        print(f"calibration ({args.calibrate} rounds): exit {rc} in {wall:.0f} s -> {noise}", flush=True)
        if not os.path.exists(noise):
            sys.exit("calibration failed: " + open(os.path.join(args.out, "calibration.log")).read()[-2000:])
        results["calibration"] = {"cmd": " ".join(cmd), "rc": rc, "wall_s": round(wall, 1)}
        args.ab_arg = args.ab_arg + ["--noise", noise]
        results["ab_args"] = args.ab_arg

    # The experiments interleaved, one decision of each kind in turn, so that a run cut short
    # by --max-minutes leaves comparable counts of each; and so that slow changes of the
    # machine's load spread over all of them.
    queues = [[("aa", i + 1) for i in range(args.aa)]]
    for p in args.power:
        frac, n = p.split(":")
        wrapper = os.path.join(args.out, f"slow-{frac}.sh")
        with open(wrapper, "w") as f:
            f.write(f"#!/bin/sh\n# test-only: {binary} with every {args.variant} kernel call {float(frac)*100:g}% slower\n"
                    f"ATTN_TEST_SLOWDOWN={args.variant}:{frac} exec {binary} \"$@\"\n")
        os.chmod(wrapper, 0o755)
        results["power"].setdefault(frac, [])
        queues.append([(frac, i + 1) for i in range(int(n))])
    tasks = [t for group in itertools.zip_longest(*queues) for t in group if t]
    deadline = time.monotonic() + args.max_minutes * 60 if args.max_minutes else None
    results["jobs"] = args.jobs
    lock = threading.Lock()

    def decide(task):
        kind, i = task
        if deadline and time.monotonic() > deadline:
            with lock:
                if not results.get("stopped_by_deadline"):
                    print("stopped by --max-minutes", flush=True)
                results["stopped_by_deadline"] = True
            return
        if kind == "aa":
            rec = ab_decision("aa", i, ["--aa", binary])
            with lock:
                results["aa"].append(rec)
        else:
            wrapper = os.path.join(args.out, f"slow-{kind}.sh")
            rec = ab_decision(f"power{kind}", i, [binary, wrapper],
                              f"  (B = {binary} with ATTN_TEST_SLOWDOWN={args.variant}:{kind})")
            rec["detected"] = rec["rc"] == 1 and any(r["id"].split("/")[0] == args.variant for r in rec["regressed"])
            rec["other_flags"] = [r["id"] for r in rec["regressed"] if r["id"].split("/")[0] != args.variant]
            with lock:
                results["power"][kind].append(rec)
        with lock:
            for recs in [results["aa"], *results["power"].values()]:
                recs.sort(key=lambda r: r["i"])
            save()

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for f in [pool.submit(decide, t) for t in tasks]:
            f.result()

    if args.single:
        reports = []
        for i in range(args.single):
            rep = os.path.join(args.out, f"single-run-{i + 1:02d}.json")
            rc, wall = run([binary, "run", spec, "-o", rep, "-q"], rep + ".log")
            print(f"single run {i + 1}: exit {rc} in {wall:.0f} s", flush=True)
            reports.append(rep)
        for a, b in itertools.combinations(range(len(reports)), 2):
            out = os.path.join(args.out, f"single-{a + 1:02d}-{b + 1:02d}")
            cmd = [binary, "compare", reports[a], reports[b], "--json", out + ".json"]
            rc, _ = run(cmd, out + ".log")
            rows, summary = flagged_rows(out + ".json")
            results["single"].append({"pair": [a + 1, b + 1], "cmd": " ".join(cmd), "rc": rc, "regressed": rows})
        save()

    # ---- summary ---------------------------------------------------------------------------
    lines = []
    if results["aa"]:
        n = len(results["aa"])
        f = sum(r["rc"] == 1 for r in results["aa"])
        errs = sum(r["rc"] not in (0, 1) for r in results["aa"])
        walls = [r["wall_s"] for r in results["aa"]]
        lines.append(f"A/A (ab --aa): {f}/{n} flagged ({100.0 * f / n:.1f}%), {errs} errors; "
                     f"wall per decision median {statistics.median(walls):.0f} s, max {max(walls):.0f} s")
    for frac, recs in results["power"].items():
        n = len(recs)
        d = sum(r["detected"] for r in recs)
        other = sum(bool(r["other_flags"]) for r in recs)
        walls = [r["wall_s"] for r in recs]
        if not n:
            continue
        lines.append(f"power, {float(frac) * 100:g}% slowdown of {args.variant}: {d}/{n} detected ({100.0 * d / n:.0f}%); "
                     f"{other} trial(s) also flagged another variant; wall median {statistics.median(walls):.0f} s")
    if results["single"]:
        n = len(results["single"])
        f = sum(r["rc"] == 1 for r in results["single"])
        errs = sum(r["rc"] not in (0, 1) for r in results["single"])
        lines.append(f"single-report compare, {args.single} runs, {n} pairs: {f} flagged, {errs} errors")
    results["summary"] = lines
    results["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    save()
    print("\n".join(lines))
    print(f"details: {os.path.join(args.out, 'results.json')}")


if __name__ == "__main__":
    main()
