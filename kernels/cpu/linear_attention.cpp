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
    case FeatureMap::elu: y = (x > 0.0f).select(x, x.exp() - 1.0f); break;
    case FeatureMap::elu_plus_one: y = (x > 0.0f).select(x + 1.0f, x.exp()); break;
    case FeatureMap::relu: y = x.max(0.0f); break;
    case FeatureMap::silu: y = x / (1.0f + (-x).exp()); break;
  }
}

// The state of one query head (core/ops_linear.hpp LinearState), as of the last key added.
struct State {
  RowMat kv;  // (D, Dv)
  RowVec ksum;
  RowVec vsum;
  void reset(int d, int dv) {
    kv.setZero(d, dv);
    ksum.setZero(d);
    vsum.setZero(dv);
  }
};

// Per-thread scratch and per-head constants.
struct Work {
  RowMat qf, kf, a, num, t;
  Eigen::VectorXf den, col;
  RowVec vs;
  std::vector<float> pw;  // λ^t, t = 0..B
  RowMat decay;           // D (B × B), lower triangle λ^(r-c) (chunked) or all r, c (quadratic)
};

struct Ctx {
  const LinearAttnArgs& a;
  int d, dv, B;
  bool causal, decay;
  float scale_mala;
};

// Adds keys [j0, j1) of one kv head to the state, in blocks of B.
void accumulate(const Ctx& c, const float* K, const float* V, int64_t j0, int64_t j1, State& st,
                Work& w) {
  for (int64_t c0 = j0; c0 < j1; c0 += c.B) {
    const int64_t nb = std::min<int64_t>(c.B, j1 - c0);
    features(c.a.feature_map, K + c0 * c.d, nb, c.d, w.kf);
    const CMapRM vb(V + c0 * c.dv, nb, c.dv);
    if (c.decay) {
      // k-decay λ^(nb-1-r) on the rows of K̂; the old state decays by λ^nb.
      for (int64_t r = 0; r < nb; ++r) w.kf.row(r) *= w.pw[size_t(nb - 1 - r)];
      st.kv *= w.pw[size_t(nb)];
      st.ksum *= w.pw[size_t(nb)];
    }
    st.kv.noalias() += w.kf.transpose() * vb;
    st.ksum += w.kf.colwise().sum();
    st.vsum += vb.colwise().sum();
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
  switch (c.a.norm) {
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

void load_state(const LinearState& src, int64_t u, int d, int dv, State& st) {
  st.kv = CMapRM(src.kv.host_f32() + u * d * dv, d, dv);
  st.ksum = Eigen::Map<const RowVec>(src.ksum.host_f32() + u * d, d);
  st.vsum = Eigen::Map<const RowVec>(src.vsum.host_f32() + u * dv, dv);
}

void store_state(const State& st, int64_t u, int d, int dv, const LinearState& dst) {
  MapRM(dst.kv.host_f32() + u * d * dv, d, dv) = st.kv;
  Eigen::Map<RowVec>(dst.ksum.host_f32() + u * d, d) = st.ksum;
  Eigen::Map<RowVec>(dst.vsum.host_f32() + u * dv, dv) = st.vsum;
}

// Rows [0, Nq) of one head by blocks, with the state carried (causal) or complete (not).
void run_chunked(const Ctx& c, const float* Q, const float* K, const float* V, float* O,
                 State& st, Work& w) {
  const AttnShape& s = c.a.shape;
  const int64_t off = s.q_offset();
  if (!c.causal) {
    accumulate(c, K, V, off, s.kv_len, st, w);
    for (int64_t i0 = 0; i0 < s.q_len; i0 += c.B) {
      const int64_t nb = std::min<int64_t>(c.B, s.q_len - i0);
      features(c.a.feature_map, Q + i0 * c.d, nb, c.d, w.qf);
      w.num.noalias() = w.qf * st.kv;
      w.den.noalias() = w.qf * st.ksum.transpose();
      for (int64_t r = 0; r < nb; ++r)
        epilogue(c, w.num.row(r).data(), w.den(r), st.vsum.data(), s.kv_len, O + (i0 + r) * c.dv);
    }
    return;
  }
  for (int64_t i0 = 0; i0 < s.q_len; i0 += c.B) {
    const int64_t nb = std::min<int64_t>(c.B, s.q_len - i0);
    const int64_t p0 = off + i0;  // position of the block's first row and key
    features(c.a.feature_map, Q + i0 * c.d, nb, c.d, w.qf);
    features(c.a.feature_map, K + p0 * c.d, nb, c.d, w.kf);
    const CMapRM vb(V + p0 * c.dv, nb, c.dv);
    // intra: (Q̂ K̂ᵀ ⊙ D) V, D lower-triangular (the causal mask) with the decay.
    w.a.noalias() = w.qf * w.kf.transpose();
    w.a.array() *= w.decay.topLeftCorner(nb, nb).array();
    w.num.noalias() = w.a * vb;
    w.den = w.a.rowwise().sum();
    // inter: the state of the keys before the block, decayed by λ^(r+1) for row r.
    w.t.noalias() = w.qf * st.kv;
    w.col.noalias() = w.qf * st.ksum.transpose();
    if (c.decay)
      for (int64_t r = 0; r < nb; ++r) {
        w.t.row(r) *= w.pw[size_t(r + 1)];
        w.col(r) *= w.pw[size_t(r + 1)];
      }
    w.num += w.t;
    w.den += w.col;
    w.vs = st.vsum;
    for (int64_t r = 0; r < nb; ++r) {
      w.vs += vb.row(r);
      epilogue(c, w.num.row(r).data(), w.den(r), w.vs.data(), p0 + r + 1, O + (i0 + r) * c.dv);
    }
    // The block's keys join the state (K̂ already computed: reuse it).
    if (c.decay) {
      for (int64_t r = 0; r < nb; ++r) w.kf.row(r) *= w.pw[size_t(nb - 1 - r)];
      st.kv *= w.pw[size_t(nb)];
      st.ksum *= w.pw[size_t(nb)];
    }
    st.kv.noalias() += w.kf.transpose() * vb;
    st.ksum += w.kf.colwise().sum();
    st.vsum += vb.colwise().sum();
  }
}

// Lightning-1's tiled left product: every key block up to the diagonal, O(N²).
void run_quadratic(const Ctx& c, const float* Q, const float* K, const float* V, float* O,
                   Work& w) {
  const AttnShape& s = c.a.shape;
  const int64_t off = s.q_offset();
  const float lambda = c.decay ? w.pw[1] : 1.0f;
  // Running Σ v over the keys each row sees (MALA's mean term), advanced with the rows.
  w.vs.setZero(c.dv);
  int64_t vs_end = 0;
  if (!c.causal) {
    for (int64_t j = 0; j < s.kv_len; ++j) w.vs += CMapRM(V + j * c.dv, 1, c.dv);
    vs_end = s.kv_len;
  }
  for (int64_t i0 = 0; i0 < s.q_len; i0 += c.B) {
    const int64_t nb = std::min<int64_t>(c.B, s.q_len - i0);
    const int64_t p0 = off + i0;
    features(c.a.feature_map, Q + i0 * c.d, nb, c.d, w.qf);
    w.num.setZero(nb, c.dv);
    w.den.setZero(nb);
    const int64_t kend = c.causal ? p0 + nb : s.kv_len;
    for (int64_t j0 = 0; j0 < kend; j0 += c.B) {
      const int64_t nc = std::min<int64_t>(c.B, kend - j0);
      features(c.a.feature_map, K + j0 * c.d, nc, c.d, w.kf);
      w.a.noalias() = w.qf * w.kf.transpose();
      if (c.causal) {
        // Weight of (r, col): λ^(e) with e = Δ + r - col, Δ = p0 - j0, and 0 where e < 0.
        const int64_t delta = p0 - j0;
        if (delta >= c.B) {
          // Below the diagonal: λ^(Δ-B+1) · λ^(B-1+r-col), both factors <= 1 (no overflow).
          if (c.decay)
            w.a.array() *= std::pow(lambda, float(delta - c.B + 1)) *
                           w.decay.topLeftCorner(nb, nc).array();
        } else {
          for (int64_t r = 0; r < nb; ++r)
            for (int64_t col = 0; col < nc; ++col) {
              const int64_t e = delta + r - col;
              w.a(r, col) = e < 0 ? 0.0f : (c.decay ? w.a(r, col) * std::pow(lambda, float(e)) : w.a(r, col));
            }
        }
      }
      w.num.noalias() += w.a * CMapRM(V + j0 * c.dv, nc, c.dv);
      w.den += w.a.rowwise().sum();
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

std::vector<float> alibi_slopes(int heads) {
  auto pow2 = [](int n) {
    const double start = std::pow(2.0, -8.0 / n);
    std::vector<float> s(static_cast<size_t>(n));
    for (int h = 0; h < n; ++h) s[size_t(h)] = float(std::pow(start, h + 1));
    return s;
  };
  if (heads <= 0) return {};
  int n = 1;
  while (n * 2 <= heads) n *= 2;
  std::vector<float> s = pow2(n);
  if (n == heads) return s;
  const std::vector<float> twice = pow2(2 * n);
  for (int h = 0; int(s.size()) < heads; h += 2) s.push_back(twice[size_t(h)]);
  return s;
}

double feature_map_value(FeatureMap f, double x) {
  switch (f) {
    case FeatureMap::identity: return x;
    case FeatureMap::elu: return x > 0 ? x : std::expm1(x);
    case FeatureMap::elu_plus_one: return x > 0 ? x + 1 : std::exp(x);
    case FeatureMap::relu: return std::max(x, 0.0);
    case FeatureMap::silu: return x / (1 + std::exp(-x));
  }
  return x;
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
              a.mala_scale > 0 ? a.mala_scale : 1.0f / std::sqrt(float(d))};
  const int64_t units = int64_t(s.batch) * s.q_heads;
  const int64_t off = s.q_offset();
  const bool quadratic = a.algorithm == LinearAlgorithm::quadratic;

#pragma omp parallel
  {
    Work w;
    State st;
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
      w.pw.resize(size_t(c.B) + 1);
      for (int t = 0; t <= c.B; ++t) w.pw[size_t(t)] = float(std::pow(lambda, t));
      w.decay.resize(c.B, c.B);
      for (int r = 0; r < c.B; ++r)
        for (int col = 0; col < c.B; ++col)
          w.decay(r, col) = quadratic ? float(std::pow(lambda, c.B - 1 + r - col))
                                      : (col <= r ? w.pw[size_t(r - col)] : 0.0f);
      if (quadratic) {
        run_quadratic(c, Q, K, V, O, w);
        continue;
      }
      if (has_state(a.state_in)) load_state(a.state_in, u, d, dv, st);
      else {
        st.reset(d, dv);
        accumulate(c, K, V, 0, off, st, w);
      }
      if (!build) run_chunked(c, Q, K, V, O, st, w);
      if (has_state(a.state_out)) store_state(st, u, d, dv, a.state_out);
    }
  }
}

void linear_attention_reference_row(const LinearAttnArgs& a, const HostTensor& q,
                                    const HostTensor& k, const HostTensor& v, int b, int h,
                                    int64_t i, double* o) {
  const AttnShape& s = a.shape;
  const int d = s.head_dim, dv = s.v_dim, kh = a.kv_head_of(h);
  const int64_t p = i + s.q_offset();
  const int64_t keys = s.causal ? p + 1 : s.kv_len;
  const double slope = a.slopes ? double(a.slopes[h]) : 0.0;
  std::vector<double> qf(static_cast<size_t>(d)), num(static_cast<size_t>(dv), 0.0), vsum(static_cast<size_t>(dv), 0.0);
  for (int c = 0; c < d; ++c) qf[size_t(c)] = feature_map_value(a.feature_map, q.row(b, h, i)[c]);
  double den = 0;
  for (int64_t j = 0; j < keys; ++j) {
    double dot = 0;
    for (int c = 0; c < d; ++c) dot += qf[size_t(c)] * feature_map_value(a.feature_map, k.row(b, kh, j)[c]);
    const double wgt = std::exp(-slope * double(p - j)) * dot;
    den += wgt;
    for (int c = 0; c < dv; ++c) {
      num[size_t(c)] += wgt * v.row(b, kh, j)[c];
      vsum[size_t(c)] += v.row(b, kh, j)[c];
    }
  }
  const double n = double(keys);
  const double sm = a.mala_scale > 0 ? a.mala_scale : 1.0 / std::sqrt(double(d));
  for (int c = 0; c < dv; ++c) {
    switch (a.normalizer) {
      case LinearNormalizer::none: o[c] = num[size_t(c)]; break;
      case LinearNormalizer::denominator: o[c] = num[size_t(c)] / (den + a.eps); break;
      case LinearNormalizer::mala: {
        const double z = sm / n * den;
        o[c] = (1 + 1 / z) * (sm / n) * num[size_t(c)] - z / n * vsum[size_t(c)];
        break;
      }
    }
  }
  if (a.norm != OutputNorm::none) {
    double mean = 0, sq = 0;
    for (int c = 0; c < dv; ++c) mean += o[c] / dv;
    if (a.norm == OutputNorm::rms) mean = 0;
    for (int c = 0; c < dv; ++c) sq += (o[c] - mean) * (o[c] - mean) / dv;
    const double r = 1.0 / std::sqrt(sq + a.eps);
    for (int c = 0; c < dv; ++c) o[c] = (o[c] - mean) * r;
  }
}

}  // namespace ab::cpu
