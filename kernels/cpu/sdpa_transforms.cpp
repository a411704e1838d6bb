// Op 1 with non-softmax score transforms, the output gate, and the probability ops, in fp32
// with Eigen tiles and OpenMP. GCC 12 warns -Wmaybe-uninitialized inside its own AVX-512
// headers when Eigen's packet math is inlined (a false positive, GCC PR 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include "cpu/sdpa_transforms.hpp"

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

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// Row normalisation of sigmoid/ReLU weights: w / (Σ w + 1e-8), as sail-sg/Attention-Sink's
// eager_scaled_dot_product_attention.
constexpr double kNormEps = 1e-8;

// Tile sizes of sdpa_transformed, the ops below and their executed-fraction count.
// 64 query rows × 128 keys keeps Q, the score tile and the accumulator in L2 at d = 128.
constexpr int64_t kRows = 64;
constexpr int64_t kCols = 128;

void check_shapes(const SdpaArgs& a, const char* op, bool need_v) {
  const AttnShape& s = a.shape;
  auto fail = [op](const std::string& why) { throw std::invalid_argument(std::string(op) + ": " + why); };
  if (s.batch < 0 || s.q_heads <= 0 || s.kv_heads <= 0 || s.head_dim <= 0 || s.v_dim <= 0 ||
      s.q_len < 0 || s.kv_len < 0 || s.q_len > s.kv_len)
    fail("bad shape");
  if (!a.head_map && s.q_heads % s.kv_heads != 0) fail("q_heads must be a multiple of kv_heads");
  auto want = [&](const TensorRef& t, Shape4 sh, const char* name) {
    if (t.on_device) fail(std::string(name) + " is not in host memory");
    if (t.shape != sh) fail(std::string(name) + " has the wrong shape");
    if (!t.data && numel(sh) > 0) fail(std::string(name) + " is null");
  };
  want(a.q, {s.batch, s.q_heads, s.q_len, s.head_dim}, "q");
  want(a.k, {s.batch, s.kv_heads, s.kv_len, s.head_dim}, "k");
  if (need_v) want(a.v, {s.batch, s.kv_heads, s.kv_len, s.v_dim}, "v");
}

int kv_head(const SdpaArgs& a, int h) { return a.kv_head_of(h); }

// Scores of a tile (rows × cols) into st, scaled; masked entries -inf.
void scores(const SdpaArgs& a, int b, int h, int64_t i0, int64_t nr, int64_t k0, int64_t nc,
            float scale, BlockClass cls, RowMat& st) {
  const AttnShape& s = a.shape;
  const int d = s.head_dim;
  const float* Q = a.q.host_f32() + ((int64_t(b) * s.q_heads + h) * s.q_len + i0) * d;
  const float* K = a.k.host_f32() + ((int64_t(b) * s.kv_heads + kv_head(a, h)) * s.kv_len + k0) * d;
  st.resize(nr, nc);
  st.noalias() = scale * (CMapRM(Q, nr, d) * CMapRM(K, nc, d).transpose());
  if (cls == BlockClass::partial) {
    const int64_t off = s.q_offset();
    for (int64_t r = 0; r < nr; ++r)
      for (int64_t c = 0; c < nc; ++c)
        if (!a.mask.allows(b, h, i0 + r + off, k0 + c)) st(r, c) = kNegInf;
  }
}

// Weights of a non-softmax, non-softcap transform, in place; masked (-inf) entries become 0.
void weights(const SdpaArgs& a, RowMat& st) {
  auto arr = st.array();
  if (a.transform == ScoreTransform::sigmoid) {
    // σ(-inf) = 0: masked entries come out 0 without a select.
    arr = 1.0f / (1.0f + (-(arr + a.transform_bias)).exp());
  } else {  // relu
    arr = arr.max(0.0f);
  }
}

struct TileWalk {
  int64_t n_q_tiles;
  int64_t units;  // batch × heads × query tiles
};

TileWalk walk(const AttnShape& s) {
  TileWalk w;
  w.n_q_tiles = (s.q_len + kRows - 1) / kRows;
  w.units = int64_t(s.batch) * s.q_heads * w.n_q_tiles;
  return w;
}

}  // namespace

