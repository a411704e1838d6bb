// Op 4, chunked linear attention, in fp32 with Eigen blocks and OpenMP over (batch, head).
//
// chunked (Lightning Attention-2, arXiv 2401.04658, Algorithm 1): per block of B rows and
// the B keys at the same positions,
//   intra  ((Q̂_t K̂_tᵀ) ⊙ D) V_t            D[r, c] = λ^(r-c) for r >= c, else 0
//   inter  diag(λ^(r+1)) Q̂_t S             S = the d×dv state as of the block's first key - 1
//   update S <- λ^B S + (K̂_t ⊙ λ^(B-1-c))ᵀ V_t
// and the same with v replaced by 1 for the denominator's state z.
// quadratic (Lightning Attention-1, TransNormerLLM, arXiv 2307.14995): the masked left
// product ((Q̂ K̂ᵀ) ⊙ M_decay) V tiled over every key block up to the diagonal.
// GCC 12 warns -Wmaybe-uninitialized inside its AVX-512 headers when Eigen's packet math is
// inlined (a false positive, GCC PR 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "cpu/linear_attention.hpp"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

#include <Eigen/Core>

namespace ab::cpu {
namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapRM = Eigen::Map<RowMat>;
using CMapRM = Eigen::Map<const RowMat>;
using RowVec = Eigen::RowVectorXf;

// dst = φ(src), rows × cols.
void features(FeatureMap f, const float* src, int64_t rows, int cols, RowMat& dst) {
  dst.resize(rows, cols);
  auto x = CMapRM(src, rows, cols).array();
  auto y = dst.array();
  switch (f) {
    case FeatureMap::identity: y = x; break;
    // max(x, 0) + exp(min(x, 0)) - 1 is ELU without a select: Eigen vectorises it (a select
    // over x.exp() fell back to scalar expf, 25% of linear's time at N = 65536).
    case FeatureMap::elu: y = x.max(0.0f) + x.min(0.0f).exp() - 1.0f; break;
    case FeatureMap::elu_plus_one: y = x.max(0.0f) + x.min(0.0f).exp(); break;
    case FeatureMap::relu: y = x.max(0.0f); break;
    case FeatureMap::silu: y = x / (1.0f + (-x).exp()); break;
  }
}

// The chunked algorithm keeps everything one block needs in two matrices, so that each block
// is three GEMMs (Eigen's packing and call overhead weigh at these sizes: fusing the textbook
// form's four products and two matrix-vector products into three took lightning at N = 65536,
// H = 4, d = 128 from 0.70-0.79 s to 0.48-0.52 s on the 2 shared cores):
//   R ((B + d) × (dv + 1)) = [ V_t  1 ]   the block's values and a ones column (top B rows)
//                            [ S    z ]   the state and the denominator state (bottom d rows)
//   L (B × (B + d))        = [ (Q̂_t K̂_tᵀ) ⊙ D   diag(λ^(r+1)) Q̂_t ]
//   out = L · R            = [ num | den ]   (intra + inter, values and denominator at once)
//   R_bottom <- λ^B R_bottom + (diag(λ^(B-1-c)) K̂_t)ᵀ R_top   (state and z updated at once)
struct Work {
  RowMat L, R, out, kf;
  RowMat qf, a, num;  // quadratic form
  Eigen::VectorXf den;
  RowVec vs, vsum;    // Σ v: per row (MALA's mean term) and of the state
  std::vector<float> pw;  // λ^t, t = 0..B
  RowMat decay;           // λ^(r-c) for r >= c, else 0 (chunked); λ^(B-1+r-c) (quadratic)
};

struct Ctx {
  const LinearAttnArgs& a;
  int d, dv, B;
  bool causal, decay;
  float scale_mala;
  // Columns of R: dv, plus the ones column and 3 zero columns when the normaliser needs the
  // denominator (dv + 1 columns leave the GEMM's 4-wide panels a 1-column remainder).
  int cols;
};

void reset_state(const Ctx& c, Work& w) {
  w.R.setZero(c.B + c.d, c.cols);
  w.vsum.setZero(c.dv);
}

// R_top rows [0, nb) <- [V_t | 1]; rows past nb zeroed (a short last block).
void load_values(const Ctx& c, const float* V, int64_t nb, Work& w) {
  w.R.topLeftCorner(nb, c.dv) = CMapRM(V, nb, c.dv);
  if (c.cols > c.dv) w.R.col(c.dv).head(nb).setOnes();
  if (nb < c.B) w.R.block(nb, 0, c.B - nb, c.cols).setZero();
}

// The block's keys K̂ (w.kf, nb rows) join the state, whose values are already in R_top.
void update_state(const Ctx& c, int64_t nb, Work& w) {
  auto state = w.R.bottomRows(c.d);
  if (c.decay) {
    for (int64_t r = 0; r < nb; ++r) w.kf.row(r) *= w.pw[size_t(nb - 1 - r)];
    state *= w.pw[size_t(nb)];
  }
  state.noalias() += w.kf.topRows(nb).transpose() * w.R.topRows(nb);
  w.vsum += w.R.topLeftCorner(nb, c.dv).colwise().sum();
}

// Adds keys [j0, j1) of one kv head to the state, in blocks of B.
void accumulate(const Ctx& c, const float* K, const float* V, int64_t j0, int64_t j1, Work& w) {
  for (int64_t c0 = j0; c0 < j1; c0 += c.B) {
    const int64_t nb = std::min<int64_t>(c.B, j1 - c0);
    features(c.a.feature_map, K + c0 * c.d, nb, c.d, w.kf);
    load_values(c, V + c0 * c.dv, nb, w);
    update_state(c, nb, w);
  }
}

// Output row from num (Dv), den, vsum (Dv) and n keys, per the normaliser and output norm.
void epilogue(const Ctx& c, const float* num, float den, const float* vsum, int64_t n, float* o) {
  Eigen::Map<Eigen::ArrayXf> out(o, c.dv);
  const Eigen::Map<const Eigen::ArrayXf> nm(num, c.dv);
  switch (c.a.normalizer) {
    case LinearNormalizer::none: out = nm; break;
    case LinearNormalizer::denominator: out = nm / (den + c.a.eps); break;
    case LinearNormalizer::mala: {
      const float sn = c.scale_mala / float(n);
      const float z = sn * den;
      out = (1.0f + 1.0f / z) * sn * nm - (z / float(n)) * Eigen::Map<const Eigen::ArrayXf>(vsum, c.dv);
      break;
    }
  }
  // Scope `heads` is normalised after every head's rows are written (normalize_across_heads).
  switch (c.a.norm_scope == NormScope::heads ? OutputNorm::none : c.a.norm) {
    case OutputNorm::none: break;
    case OutputNorm::rms: out /= std::sqrt(out.square().mean() + c.a.eps); break;
    case OutputNorm::layer: {
      const float mean = out.mean();
      out -= mean;
      out /= std::sqrt(out.square().mean() + c.a.eps);
      break;
    }
  }
}

// LinearState (B, Hq, D, Dv) / (B, Hq, 1, D) / (B, Hq, 1, Dv) <-> R_bottom and vsum.
void load_state(const Ctx& c, const LinearState& src, int64_t u, Work& w) {
  w.R.bottomLeftCorner(c.d, c.dv) = CMapRM(src.kv.host_f32() + u * c.d * c.dv, c.d, c.dv);
  if (c.cols > c.dv)
    w.R.block(c.B, c.dv, c.d, 1) = Eigen::Map<const Eigen::VectorXf>(src.ksum.host_f32() + u * c.d, c.d);
  w.vsum = Eigen::Map<const RowVec>(src.vsum.host_f32() + u * c.dv, c.dv);
}

void store_state(const Ctx& c, const Work& w, int64_t u, const LinearState& dst) {
  MapRM(dst.kv.host_f32() + u * c.d * c.dv, c.d, c.dv) = w.R.bottomLeftCorner(c.d, c.dv);
  if (c.cols > c.dv)
    Eigen::Map<Eigen::VectorXf>(dst.ksum.host_f32() + u * c.d, c.d) = w.R.block(c.B, c.dv, c.d, 1);
  else  // the normaliser needs no denominator: its state is not kept
    Eigen::Map<Eigen::VectorXf>(dst.ksum.host_f32() + u * c.d, c.d).setZero();
  Eigen::Map<RowVec>(dst.vsum.host_f32() + u * c.dv, c.dv) = w.vsum;
}

// Rows [0, Nq) of one head by blocks, with the state carried (causal) or complete (not).
void run_chunked(const Ctx& c, const float* Q, const float* K, const float* V, float* O, Work& w) {
  const AttnShape& s = c.a.shape;
  const int64_t off = c.a.first_position();
  const int d = c.d, dv = c.dv, B = c.B;
  if (!c.causal) {
    accumulate(c, K, V, off, s.kv_len, w);
    for (int64_t i0 = 0; i0 < s.q_len; i0 += B) {
      const int64_t nb = std::min<int64_t>(B, s.q_len - i0);
      features(c.a.feature_map, Q + i0 * d, nb, d, w.qf);
      w.out.noalias() = w.qf * w.R.bottomRows(d);  // [num | den]
      for (int64_t r = 0; r < nb; ++r)
        epilogue(c, w.out.row(r).data(), c.cols > dv ? w.out(r, dv) : 0.0f, w.vsum.data(), s.kv_len,
                 O + (i0 + r) * dv);
    }
    return;
  }
  w.L.resize(B, B + d);
  for (int64_t i0 = 0; i0 < s.q_len; i0 += B) {
    const int64_t nb = std::min<int64_t>(B, s.q_len - i0);
    const int64_t p0 = off + i0;  // position of the block's first row and key
    features(c.a.feature_map, Q + i0 * d, nb, d, w.qf);
    features(c.a.feature_map, K + p0 * d, nb, d, w.kf);
    load_values(c, V + p0 * dv, nb, w);
    // L = [ (Q̂ K̂ᵀ) ⊙ D | diag(λ^(r+1)) Q̂ ]; the rows past nb are never read.
    auto lq = w.L.block(0, 0, nb, nb);
    lq.noalias() = w.qf * w.kf.transpose();
    lq.array() *= w.decay.topLeftCorner(nb, nb).array();
    if (nb < B) w.L.block(0, nb, nb, B - nb).setZero();
    w.L.block(0, B, nb, d) = w.qf;
    if (c.decay)
      for (int64_t r = 0; r < nb; ++r) w.L.block(r, B, 1, d) *= w.pw[size_t(r + 1)];
    w.out.noalias() = w.L.topRows(nb) * w.R;  // [num | den] of the block's rows
    w.vs = w.vsum;
    for (int64_t r = 0; r < nb; ++r) {
      w.vs += w.R.block(r, 0, 1, dv);
      epilogue(c, w.out.row(r).data(), c.cols > dv ? w.out(r, dv) : 0.0f, w.vs.data(), p0 + r + 1,
               O + (i0 + r) * dv);
    }
    update_state(c, nb, w);
  }
}

// Lightning-1's tiled left product: every key tile up to the diagonal, O(N²). Tiles are
// 4B × 4B (256 × 256, the flash kernel's): at 64 × 64 the GEMMs ran at 25 GFLOP/s on one core
// at d = 128, at 64 × 256 at 30 (bench_linear_attention, CPU time).
void run_quadratic(const Ctx& c, const float* Q, const float* K, const float* V, float* O,
                   Work& w) {
  const AttnShape& s = c.a.shape;
  const int64_t off = c.a.first_position();
  const int64_t KB = 4 * int64_t(c.B), RB = KB;
  const bool need_den = c.a.normalizer != LinearNormalizer::none;
  // φ(K) of the whole head once (identity: K itself).
  const float* Kf = K;
  if (c.a.feature_map != FeatureMap::identity) {
    features(c.a.feature_map, K, s.kv_len, c.d, w.kf);
    Kf = w.kf.data();
  }
  // Running Σ v over the keys each row sees (MALA's mean term), advanced with the rows.
  w.vs.setZero(c.dv);
  int64_t vs_end = 0;
  if (!c.causal) {
    for (int64_t j = 0; j < s.kv_len; ++j) w.vs += CMapRM(V + j * c.dv, 1, c.dv);
    vs_end = s.kv_len;
  }
  for (int64_t i0 = 0; i0 < s.q_len; i0 += RB) {
    const int64_t nb = std::min<int64_t>(RB, s.q_len - i0);
    const int64_t p0 = off + i0;
    features(c.a.feature_map, Q + i0 * c.d, nb, c.d, w.qf);
    w.num.setZero(nb, c.dv);
    w.den.setZero(nb);
    const int64_t kend = c.causal ? p0 + nb : s.kv_len;
    for (int64_t j0 = 0; j0 < kend; j0 += KB) {
      const int64_t nc = std::min<int64_t>(KB, kend - j0);
      w.a.noalias() = w.qf * CMapRM(Kf + j0 * c.d, nc, c.d).transpose();
      if (c.causal) {
        // Weight of (r, col): λ^e with e = Δ + r - col, Δ = p0 - j0, and 0 where e < 0.
        const int64_t delta = p0 - j0;
        if (delta >= KB) {
          // Below the diagonal: λ^(Δ-KB+1) · λ^(KB-1+r-col), both factors <= 1 (no overflow).
          if (c.decay)
            w.a.array() *= std::pow(w.pw[1], float(delta - KB + 1)) *
                           w.decay.topLeftCorner(nb, nc).array();
        } else {
          for (int64_t r = 0; r < nb; ++r)
            for (int64_t col = 0; col < nc; ++col) {
              const int64_t e = delta + r - col;
              w.a(r, col) = e < 0 ? 0.0f : w.a(r, col) * w.pw[size_t(e)];
            }
        }
        // Decayed weights pass through the subnormal range on their way to 0, and a GEMM
        // over subnormal operands runs ~4x slower (31 GFLOP/s on one core at N = 4096 before
        // this flush). Their contribution is below 2^-126 of a weight-1 term: flush to 0.
        if (c.decay)
          w.a = (w.a.array().abs() < std::numeric_limits<float>::min()).select(0.0f, w.a.array());
      }
      w.num.noalias() += w.a * CMapRM(V + j0 * c.dv, nc, c.dv);
      if (need_den) w.den += w.a.rowwise().sum();
    }
    for (int64_t r = 0; r < nb; ++r) {
      if (c.causal)
        for (; vs_end <= p0 + r; ++vs_end) w.vs += CMapRM(V + vs_end * c.dv, 1, c.dv);
      epilogue(c, w.num.row(r).data(), w.den(r), w.vs.data(), c.causal ? p0 + r + 1 : s.kv_len,
               O + (i0 + r) * c.dv);
    }
  }
}

bool has_state(const LinearState& st) { return st.kv.data != nullptr; }

}  // namespace

