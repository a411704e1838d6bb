"""A mask of attn-bench's mask library from its program, as `attn-bench run --emit-cases` writes
it (mask.program: postfix instructions over the library's primitives; core/mask.hpp, MaskInstr).

`allows(program, qpos, kj)` evaluates the program on a stack; the operands may be Python ints
or tensors of positions (torch or numpy), so the same function is FlexAttention's mask_mod (with
qpos = q_idx + kv_len - q_len, bottom-right aligned as attn-bench) and a plain Python check.

    python3 scripts/peers/mask_program.py --check cases.json
recomputes, for every case with a program, the pairs the program allows and compares them with
the count attn-bench wrote (mask.allowed_pairs): exit 1 on any difference.
"""
import argparse
import json
import sys


def _clamp(x, lo, hi):
    if hasattr(x, "clamp"):  # torch
        return x.clamp(lo, hi)
    if hasattr(x, "clip"):  # numpy
        return x.clip(lo, hi)
    return min(max(x, lo), hi)


def _primitive(ins, q, j):
    op, a, b = ins["op"], int(ins.get("a", 0)), int(ins.get("b", 0))
    if op == "causal":
        return j <= q
    if op == "window":
        return (q - j < a) & (j - q < a)
    if op == "sinks":
        return j < a
    if op == "block_diagonal":
        return (q // a) == (j // a)
    if op == "blockrank":
        last = a - 1
        bi, bj = _clamp(q // b, 0, last), _clamp(j // b, 0, last)
        return (j <= q) & ((bi == bj) | (bj == 0) | (bi == last))
    if op == "mixformer":
        return (q >= a) | (j < a)
    raise ValueError(f"mask program: unknown instruction '{op}'")


def allows(program, q, j):
    stack = []
    for ins in program:
        op = ins["op"]
        if op in ("all_of", "any_of"):
            n = int(ins["a"])
            if n < 1 or n > len(stack):
                raise ValueError(f"mask program: {op} {n} with {len(stack)} values on the stack")
            parts, stack = stack[-n:], stack[:-n]
            v = parts[0]
            for p in parts[1:]:
                v = (v & p) if op == "all_of" else (v | p)
            stack.append(v)
        else:
            stack.append(_primitive(ins, q, j))
    if len(stack) != 1:
        raise ValueError(f"mask program leaves {len(stack)} values on the stack")
    return stack[0]


def full_mask(m, q_len, kv_len):
    """The mask's whole program: the predicate's, ANDed with the structured part (causal;
    sliding window OR sinks), as attn-bench's kernels evaluate it."""
    prog = list(m.get("program") or [])
    parts = 1 if prog else 0
    if m.get("causal"):
        prog.append({"op": "causal"})
        parts += 1
    if int(m.get("window") or 0) > 0:
        prog.append({"op": "window", "a": int(m["window"])})
        if int(m.get("sinks") or 0) > 0:
            prog += [{"op": "sinks", "a": int(m["sinks"])}, {"op": "any_of", "a": 2}]
        parts += 1
    if parts > 1:
        prog.append({"op": "all_of", "a": parts})
    return prog


def count_pairs(prog, q_len, kv_len):
    off = kv_len - q_len
    return sum(1 for i in range(q_len) for j in range(kv_len) if allows(prog, i + off, j))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", required=True, metavar="CASES_JSON")
    a = ap.parse_args()
    with open(a.check) as f:
        cases = json.load(f)["cases"]
    checked = bad = 0
    for c in cases:
        m = c.get("mask") or {}
        if not m.get("program"):
            continue
        s = c["shape"]
        got = count_pairs(full_mask(m, s["q_len"], s["kv_len"]), s["q_len"], s["kv_len"])
        want = m.get("allowed_pairs")
        checked += 1
        if want is None or abs(got - want) > 0.5:
            bad += 1
            print(f"{c['id']}: program allows {got} pairs, attn-bench {want}", file=sys.stderr)
    print(f"mask programs: {checked} case(s) checked, {bad} differ")
    return 1 if bad or not checked else 0


if __name__ == "__main__":
    sys.exit(main())