void sdpa_transformed(const SdpaArgs& a) {
  check_shapes(a, "sdpa_transformed", true);
  if (a.transform == ScoreTransform::softmax)
    throw std::invalid_argument("sdpa_transformed: softmax is sdpa_flash's");
  if (a.transform == ScoreTransform::softcap && !(a.softcap > 0))
    throw std::invalid_argument("sdpa_transformed: softcap needs a cap > 0");
  const AttnShape& s = a.shape;
  if (a.o.shape != Shape4{s.batch, s.q_heads, s.q_len, s.v_dim} || a.o.on_device)
    throw std::invalid_argument("sdpa_transformed: o has the wrong shape");
  const TileWalk tw = walk(s);
  const float scale = a.effective_scale();
  const int dv = s.v_dim;
  const int64_t off = s.q_offset();
  const bool softcap = a.transform == ScoreTransform::softcap;

#pragma omp parallel
  {
    RowMat st, acc;
    Eigen::ArrayXf m, l;
#pragma omp for schedule(dynamic, 1)
    for (int64_t u = 0; u < tw.units; ++u) {
      const int64_t qt = u % tw.n_q_tiles;
      const int h = int((u / tw.n_q_tiles) % s.q_heads);
      const int b = int(u / (tw.n_q_tiles * s.q_heads));
      const int64_t i0 = qt * kRows, nr = std::min(s.q_len, i0 + kRows) - i0;
      const float* V = a.v.host_f32() + (int64_t(b) * s.kv_heads + kv_head(a, h)) * s.kv_len * dv;
      acc.setZero(nr, dv);
      m.setConstant(nr, kNegInf);
      l.setZero(nr);
      for (int64_t k0 = 0; k0 < s.kv_len; k0 += kCols) {
        const int64_t nc = std::min(s.kv_len, k0 + kCols) - k0;
        const BlockClass cls = a.mask.classify(b, h, i0 + off, i0 + nr + off, k0, k0 + nc);
        if (cls == BlockClass::empty) continue;
        scores(a, b, h, i0, nr, k0, nc, scale, cls, st);
        if (softcap) {
          // Online softmax of cap·tanh(s / cap); tanh(-inf) = -1 would unmask, so keep -inf.
          const float cap = a.softcap;
          for (int64_t r = 0; r < nr; ++r) {
            auto row = st.row(r).array();
            row = (row == kNegInf).select(kNegInf, cap * (row / cap).tanh());
            const float m_new = std::max(m(r), row.maxCoeff());
            if (m_new == kNegInf) {
              row.setZero();
              continue;
            }
            row = (row - m_new).exp();
            const float alpha = std::exp(m(r) - m_new);
            l(r) = l(r) * alpha + row.sum();
            if (alpha != 1.0f) acc.row(r) *= alpha;
            m(r) = m_new;
          }
        } else {
          weights(a, st);
          l += st.rowwise().sum().array();
        }
        acc.noalias() += st * CMapRM(V + k0 * dv, nc, dv);
      }
      for (int64_t r = 0; r < nr; ++r) {
        const int64_t row = (int64_t(b) * s.q_heads + h) * s.q_len + i0 + r;
        Eigen::Map<Eigen::RowVectorXf> o(a.o.host_f32() + row * dv, dv);
        float lse;
        if (softcap) {
          if (l(r) > 0) o = acc.row(r) / l(r);
          else o.setZero();
          lse = l(r) > 0 ? m(r) + std::log(l(r)) : kNegInf;
        } else {
          o = a.transform_normalize ? (acc.row(r) / float(double(l(r)) + kNormEps)).eval()
                                    : acc.row(r);
          lse = l(r) > 0 ? std::log(l(r)) : kNegInf;
        }
        if (a.lse.data) a.lse.host_f32()[row] = lse;
      }
    }
  }
}

