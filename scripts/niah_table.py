#!/usr/bin/env python3
"""NIAH heat maps of one or more reports as markdown (metric `niah`, docs/metrics.md).

One row per case, one column per (context length, needle depth) cell: the percentage of
probes whose output recovered the needle's value (cos >= tau). Then the mean over cells.

    python3 scripts/niah_table.py REPORT.json [REPORT.json ...]
"""
import argparse
import json


def fmt_len(n):
    return f"{n // 1024}k" if n % 1024 == 0 else str(n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", nargs="+")
    a = ap.parse_args()
    for path in a.reports:
        r = json.load(open(path))
        cases = [c for c in r["cases"] if isinstance(c.get("metrics", {}).get("niah"), dict)
                 and "success" in c["metrics"]["niah"]]
        if not cases:
            continue
        n0 = cases[0]["metrics"]["niah"]
        lengths, depths = n0["lengths"], n0["depths"]
        print(f"\n**{r['meta']['spec']['name']}**: {n0['mode']}, {n0['haystack']} haystack, "
              f"margin {n0['options']['margin']} nats, tau {n0['options']['tau']}, "
              f"{n0['options']['trials']} trials x {n0['probes_per_trial']} probes per cell; "
              "success % per depth, one group of columns per length\n")
        head = ["variant"] + [f"{fmt_len(L)} d={d:g}" for L in lengths for d in depths] + ["mean"]
        print("| " + " | ".join(head) + " |")
        print("|:--" + "|--:" * (len(head) - 1) + "|")
        for c in cases:
            m = c["metrics"]["niah"]
            s = m["success"]  # [depth][length]
            cells = [f"{100 * s[di][li]:.0f}" for li in range(len(lengths)) for di in range(len(depths))]
            print("| " + " | ".join([c["label"]] + cells + [f"{100 * m['success_rate']:.0f}"]) + " |")
        bad = [c["label"] for c in r["cases"] if c["status"] != "ok"]
        if bad:
            print(f"\nnot ok: {', '.join(bad)}")


if __name__ == "__main__":
    main()