std::string linear_attention_refusal(const LinearAttnArgs& a) {
  const AttnShape& s = a.shape;
  if (s.batch < 0 || s.q_heads <= 0 || s.kv_heads <= 0 || s.head_dim <= 0 || s.v_dim <= 0 ||
      s.q_len < 0 || s.kv_len < 0)
    return "bad shape";
  if (s.q_len > s.kv_len) return "q_len must not exceed kv_len";
  if (a.q_position >= 0 && a.q_position + s.q_len > s.kv_len)
    return "q_position + q_len must not exceed kv_len";
  if (s.q_heads % s.kv_heads != 0) return "q_heads must be a multiple of kv_heads";
  if (a.block < 1 || a.block > 1024) return "block must be in [1, 1024]";
  if (a.slopes && !s.causal) return "a per-head decay needs causal attention";
  if (a.slopes && a.normalizer == LinearNormalizer::mala) return "MALA takes no decay";
  const bool states = has_state(a.state_in) || has_state(a.state_out) ||
                      a.phase == LinearAttnArgs::Phase::build_state;
  if (states && a.algorithm == LinearAlgorithm::quadratic)
    return "the quadratic algorithm keeps no state (decode needs the chunked one)";
  if (a.phase == LinearAttnArgs::Phase::build_state && !has_state(a.state_out))
    return "build_state needs state_out";
  return "";
}