double sdpa_transformed_executed_fraction(const AttnShape& s, const Mask& m) {
  if (s.q_len <= 0 || s.kv_len <= 0 || s.batch <= 0) return 0.0;
  // Structured masks do not depend on (b, h): one pass stands for all.
  const int batches = m.extra ? s.batch : 1, heads = m.extra ? s.q_heads : 1;
  const int64_t off = s.q_offset();
  double executed = 0;
  for (int b = 0; b < batches; ++b)
    for (int h = 0; h < heads; ++h)
      for (int64_t i0 = 0; i0 < s.q_len; i0 += kRows) {
        const int64_t i1 = std::min(s.q_len, i0 + kRows);
        for (int64_t k0 = 0; k0 < s.kv_len; k0 += kCols) {
          const int64_t k1 = std::min(s.kv_len, k0 + kCols);
          if (m.classify(b, h, i0 + off, i1 + off, k0, k1) != BlockClass::empty)
            executed += double(i1 - i0) * double(k1 - k0);
        }
      }
  return executed / (double(batches) * heads * double(s.q_len) * double(s.kv_len));
}

void output_gate(const OutputGateArgs& a) {
  const Shape4 so = a.o.shape, sg = a.gate.shape;
  if (a.o.on_device || a.gate.on_device)
    throw std::invalid_argument("output_gate: tensors must be in host memory");
  if (sg[0] != so[0] || sg[1] != so[1] || sg[2] != so[2] || (sg[3] != 1 && sg[3] != so[3]))
    throw std::invalid_argument("output_gate: gate must be (B, Hq, Nq, 1) or (B, Hq, Nq, Dv)");
  const int64_t rows = so[0] * so[1] * so[2], dv = so[3];
  const bool elementwise = sg[3] != 1;
  float* o = a.o.host_f32();
  const float* g = a.gate.host_f32();
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    Eigen::Map<Eigen::ArrayXf> orow(o + r * dv, dv);
    if (elementwise) {
      orow /= 1.0f + (-Eigen::Map<const Eigen::ArrayXf>(g + r * dv, dv)).exp();
    } else {
      orow *= 1.0f / (1.0f + std::exp(-g[r]));
    }
  }
}

