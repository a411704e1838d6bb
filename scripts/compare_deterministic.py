#!/usr/bin/env python3
"""Compare the deterministic results of two attn-bench reports case by case, exactly.

Every number and flag a case's metrics hold (FLOPs, density, recall, output error, accuracy, NIAH, sink,
eFLOPs, plan statistics) must be bit-identical between the two reports; timing (the latency
metric, "seconds" and "*_seconds" fields) and text (conventions, reasons) are left out. Used to check that a
refactoring changed no result (scripts/compare-builds.sh).

usage: compare_deterministic.py OLD.json NEW.json [--ignore-variant NAME ...]
exit 0: identical; 1: a difference (each printed); 2: bad input.
"""
import json
import math
import sys

TIMING_KEYS = {"latency", "seconds", "seconds_total", "plan_seconds"}


def leaves(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in TIMING_KEYS or k == "convention" or k.endswith("_seconds"):
                continue
            yield from leaves(v, f"{path}.{k}" if path else k)
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from leaves(v, f"{path}[{i}]")
    elif isinstance(node, str):
        return  # reasons and conventions: prose, not results
    else:
        yield path, node


def same(a, b):
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def main(argv):
    args = [a for a in argv[1:]]
    ignore = set()
    while "--ignore-variant" in args:
        i = args.index("--ignore-variant")
        ignore.add(args[i + 1])
        del args[i:i + 2]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    old, new = (json.load(open(p)) for p in args)
    oc = {c["id"]: c for c in old["cases"]}
    nc = {c["id"]: c for c in new["cases"]}
    if set(oc) != set(nc):
        print("case ids differ:", sorted(set(oc) ^ set(nc)))
        return 1
    diffs = compared = 0
    for cid, a in oc.items():
        b = nc[cid]
        if a["variant"] in ignore:
            continue
        if a["status"] != b["status"]:
            print(f"{cid}: status {a['status']} -> {b['status']} ({b.get('reason', '')})")
            diffs += 1
            continue
        la = dict(leaves(a.get("metrics", {})))
        lb = dict(leaves(b.get("metrics", {})))
        for k in sorted(set(la) | set(lb)):
            compared += 1
            if k not in la or k not in lb or not same(la[k], lb[k]):
                print(f"{cid}: {k}: {la.get(k, '(absent)')} -> {lb.get(k, '(absent)')}")
                diffs += 1
    print(f"{len(oc)} cases, {compared} values compared, {diffs} differences")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
