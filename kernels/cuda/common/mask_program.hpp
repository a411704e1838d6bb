#pragma once
// Mask predicates as kernels can run them (FlexAttention's idea — a mask is a function of
// (q, k), turned into a block map plus an element test on partial blocks — without JIT): a
// postfix program over the mask library's primitives (core/mask.hpp, MaskInstr), evaluated
// for one pair on a bit stack, or for a block with each primitive's exact classifier on two bit
// stacks (some pair allowed / every pair allowed). AND/OR of block classes are exact where a
// part is empty or full and conservative otherwise (partial: the kernel tests the elements).
// Compiled by nvcc for the kernels and by the host compiler for the list builder's tests.
#include <cstdint>

#if defined(__CUDACC__)
#define AB_MASK_FN __host__ __device__ __forceinline__
#else
#define AB_MASK_FN inline
#endif

namespace ab::cuda {

// The op codes of core/mask.hpp's MaskInstr::Op, in the same order (the backend checks it).
enum MaskProgramOp : int32_t {
  kMaskCausal = 0,
  kMaskWindow = 1,
  kMaskSinks = 2,
  kMaskBlockDiagonal = 3,
  kMaskBlockRank = 4,
  kMaskMixFormer = 5,
  kMaskAllOf = 6,
  kMaskAnyOf = 7,
};

constexpr int kMaskProgramMax = 16;

struct MaskProgram {
  int n = 0;
  int32_t op[kMaskProgramMax] = {};
  int64_t a[kMaskProgramMax] = {};
  int64_t b[kMaskProgramMax] = {};
};

AB_MASK_FN int64_t mask_floor_div(int64_t x, int64_t d) { return x >= 0 ? x / d : -((-x + d - 1) / d); }
AB_MASK_FN int64_t mask_clamp(int64_t x, int64_t lo, int64_t hi) { return x < lo ? lo : (x > hi ? hi : x); }
AB_MASK_FN int64_t mask_min(int64_t x, int64_t y) { return x < y ? x : y; }
AB_MASK_FN int64_t mask_max(int64_t x, int64_t y) { return x > y ? x : y; }

// The pair test in the integer type I: the kernels use 32 bits (positions stay below 2^31;
// operands are clamped), which keeps the interpreter's registers few inside the attention loop.
template <typename I>
AB_MASK_FN I mask_operand(int64_t v) {
  constexpr int64_t hi = sizeof(I) >= 8 ? INT64_MAX : (int64_t(1) << (sizeof(I) * 8 - 1)) - 1;
  return I(v > hi ? hi : (v < -hi ? -hi : v));
}
template <typename I>
AB_MASK_FN I mask_floor_div_t(I x, I d) { return x >= 0 ? x / d : -((-x + d - 1) / d); }

template <typename I>
AB_MASK_FN bool mask_primitive_allows(int32_t op, int64_t a64, int64_t b64, I q, I j) {
  const I a = mask_operand<I>(a64), b = mask_operand<I>(b64);
  switch (op) {
    case kMaskCausal: return j <= q;
    case kMaskWindow: return q - j < a && j - q < a;
    case kMaskSinks: return j < a;
    case kMaskBlockDiagonal: return mask_floor_div_t(q, a) == mask_floor_div_t(j, a);
    case kMaskBlockRank: {
      const I last = a - 1;
      I bi = mask_floor_div_t(q, b), bj = mask_floor_div_t(j, b);
      bi = bi < 0 ? 0 : (bi > last ? last : bi);
      bj = bj < 0 ? 0 : (bj > last ? last : bj);
      return j <= q && (bi == bj || bj == 0 || bi == last);
    }
    case kMaskMixFormer: return q >= a || j < a;
    default: return false;
  }
}

// Pairs with lo <= q - j <= hi in rows [q0, q1) x keys [k0, k1): every difference between the
// extremes occurs, so the class is exact.
AB_MASK_FN void mask_delta_class(int64_t q0, int64_t q1, int64_t k0, int64_t k1, int64_t lo, int64_t hi,
                                 bool& any, bool& all) {
  if (q0 >= q1 || k0 >= k1) return;
  const int64_t dmin = q0 - (k1 - 1), dmax = (q1 - 1) - k0;
  any = any || mask_max(dmin, lo) <= mask_min(dmax, hi);
  all = all && dmin >= lo && dmax <= hi;
}

// (any, all) of one primitive over absolute rows [q0, q1) x keys [k0, k1), non-empty ranges.
AB_MASK_FN void mask_primitive_class(int32_t op, int64_t a, int64_t b, int64_t q0, int64_t q1, int64_t k0,
                                     int64_t k1, bool& any, bool& all) {
  constexpr int64_t kFar = INT64_MAX / 4;
  any = false;
  all = true;
  switch (op) {
    case kMaskCausal: mask_delta_class(q0, q1, k0, k1, 0, kFar, any, all); return;
    case kMaskWindow: mask_delta_class(q0, q1, k0, k1, -(a - 1), a - 1, any, all); return;
    case kMaskSinks:
      any = k0 < a;
      all = k1 <= a;
      return;
    case kMaskBlockDiagonal: {
      const int64_t qa = mask_floor_div(q0, a), qb = mask_floor_div(q1 - 1, a);
      const int64_t ka = mask_floor_div(k0, a), kb = mask_floor_div(k1 - 1, a);
      any = mask_max(qa, ka) <= mask_min(qb, kb);
      all = qa == qb && ka == kb && qa == ka;
      return;
    }
    case kMaskBlockRank: {
      // Sub-rectangles of one (query block, key block) pair each follow one rule.
      const int64_t last = a - 1;
      const int64_t bi0 = mask_clamp(mask_floor_div(q0, b), 0, last), bi1 = mask_clamp(mask_floor_div(q1 - 1, b), 0, last);
      const int64_t bj0 = mask_clamp(mask_floor_div(k0, b), 0, last), bj1 = mask_clamp(mask_floor_div(k1 - 1, b), 0, last);
      for (int64_t bi = bi0; bi <= bi1; ++bi) {
        const int64_t r0 = mask_max(q0, bi * b), r1 = bi == last ? q1 : mask_min(q1, (bi + 1) * b);
        for (int64_t bj = bj0; bj <= bj1; ++bj) {
          const int64_t c0 = mask_max(k0, bj * b), c1 = bj == last ? k1 : mask_min(k1, (bj + 1) * b);
          if (r0 >= r1 || c0 >= c1) continue;
          if (bj > bi) all = false;
          else if (bi == bj) mask_delta_class(r0, r1, c0, c1, 0, kFar, any, all);
          else if (bj == 0 || bi == last) any = true;
          else all = false;
          if (any && !all) return;
        }
      }
      return;
    }
    case kMaskMixFormer:
      any = q1 > a || k0 < a;
      all = !(q0 < a) || k1 <= a;
      return;
    default: any = false; all = false; return;
  }
}

template <typename I = int64_t>
AB_MASK_FN bool mask_program_allows(const MaskProgram& p, I q, I j) {
  uint32_t st = 0;  // bit stack, top at bit 0
  for (int i = 0; i < p.n; ++i) {
    const int32_t op = p.op[i];
    if (op == kMaskAllOf || op == kMaskAnyOf) {
      const uint32_t m = (p.a[i] >= 32 ? 0xffffffffu : ((1u << p.a[i]) - 1u));
      const bool v = op == kMaskAllOf ? (st & m) == m : (st & m) != 0;
      st = (p.a[i] >= 32 ? 0u : st >> p.a[i]);
      st = (st << 1) | uint32_t(v);
    } else {
      st = (st << 1) | uint32_t(mask_primitive_allows<I>(op, p.a[i], p.b[i], q, j));
    }
  }
  return st & 1u;
}

// 0 empty, 1 partial, 2 full, for absolute rows [q0, q1) x keys [k0, k1) (non-empty ranges).
AB_MASK_FN int mask_program_class(const MaskProgram& p, int64_t q0, int64_t q1, int64_t k0, int64_t k1) {
  uint32_t any_st = 0, all_st = 0;
  for (int i = 0; i < p.n; ++i) {
    const int32_t op = p.op[i];
    bool any, all;
    if (op == kMaskAllOf || op == kMaskAnyOf) {
      const uint32_t m = (p.a[i] >= 32 ? 0xffffffffu : ((1u << p.a[i]) - 1u));
      any = op == kMaskAllOf ? (any_st & m) == m : (any_st & m) != 0;
      all = op == kMaskAllOf ? (all_st & m) == m : (all_st & m) != 0;
      any_st = p.a[i] >= 32 ? 0u : any_st >> p.a[i];
      all_st = p.a[i] >= 32 ? 0u : all_st >> p.a[i];
    } else {
      mask_primitive_class(op, p.a[i], p.b[i], q0, q1, k0, k1, any, all);
    }
    any_st = (any_st << 1) | uint32_t(any || all);
    all_st = (all_st << 1) | uint32_t(all && any);
  }
  const bool any = any_st & 1u, all = all_st & 1u;
  return !any ? 0 : (all ? 2 : 1);
}

}  // namespace ab::cuda