// Output norm over the Hq·Dv channels of each (batch, position): o is (B, Hq, Nq, Dv).
void normalize_across_heads(const LinearAttnArgs& a) {
  const AttnShape& s = a.shape;
  const int64_t dv = s.v_dim, nq = s.q_len, per_head = nq * dv;
  const double width = double(s.q_heads) * double(dv);
  float* o = a.o.host_f32();
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < s.batch; ++b)
    for (int64_t i = 0; i < nq; ++i) {
      float* base = o + b * s.q_heads * per_head + i * dv;
      double mean = 0, sq = 0;
      if (a.norm == OutputNorm::layer) {
        for (int h = 0; h < s.q_heads; ++h)
          for (int64_t c = 0; c < dv; ++c) mean += base[h * per_head + c];
        mean /= width;
      }
      for (int h = 0; h < s.q_heads; ++h)
        for (int64_t c = 0; c < dv; ++c) {
          const double x = base[h * per_head + c] - mean;
          sq += x * x;
        }
      const double r = 1.0 / std::sqrt(sq / width + double(a.eps));
      for (int h = 0; h < s.q_heads; ++h)
        for (int64_t c = 0; c < dv; ++c) base[h * per_head + c] = float((base[h * per_head + c] - mean) * r);
    }
}

void linear_attention(const LinearAttnArgs& a) {
  if (const std::string why = linear_attention_refusal(a); !why.empty())
    throw std::invalid_argument("linear_attention: " + why);
  const AttnShape& s = a.shape;
  const bool build = a.phase == LinearAttnArgs::Phase::build_state;
  auto want = [&](const TensorRef& t, Shape4 sh, const char* name) {
    if (t.on_device || t.shape != sh || (!t.data && numel(sh) > 0))
      throw std::invalid_argument(std::string("linear_attention: ") + name +
                                  " must be a host tensor of the documented shape");
  };
  want(a.q, {s.batch, s.q_heads, s.q_len, s.head_dim}, "q");
  want(a.k, {s.batch, s.kv_heads, s.kv_len, s.head_dim}, "k");
  want(a.v, {s.batch, s.kv_heads, s.kv_len, s.v_dim}, "v");
  if (!build) want(a.o, {s.batch, s.q_heads, s.q_len, s.v_dim}, "o");
  for (const LinearState* st : {&a.state_in, &a.state_out})
    if (has_state(*st)) {
      want(st->kv, {s.batch, s.q_heads, s.head_dim, s.v_dim}, "state kv");
      want(st->ksum, {s.batch, s.q_heads, 1, s.head_dim}, "state ksum");
      want(st->vsum, {s.batch, s.q_heads, 1, s.v_dim}, "state vsum");
    }

  const int d = s.head_dim, dv = s.v_dim;
  const Ctx c{a, d, dv, a.block, s.causal, a.slopes != nullptr,
              a.mala_scale > 0 ? a.mala_scale : 1.0f / std::sqrt(float(d)),
              dv + (a.normalizer == LinearNormalizer::none ? 0 : 4)};
  const int64_t units = int64_t(s.batch) * s.q_heads;
  const int64_t off = c.a.first_position();
  const bool quadratic = a.algorithm == LinearAlgorithm::quadratic;

#pragma omp parallel
  {
    Work w;
#pragma omp for schedule(dynamic, 1)
    for (int64_t u = 0; u < units; ++u) {
      const int b = int(u / s.q_heads), h = int(u % s.q_heads);
      const int kh = a.kv_head_of(h);
      const float* Q = a.q.host_f32() + u * s.q_len * d;
      const float* K = a.k.host_f32() + (int64_t(b) * s.kv_heads + kh) * s.kv_len * d;
      const float* V = a.v.host_f32() + (int64_t(b) * s.kv_heads + kh) * s.kv_len * dv;
      float* O = build ? nullptr : a.o.host_f32() + u * s.q_len * dv;
      // λ^t and the block decay matrix of this head: λ^(r-c) for r >= c (chunked), or
      // λ^(B-1+r-c) (quadratic, scaled per tile; every exponent >= 0).
      const double lambda = c.decay ? std::exp(-double(a.slopes[h])) : 1.0;
      // λ^t for every exponent a tile needs (t < 8B in the quadratic form's diagonal tiles),
      // and the decay matrix: λ^(r-c) for r >= c, else 0 (chunked) or λ^(4B-1+r-c) for a
      // 4B × 4B tile below the diagonal (quadratic; every exponent >= 0).
      const int kb = quadratic ? 4 * c.B : c.B, rb = kb;
      w.pw.resize(size_t(rb + kb) + 1);
      // Subnormal powers are flushed to 0 (see run_quadratic).
      auto power = [lambda](double t) {
        const double p = std::pow(lambda, t);
        return p < double(std::numeric_limits<float>::min()) ? 0.0f : float(p);
      };
      for (size_t t = 0; t < w.pw.size(); ++t) w.pw[t] = power(double(t));
      w.decay.resize(rb, kb);
      for (int r = 0; r < rb; ++r)
        for (int col = 0; col < kb; ++col)
          w.decay(r, col) = quadratic ? power(double(kb - 1 + r - col))
                                      : (col <= r ? w.pw[size_t(r - col)] : 0.0f);
      if (quadratic) {
        run_quadratic(c, Q, K, V, O, w);
        continue;
      }
      reset_state(c, w);
      if (has_state(a.state_in)) load_state(c, a.state_in, u, w);
      else accumulate(c, K, V, 0, off, w);
      if (!build) run_chunked(c, Q, K, V, O, w);
      if (has_state(a.state_out)) store_state(c, w, u, a.state_out);
    }
  }
  if (!build && a.norm != OutputNorm::none && a.norm_scope == NormScope::heads) normalize_across_heads(a);
}

}  // namespace ab::cpu