namespace {

void column_mass(const AttnProbsArgs& pa) {
  const SdpaArgs& a = pa.sdpa;
  const AttnShape& s = a.shape;
  if (!a.lse.data || a.lse.numel() != int64_t(s.batch) * s.q_heads * s.q_len)
    throw std::invalid_argument("attention_probs column_mass: needs the rows' LSE (B, Hq, Nq)");
  if (pa.column.shape != Shape4{s.batch, s.q_heads, 1, s.kv_len} || pa.column.on_device)
    throw std::invalid_argument("attention_probs column_mass: column must be (B, Hq, 1, Nkv)");
  const float scale = a.effective_scale();
  const int64_t off = s.q_offset();
  const int64_t bh = int64_t(s.batch) * s.q_heads;
#pragma omp parallel
  {
    RowMat st;
#pragma omp for schedule(dynamic, 1)
    for (int64_t u = 0; u < bh; ++u) {
      const int b = int(u / s.q_heads), h = int(u % s.q_heads);
      float* col = pa.column.host_f32() + u * s.kv_len;
      std::fill(col, col + s.kv_len, 0.0f);
      const float* lse = a.lse.host_f32() + u * s.q_len;
      for (int64_t i0 = 0; i0 < s.q_len; i0 += kRows) {
        const int64_t nr = std::min(s.q_len, i0 + kRows) - i0;
        for (int64_t k0 = 0; k0 < s.kv_len; k0 += kCols) {
          const int64_t nc = std::min(s.kv_len, k0 + kCols) - k0;
          const BlockClass cls = a.mask.classify(b, h, i0 + off, i0 + nr + off, k0, k0 + nc);
          if (cls == BlockClass::empty) continue;
          scores(a, b, h, i0, nr, k0, nc, scale, cls, st);
          for (int64_t r = 0; r < nr; ++r) {
            const float l = lse[i0 + r];
            if (l == kNegInf) {  // fully masked row: no probability
              st.row(r).setZero();
              continue;
            }
            st.row(r) = (st.row(r).array() - l).exp().matrix();
          }
          Eigen::Map<Eigen::RowVectorXf>(col + k0, nc) += st.colwise().sum();
        }
      }
    }
  }
}

void materialize(const AttnProbsArgs& pa) {
  const SdpaArgs& a = pa.sdpa;
  const AttnShape& s = a.shape;
  if (pa.probs.shape != Shape4{s.batch, s.q_heads, s.q_len, s.kv_len} || pa.probs.on_device)
    throw std::invalid_argument("attention_probs materialize: probs must be (B, Hq, Nq, Nkv)");
  const float scale = a.effective_scale();
  const TileWalk tw = walk(s);
#pragma omp parallel
  {
    RowMat st;
#pragma omp for schedule(dynamic, 1)
    for (int64_t u = 0; u < tw.units; ++u) {
      const int64_t qt = u % tw.n_q_tiles;
      const int h = int((u / tw.n_q_tiles) % s.q_heads);
      const int b = int(u / (tw.n_q_tiles * s.q_heads));
      const int64_t i0 = qt * kRows, nr = std::min(s.q_len, i0 + kRows) - i0;
      // Whole rows at once: P is materialised anyway.
      const BlockClass cls = a.mask.classify(b, h, i0 + s.q_offset(), i0 + nr + s.q_offset(), 0, s.kv_len);
      MapRM p(pa.probs.host_f32() + ((int64_t(b) * s.q_heads + h) * s.q_len + i0) * s.kv_len, nr, s.kv_len);
      if (cls == BlockClass::empty) {
        p.setZero();
        continue;
      }
      scores(a, b, h, i0, nr, 0, s.kv_len, scale, cls, st);
      for (int64_t r = 0; r < nr; ++r) {
        const float mx = st.row(r).maxCoeff();
        if (mx == kNegInf) {
          p.row(r).setZero();
          continue;
        }
        auto e = (st.row(r).array() - mx).exp();
        p.row(r) = (e / e.sum()).matrix();
      }
    }
  }
}

void apply(const AttnProbsArgs& pa) {
  const SdpaArgs& a = pa.sdpa;
  const AttnShape& s = a.shape;
  const int64_t pb = pa.probs.shape[0];
  if ((pb != 1 && pb != s.batch) ||
      pa.probs.shape != Shape4{pb, s.q_heads, s.q_len, s.kv_len} || pa.probs.on_device)
    throw std::invalid_argument("attention_probs apply: probs must be (1 or B, Hq, Nq, Nkv)");
  if (a.o.shape != Shape4{s.batch, s.q_heads, s.q_len, s.v_dim} || a.o.on_device)
    throw std::invalid_argument("attention_probs apply: o has the wrong shape");
  const int dv = s.v_dim;
  const int64_t off = s.q_offset();
  const TileWalk tw = walk(s);
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t u = 0; u < tw.units; ++u) {
    const int64_t qt = u % tw.n_q_tiles;
    const int h = int((u / tw.n_q_tiles) % s.q_heads);
    const int b = int(u / (tw.n_q_tiles * s.q_heads));
    const int64_t i0 = qt * kRows, nr = std::min(s.q_len, i0 + kRows) - i0;
    const float* P = pa.probs.host_f32() + ((int64_t(pb == 1 ? 0 : b) * s.q_heads + h) * s.q_len + i0) * s.kv_len;
    const float* V = a.v.host_f32() + (int64_t(b) * s.kv_heads + kv_head(a, h)) * s.kv_len * dv;
    MapRM o(a.o.host_f32() + ((int64_t(b) * s.q_heads + h) * s.q_len + i0) * dv, nr, dv);
    o.setZero();
    // Key tiles the mask leaves empty hold zeros in P: skip them (half the work when causal).
    for (int64_t k0 = 0; k0 < s.kv_len; k0 += kCols) {
      const int64_t nc = std::min(s.kv_len, k0 + kCols) - k0;
      if (a.mask.classify(b, h, i0 + off, i0 + nr + off, k0, k0 + nc) == BlockClass::empty) continue;
      o.noalias() += Eigen::Map<const RowMat, 0, Eigen::OuterStride<>>(
                         P + k0, nr, nc, Eigen::OuterStride<>(s.kv_len)) *
                     CMapRM(V + k0 * dv, nc, dv);
    }
  }
}

}  // namespace

void attention_probs(const AttnProbsArgs& pa) {
  check_shapes(pa.sdpa, "attention_probs", pa.op == ProbsOp::apply);
  if (pa.sdpa.transform != ScoreTransform::softmax)
    throw std::invalid_argument("attention_probs: softmax only");
  switch (pa.op) {
    case ProbsOp::column_mass: column_mass(pa); break;
    case ProbsOp::materialize: materialize(pa); break;
    case ProbsOp::apply: apply(pa); break;
  }
}

}  // namespace ab::cpu
