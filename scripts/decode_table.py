#!/usr/bin/env python3
"""Recall beside cost for a decode report (suites/decode.yaml; docs/decode.md).

One markdown table per problem: mass recall (mean / p5 over every head and step), top-64
recall, density, the plan and attention phases per decode step (medians over S steps),
speedup of the per-step median against the baseline's, the Kinetics eFLOPs ratio of the case
(metrics.ecost.case.ratio) and the plan's own figures (keys scanned, full steps, index build).

    python3 scripts/decode_table.py REPORT.json [--baseline gqa]
"""
import argparse
import json


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("report")
    ap.add_argument("--baseline", default=None, help="label of the speedup baseline (default: the report's)")
    a = ap.parse_args()
    r = json.load(open(a.report))
    base_label = a.baseline or r["meta"]["run"]["baseline"]
    by_problem = {}
    for c in r["cases"]:
        by_problem.setdefault(c["problem"]["key"], []).append(c)
    for key, cases in by_problem.items():
        base = [c for c in cases if c["label"] == base_label and c["status"] == "ok"]
        bt = base[0]["metrics"]["latency"]["per_step"]["median"] if base else None
        print(f"\n**{key}** (per decode step; speedup vs {base_label})\n")
        print("| variant | mass recall mean / p5 | top-64 recall | density | plan ms | attention ms | total ms | speedup | eFLOPs ratio | plan stats |")
        print("|:--|--:|--:|--:|--:|--:|--:|--:|--:|:--|")
        for c in cases:
            if c["status"] != "ok":
                print(f"| {c['label']} | {c['status']}: {c['reason'][:60]} | | | | | | | | |")
                continue
            m = c["metrics"]
            rc, ps = m["recall"], m["latency"]["per_step"]
            st = m["flops"].get("plan_stats", {})
            notes = []
            if "scanned_fraction" in st:
                notes.append(f"scanned {100 * st['scanned_fraction']:.1f}% of keys")
            if "full_steps" in st:
                notes.append(f"{st['full_steps']:.0f} full steps")
            if "cache_hit_rate" in st:
                notes.append(f"cache hits {100 * st['cache_hit_rate']:.0f}%")
            if "index_build_seconds" in st:
                notes.append(f"index build {st['index_build_seconds']:.1f} s (prefill)")
            speed = f"{bt / ps['median']:.2f}x" if bt else "n/a"
            print(f"| {c['label']} | {rc['mass_recall']['mean']:.3f} / {rc['mass_recall']['p5']:.3f} | "
                  f"{rc['topk_recall']['k=64']['mean']:.3f} | {rc['density']:.4f} | {1e3 * ps['plan']['median']:.2f} | "
                  f"{1e3 * ps['attention']['median']:.2f} | {1e3 * ps['median']:.2f} | {speed} | "
                  f"{m['ecost']['case']['ratio']:.1f} | {', '.join(notes)} |")


if __name__ == "__main__":
    main()
