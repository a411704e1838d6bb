#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // Eigen + AVX-512, GCC PR 105593
#endif
#include "backends/cpu/cpu_select_ops.hpp"

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <limits>
#include <stdexcept>
#include <vector>

#include <Eigen/Core>

#include "cpu/lse_merge.hpp"
#include "cpu/selection.hpp"

namespace ab::cpu_select {
namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using CMapRM = Eigen::Map<const RowMat>;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The first problem with a tensor: on a device, null, or (when `shape` is given) misshapen.
std::string tensor_problem(const TensorRef& t, const char* name, const Shape4* shape = nullptr) {
  if (t.on_device) return std::string(name) + " is in device memory";
  if (!t.data && t.numel() > 0) return std::string(name) + " is null";
  if (shape && t.shape != *shape) return std::string(name) + " has the wrong shape";
  return "";
}

const float* at(const TensorRef& t, int64_t b, int64_t h, int64_t r) {
  return t.host_f32() + ((b * t.shape[1] + h) * t.shape[2] + r) * t.shape[3];
}
float* at_mut(const TensorRef& t, int64_t b, int64_t h, int64_t r) {
  return t.host_f32() + ((b * t.shape[1] + h) * t.shape[2] + r) * t.shape[3];
}

// Writes per-list entries as CSR into `out`; throws when they exceed its capacity.
void write_csr(const std::vector<std::vector<int32_t>>& lists, const CsrOut& out, const char* op) {
  if (out.offsets.size < int64_t(lists.size()) + 1)
    throw std::invalid_argument(std::string(op) + ": the offsets buffer holds fewer than lists + 1 entries");
  int64_t total = 0;
  out.offsets.data[0] = 0;
  for (size_t l = 0; l < lists.size(); ++l) {
    total += int64_t(lists[l].size());
    if (total > out.entries.size)
      throw std::invalid_argument(std::string(op) + ": the lists exceed the entries buffer's capacity (" +
                                  std::to_string(out.entries.size) + ")");
    out.offsets.data[l + 1] = int32_t(total);
  }
#pragma omp parallel for schedule(static) if (total > (int64_t(1) << 16))
  for (int64_t l = 0; l < int64_t(lists.size()); ++l)
    std::copy(lists[size_t(l)].begin(), lists[size_t(l)].end(), out.entries.data + out.offsets.data[l]);
}

bool on_device(std::initializer_list<const TensorRef*> ts) {
  for (const TensorRef* t : ts)
    if (t->on_device) return true;
  return false;
}

std::string csr_problem(const CsrOut& c) {
  if (c.offsets.on_device || c.entries.on_device) return "the output lists are in device memory";
  if (!c.offsets.data) return "the output offsets buffer is missing";
  if (!c.entries.data && c.entries.size > 0) return "the output entries buffer is null";
  return "";
}

}  // namespace

// ---- pool -------------------------------------------------------------------------------------

std::string pool_refusal(const PoolArgs& a) {
  if (on_device({&a.in, &a.out}) || a.bounds.on_device) return "an operand is in device memory";
  if (auto p = tensor_problem(a.in, "in"); !p.empty()) return p;
  if (auto p = tensor_problem(a.out, "out"); !p.empty()) return p;
  const Shape4& i = a.in.shape;
  const Shape4& o = a.out.shape;
  if (a.axis == PoolAxis::window_contrast) {
    if (a.block < 1) return "block must be >= 1";
    const Shape4 want{i[0], i[1], i[2], 1};
    return o == want ? "" : "out must be (B, H, N, 1)";
  }
  if (a.axis == PoolAxis::heads) {
    if (a.how != Reduce::mean && a.how != Reduce::max) return "heads pool: mean or max";
    if (a.group < 1 || a.row_stride < 1) return "group and row_stride must be >= 1";
    const int64_t logical = o[1] * a.group;
    if (i[1] <= 0 || logical % i[1] != 0) return "the input heads must divide out heads × group";
    const Shape4 want{i[0], o[1], ceil_div(i[2], a.row_stride), i[3]};
    if (o != want) return "out must be (B, Hout, ceil(N / row_stride), D)";
    return "";
  }
  if (a.bounds.present()) {
    if (a.bounds.on_device) return "the segment bounds are in device memory";
    if (a.bounds.size != o[2] + 1) return "bounds must hold out rows + 1 entries";
    for (int64_t s = 0; s < o[2]; ++s)
      if (a.bounds.data[s] < 0 || a.bounds.data[s] >= a.bounds.data[s + 1] || a.bounds.data[s + 1] > i[2])
        return "segment bounds must ascend strictly within [0, N]";
  } else {
    if (a.block < 1) return "block must be >= 1";
    const int64_t end = a.rows_end > 0 ? std::min(a.rows_end, i[2]) : i[2];
    if (o[2] != ceil_div(end, a.block)) return "out must hold ceil(rows_end / block) rows";
  }
  if (o[0] != i[0] || o[1] != i[1] || o[3] != i[3]) return "out must be (B, H, segments, D)";
  if (a.f64_sum && a.how != Reduce::mean) return "f64_sum is for the mean";
  if (a.how == Reduce::normalized_sum) {
    if (!a.col_limits.present() || a.col_limits.size != o[2]) return "normalized_sum needs a column limit per segment";
    if (a.col_limits.on_device) return "the column limits are in device memory";
    for (int64_t s = 0; s < o[2]; ++s)
      if (a.col_limits.data[s] < 0 || a.col_limits.data[s] > i[3]) return "column limits must lie in [0, D]";
  }
  return "";
}

void pool(const PoolArgs& a) {
  if (auto why = pool_refusal(a); !why.empty()) throw std::invalid_argument("cpu pool: " + why);
  const Shape4& i = a.in.shape;
  const Shape4& o = a.out.shape;
  const int64_t B = i[0], N = i[2], D = i[3];
  if (a.axis == PoolAxis::heads) {
    const int64_t Hout = o[1], R = o[2], per_in = Hout * a.group / i[1];
    // Items: (b, g, chunk of output rows); the pooling is elementwise, so any split gives the
    // same values.
    constexpr int64_t kChunk = 512;
    const int64_t chunks = ceil_div(std::max<int64_t>(R, 1), kChunk);
#pragma omp parallel
    {
      std::vector<const float*> src(static_cast<size_t>(a.group));
#pragma omp for schedule(static)
      for (int64_t item = 0; item < B * Hout * chunks; ++item) {
        const int64_t b = item / (Hout * chunks), g = item / chunks % Hout, c = item % chunks;
        const int64_t r0 = c * kChunk, r1 = std::min(R, r0 + kChunk);
        if (r1 <= r0) continue;
        auto rows_of = [&](int64_t r) { return std::min(N - 1, r * a.row_stride + a.row_stride - 1); };
        if (a.row_stride == 1) {  // contiguous rows: one call over the chunk
          for (int t = 0; t < a.group; ++t) src[size_t(t)] = at(a.in, b, (g * a.group + t) / per_in, r0);
          float* dst = at_mut(a.out, b, g, r0);
          if (a.how == Reduce::mean) {
            cpu::average_heads(src.data(), a.group, (r1 - r0) * D, dst);
          } else {
            std::copy(src[0], src[0] + (r1 - r0) * D, dst);
            for (int t = 1; t < a.group; ++t)
              for (int64_t e = 0; e < (r1 - r0) * D; ++e) dst[e] = std::max(dst[e], src[size_t(t)][e]);
          }
          continue;
        }
        for (int64_t r = r0; r < r1; ++r) {
          for (int t = 0; t < a.group; ++t) src[size_t(t)] = at(a.in, b, (g * a.group + t) / per_in, rows_of(r));
          float* dst = at_mut(a.out, b, g, r);
          if (a.how == Reduce::mean) {
            cpu::average_heads(src.data(), a.group, D, dst);
          } else {
            std::copy(src[0], src[0] + D, dst);
            for (int t = 1; t < a.group; ++t)
              for (int64_t e = 0; e < D; ++e) dst[e] = std::max(dst[e], src[size_t(t)][e]);
          }
        }
      }
    }
    return;
  }
  if (a.axis == PoolAxis::window_contrast) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < B * i[1]; ++bh)
      cpu::window_contrast(at(a.in, bh / i[1], bh % i[1], 0), N, int(D), a.block, at_mut(a.out, bh / i[1], bh % i[1], 0));
    return;
  }
  const int64_t H = i[1], S = o[2];
  const int64_t end = a.rows_end > 0 ? std::min(a.rows_end, N) : N;
#pragma omp parallel for schedule(static) if (B * H * S * D > (int64_t(1) << 15))
  for (int64_t item = 0; item < B * H * S; ++item) {
    const int64_t b = item / (H * S), h = item / S % H, s = item % S;
    const int64_t lo = a.bounds.present() ? a.bounds.data[s] : s * a.block;
    const int64_t hi = a.bounds.present() ? a.bounds.data[s + 1] : std::min(end, (s + 1) * a.block);
    const float* x = at(a.in, b, h, lo);
    float* dst = at_mut(a.out, b, h, s);
    if (a.how == Reduce::sum) {
      std::fill(dst, dst + D, 0.0f);
      for (int64_t r = 0; r < hi - lo; ++r)
        for (int64_t c = 0; c < D; ++c) dst[c] += x[r * D + c];
    } else if (a.how == Reduce::normalized_sum) {
      const int64_t lim = a.col_limits.data[s];
      std::fill(dst, dst + D, 0.0f);
      for (int64_t r = 0; r < hi - lo; ++r) {
        float total = 0;
        for (int64_t c = 0; c < lim; ++c) total += x[r * D + c];
        if (total <= 0) continue;
        for (int64_t c = 0; c < lim; ++c) dst[c] += x[r * D + c] / total;
      }
    } else if (a.f64_sum) {
      for (int64_t c = 0; c < D; ++c) {
        double acc = 0;
        for (int64_t r = 0; r < hi - lo; ++r) acc += x[r * D + c];
        dst[c] = float(acc / double(hi - lo));
      }
    } else {
      cpu::pool_rows(x, hi - lo, int(D), hi - lo, a.how == Reduce::mean ? cpu::Pool::mean : cpu::Pool::max, dst);
    }
    if (a.sqrt_len) {
      const float f = std::sqrt(float(hi - lo));
      for (int64_t c = 0; c < D; ++c) dst[c] *= f;
    }
  }
}

// ---- project ----------------------------------------------------------------------------------

std::string project_refusal(const ProjectArgs& a) {
  if (on_device({&a.x, &a.proj, &a.out}) || a.code.on_device || a.codes.on_device)
    return "an operand is in device memory";
  if (auto p = tensor_problem(a.x, "x"); !p.empty()) return p;
  if (auto p = tensor_problem(a.proj, "proj"); !p.empty()) return p;
  const Shape4& x = a.x.shape;
  const Shape4& p = a.proj.shape;
  if (a.epilogue == ProjectEpilogue::favor) {
    if (p[0] != 1 || p[1] != 1 || p[3] != x[3]) return "proj must be (1, 1, F, D)";
    const Shape4 want{x[0], x[1], x[2], p[2]};
    return tensor_problem(a.out, "out", &want);
  }
  if (p[0] != 1 || p[1] != 1 || p[2] != x[3] || p[3] < 1 || p[3] > 30) return "proj must be (1, 1, D, F), F in [1, 30]";
  if (!a.code.present() || a.code.size != (int64_t(1) << p[3])) return "code must hold 2^F entries";
  if (!a.codes.present() || a.codes.size < x[0] * x[1] * x[2]) return "codes must hold B·H·N entries";
  return "";
}

void project(const ProjectArgs& a) {
  if (auto why = project_refusal(a); !why.empty()) throw std::invalid_argument("cpu project: " + why);
  const int64_t BH = a.x.shape[0] * a.x.shape[1], n = a.x.shape[2];
  const int d = int(a.x.shape[3]);
  if (a.epilogue == ProjectEpilogue::sign_code) {
    cpu::AngularLsh lsh;
    lsh.d = d;
    lsh.bits = int(a.proj.shape[3]);
    lsh.proj.assign(a.proj.host_f32(), a.proj.host_f32() + a.proj.numel());
    lsh.gray.assign(a.code.data, a.code.data + a.code.size);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < BH; ++bh) cpu::lsh_hash(lsh, a.x.host_f32() + bh * n * d, n, a.codes.data + bh * n);
    return;
  }
  const int64_t nb = a.proj.shape[2];
  const CMapRM omega(a.proj.host_f32(), nb, d);
#pragma omp parallel
  {
    // Each head's features are formed in Eigen's own (aligned) storage and copied out: the
    // vectorised exp splits a row into scalar and packet parts by its address, so this keeps
    // the bits of the SEA estimation as it ran before it became an op.
    RowMat phi;
#pragma omp for schedule(dynamic, 1)
    for (int64_t bh = 0; bh < BH; ++bh) {
      const float* X = a.x.host_f32() + bh * n * d;
      phi.resize(n, nb);
      phi.noalias() = (a.xs * CMapRM(X, n, d)) * omega.transpose();
      float gmax = kNegInf;
      if (!a.row_stab && n > 0) gmax = phi.maxCoeff();
      for (int64_t i = 0; i < n; ++i) {
        float sq = 0;
        for (int c = 0; c < d; ++c) sq += X[i * d + c] * X[i * d + c];
        const float half = 0.5f * a.xs * a.xs * sq;
        const float stab = a.row_stab ? phi.row(i).maxCoeff() : gmax;
        phi.row(i) = (phi.row(i).array() - half - stab).exp() / std::sqrt(float(nb));
      }
      std::copy(phi.data(), phi.data() + n * nb, a.out.host_f32() + bh * n * nb);
    }
  }
}

// ---- scores -----------------------------------------------------------------------------------

namespace {

struct RowGeometry {
  int64_t nr, row_begin, row_end, positions, n_keys;
  const ScoresArgs* a;
  int64_t pos(int64_t r) const { return std::min(positions - 1, r * a->row_stride + a->row_stride - 1); }
  int64_t visible(int64_t r) const {
    return a->causal ? std::clamp<int64_t>(pos(r) + 1 + a->q_offset, 0, n_keys) : n_keys;
  }
};

RowGeometry geometry(const ScoresArgs& a) {
  RowGeometry g;
  g.a = &a;
  g.nr = a.q.shape[2];
  g.row_begin = a.row_begin;
  g.row_end = a.row_end > 0 ? a.row_end : g.nr;
  g.positions = a.positions > 0 ? a.positions : g.nr;
  g.n_keys = a.n_keys > 0 ? a.n_keys : a.k.shape[2];
  return g;
}

}  // namespace

std::string scores_refusal(const ScoresArgs& a) {
  if (on_device({&a.q, &a.k, &a.out, &a.thr}) || a.lists.offsets.on_device || a.lists.entries.on_device ||
      a.col_limits.on_device)
    return "an operand is in device memory";
  if (auto p = tensor_problem(a.q, "q"); !p.empty()) return p;
  if (auto p = tensor_problem(a.k, "k"); !p.empty()) return p;
  const Shape4& q = a.q.shape;
  const Shape4& k = a.k.shape;
  if (q[0] != k[0] || q[3] != k[3]) return "q and k must share batch and head_dim";
  if (k[1] <= 0 || q[1] % k[1] != 0) return "the key heads must divide the query heads";
  if (a.row_stride < 1) return "row_stride must be >= 1";
  const RowGeometry g = geometry(a);
  if (g.row_begin < 0 || g.row_begin > g.row_end || g.row_end > g.nr) return "bad row range";
  if (g.n_keys > k[2]) return "n_keys exceeds the keys";
  if (!(a.scale > 0) && !(a.scale < 0)) return "scale must be set";
  switch (a.epilogue) {
    case ScoresEpilogue::raw: {
      const Shape4 want{q[0], q[1], g.row_end - g.row_begin, g.n_keys};
      return tensor_problem(a.out, "out", &want);
    }
    case ScoresEpilogue::probs_head_mean: {
      if (a.head_group < 1 || q[1] % a.head_group != 0) return "head_group must divide the query heads";
      const Shape4 want{q[0], q[1] / a.head_group, g.row_end - g.row_begin, g.n_keys};
      return tensor_problem(a.out, "out", &want);
    }
    case ScoresEpilogue::probs_block_pool: {
      if (a.key_block < 1 || a.row_block < 1) return "key_block and row_block must be >= 1";
      if (g.row_end > g.row_begin && (g.pos(g.row_begin) / a.row_block < a.group_base ||
                                      g.pos(g.row_end - 1) / a.row_block - a.group_base >= a.out.shape[2]))
        return "a scored row's group falls outside out";
      const Shape4 want{q[0], q[1], a.out.shape[2], ceil_div(g.n_keys, a.key_block)};
      return tensor_problem(a.out, "out", &want);
    }
    case ScoresEpilogue::keys_reaching: {
      if (a.row_group < 1) return "row_group must be >= 1";
      if (a.key_begin < 0) return "key_begin must be >= 0";
      const Shape4 want{q[0], q[1], q[2], 1};
      if (auto p = tensor_problem(a.thr, "thr", &want); !p.empty()) return p;
      return csr_problem(a.lists);
    }
    case ScoresEpilogue::raw_normalized_sum: {
      if (a.row_group < 1) return "row_group must be >= 1";
      const int64_t n_groups = ceil_div(g.row_end - g.row_begin, a.row_group);
      if (a.col_limits.on_device) return "the column limits are in device memory";
      if (!a.col_limits.present() || a.col_limits.size != n_groups) return "raw_normalized_sum needs a column limit per row group";
      for (int64_t i = 0; i < n_groups; ++i)
        if (a.col_limits.data[i] < 0 || a.col_limits.data[i] > g.n_keys) return "column limits must lie in [0, n_keys]";
      const Shape4 want{q[0], q[1], n_groups, g.n_keys};
      return tensor_problem(a.out, "out", &want);
    }
  }
  return "unknown epilogue";
}

void scores(const ScoresArgs& a) {
  if (auto why = scores_refusal(a); !why.empty()) throw std::invalid_argument("cpu scores: " + why);
  const RowGeometry geo = geometry(a);
  const int64_t B = a.q.shape[0], Hq = a.q.shape[1], rep = Hq / a.k.shape[1];
  const int d = int(a.q.shape[3]);
  const int64_t nr = geo.row_end - geo.row_begin;
  switch (a.epilogue) {
    case ScoresEpilogue::raw: {
      if (nr == 0 || geo.n_keys == 0) return;
#pragma omp parallel for schedule(static) if (B * Hq > 1)
      for (int64_t bh = 0; bh < B * Hq; ++bh) {
        const int64_t b = bh / Hq, h = bh % Hq;
        Eigen::Map<RowMat>(at_mut(a.out, b, h, 0), nr, geo.n_keys).noalias() =
            (a.scale * CMapRM(at(a.q, b, h, geo.row_begin), nr, d)) * CMapRM(at(a.k, b, h / rep, 0), geo.n_keys, d).transpose();
      }
      return;
    }
    case ScoresEpilogue::probs_head_mean: {
      const int64_t G = Hq / a.head_group, nk = geo.n_keys;
      std::fill(a.out.host_f32(), a.out.host_f32() + a.out.numel(), 0.0f);
#pragma omp parallel
      {
        std::vector<float> p(static_cast<size_t>(nr * nk));
        std::vector<int64_t> vis(static_cast<size_t>(nr));
        for (int64_t r = 0; r < nr; ++r) vis[size_t(r)] = geo.visible(geo.row_begin + r);
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < B * G; ++item) {
          const int64_t b = item / G, g = item % G;
          float* out = at_mut(a.out, b, g, 0);
          for (int t = 0; t < a.head_group; ++t) {
            const int64_t h = g * a.head_group + t;
            cpu::softmax_probs(at(a.q, b, h, geo.row_begin), nr, vis.data(), at(a.k, b, h / rep, 0), nk, d, a.scale,
                               p.data());
            for (int64_t e = 0; e < nr * nk; ++e) out[e] += p[size_t(e)] / float(a.head_group);
          }
        }
      }
      return;
    }
    case ScoresEpilogue::probs_block_pool: {
      const int64_t n_kb = ceil_div(geo.n_keys, a.key_block);
      std::fill(a.out.host_f32(), a.out.host_f32() + a.out.numel(), 0.0f);
      if (nr == 0) return;
      // Row groups: rows whose positions share pos / row_block (contiguous, positions ascend).
      std::vector<int64_t> starts;  // row index where each group begins, plus row_end
      for (int64_t r = geo.row_begin; r < geo.row_end; ++r)
        if (r == geo.row_begin || geo.pos(r) / a.row_block != geo.pos(r - 1) / a.row_block) starts.push_back(r);
      starts.push_back(geo.row_end);
      const int64_t n_groups = int64_t(starts.size()) - 1, first = a.group_base;
      const cpu::Pool key_pool = a.key_pool == Reduce::mean ? cpu::Pool::mean : cpu::Pool::max;
#pragma omp parallel
      {
        std::vector<float> probs;
        std::vector<int64_t> vis;
#pragma omp for schedule(dynamic, 1)
        for (int64_t item = 0; item < B * Hq * n_groups; ++item) {
          const int64_t gi = n_groups - 1 - item % n_groups;  // heavy (late) groups first
          const int64_t b = item / n_groups / Hq, h = item / n_groups % Hq;
          const int64_t lo = starts[size_t(gi)], n = starts[size_t(gi) + 1] - lo;
          vis.resize(size_t(n));
          for (int64_t r = 0; r < n; ++r) vis[size_t(r)] = geo.visible(lo + r);
          probs.resize(size_t(n * n_kb));
          cpu::pooled_softmax(at(a.q, b, h, lo), n, vis.data(), at(a.k, b, h / rep, 0), geo.n_keys, d, a.scale,
                              a.key_block, key_pool, probs.data());
          float* out = at_mut(a.out, b, h, geo.pos(lo) / a.row_block - first);
          if (a.row_reduce == Reduce::max) {
            for (int64_t r = 0; r < n; ++r)
              for (int64_t c = 0; c < n_kb; ++c) out[c] = std::max(out[c], probs[size_t(r * n_kb + c)]);
          } else {
            for (int64_t r = 0; r < n; ++r)
              for (int64_t c = 0; c < n_kb; ++c) out[c] += probs[size_t(r * n_kb + c)] / float(n);
          }
        }
      }
      return;
    }
    case ScoresEpilogue::keys_reaching: {
      const int64_t Nr = a.q.shape[2], rg = a.row_group, n_groups = ceil_div(Nr, rg);
      const int64_t n_lists = B * Hq * n_groups;
      std::vector<std::vector<int32_t>> lists(static_cast<size_t>(n_lists));
#pragma omp parallel
      {
        RowMat sc;
#pragma omp for schedule(dynamic, 1)
        for (int64_t l = n_lists - 1; l >= 0; --l) {
          const int64_t g = l % n_groups, b = l / n_groups / Hq, h = l / n_groups % Hq;
          const int64_t c0 = a.key_begin, c1 = std::min(geo.n_keys, g * a.keys_per_group);
          if (c1 <= c0) continue;
          std::vector<int32_t>& out = lists[size_t(l)];
          const int64_t r0 = g * rg, r1 = std::min(Nr, r0 + rg);
          if (a.partial_keeps_all && (g + 1) * rg * a.row_stride > geo.positions) {
            for (int64_t j = c0; j < c1; ++j) out.push_back(int32_t(j));
            continue;
          }
          sc.resize(r1 - r0, c1 - c0);
          sc.noalias() = (a.scale * CMapRM(at(a.q, b, h, r0), r1 - r0, d)) *
                         CMapRM(at(a.k, b, h / rep, c0), c1 - c0, d).transpose();
          const float* thr = at(a.thr, b, h, r0);
          for (int64_t j = 0; j < c1 - c0; ++j) {
            bool keep = false;
            for (int64_t t = 0; t < r1 - r0 && !keep; ++t) keep = sc(t, j) >= thr[t] - a.thr_offset;
            if (keep) out.push_back(int32_t(c0 + j));
          }
        }
      }
      write_csr(lists, a.lists, "cpu scores");
      return;
    }
    case ScoresEpilogue::raw_normalized_sum: {
      const int64_t nk = geo.n_keys, rg = a.row_group, n_groups = ceil_div(nr, rg);
      std::fill(a.out.host_f32(), a.out.host_f32() + a.out.numel(), 0.0f);
      if (nr == 0 || nk == 0) return;
#pragma omp parallel
      {
        RowMat z;  // one head's raw scores at a time, as SEA's estimation formed them
#pragma omp for schedule(dynamic, 1)
        for (int64_t bh = 0; bh < B * Hq; ++bh) {
          const int64_t b = bh / Hq, h = bh % Hq;
          z.resize(nr, nk);
          z.noalias() = (a.scale * CMapRM(at(a.q, b, h, geo.row_begin), nr, d)) * CMapRM(at(a.k, b, h / rep, 0), nk, d).transpose();
          for (int64_t gi = 0; gi < n_groups; ++gi) {
            const int64_t lim = a.col_limits.data[gi];
            float* dst = at_mut(a.out, b, h, gi);
            for (int64_t r = gi * rg; r < std::min(nr, (gi + 1) * rg); ++r) {
              float total = 0;
              for (int64_t c = 0; c < lim; ++c) total += z(r, c);
              if (total <= 0) continue;
              for (int64_t c = 0; c < lim; ++c) dst[c] += z(r, c) / total;
            }
          }
        }
      }
      return;
    }
  }
}

// ---- select -----------------------------------------------------------------------------------

std::string select_refusal(const SelectArgs& a) {
  if (on_device({&a.scores}) || a.col_map.on_device || a.rules.on_device || a.lists.offsets.on_device ||
      a.lists.entries.on_device)
    return "an operand is in device memory";
  if (auto p = tensor_problem(a.scores, "scores"); !p.empty()) return p;
  const Shape4& s = a.scores.shape;
  if (a.batch != s[0]) return "scores must have the lists' batch";
  if (a.list_heads < 1 || s[1] < 1 || a.list_heads % s[1] != 0) return "the score heads must divide list_heads";
  if (a.n_per < 1 || (!a.rules.present() && s[2] != 1 && s[2] < a.n_per))
    return "scores need one row per list index (or one shared)";
  if (a.col_map_stride < 0 || (a.col_map.present() && a.col_map_stride > 0 && a.col_map.size < a.batch * a.col_map_stride))
    return "col_map must hold col_map_stride entries per batch";
  if (a.col_map.present() && a.col_map.on_device) return "col_map is in device memory";
  if (a.rules.present()) {
    if (a.rules.on_device) return "the rules are in device memory";
    if (a.rules.size != a.n_lists() * kSelectRuleInts) return "rules must hold 8 entries per list";
  }
  if (a.expand_width < 0 || (a.expand_width > 0 && a.expand_n < 0)) return "bad expansion";
  return csr_problem(a.lists);
}

void select(const SelectArgs& a) {
  if (auto why = select_refusal(a); !why.empty()) throw std::invalid_argument("cpu select: " + why);
  const Shape4& s = a.scores.shape;
  const int64_t n_lists = a.n_lists(), C = s[3];
  const int64_t map_len = a.col_map_stride > 0 ? a.col_map_stride : a.col_map.size;
  const int64_t default_cand = a.col_map.present() ? map_len : C;
  const int heads_per_score = int(a.list_heads / s[1]);
  std::vector<std::vector<int32_t>> lists(static_cast<size_t>(n_lists));
  bool bad = false;
#pragma omp parallel reduction(|| : bad)
  {
    std::vector<float> buf;
    std::vector<int32_t> top;
#pragma omp for schedule(dynamic, 4)
    for (int64_t l = 0; l < n_lists; ++l) {
      const int64_t i = l % a.n_per, lh = l / a.n_per % a.list_heads, b = l / a.n_per / a.list_heads;
      const int32_t* rule = a.rules.present() ? a.rules.data + l * kSelectRuleInts : nullptr;
      const int64_t n_cand = rule ? rule[0] : default_cand;
      const int64_t k = rule ? rule[1] : a.k;
      if (n_cand < 0 || n_cand > default_cand || (n_cand > 0 && s[2] != 1 && i >= s[2])) {
        bad = true;
        continue;
      }
      std::vector<int32_t>& out = lists[size_t(l)];
      if (n_cand > 0) {
        const float* row = at(a.scores, b, lh / heads_per_score, s[2] == 1 ? 0 : i);
        buf.resize(size_t(n_cand));
        if (a.col_map.present()) {
          const int32_t* map = a.col_map.data + (a.col_map_stride > 0 ? b * a.col_map_stride : 0);
          for (int64_t j = 0; j < n_cand; ++j) {
            if (map[j] < 0 || map[j] >= C) bad = true;
            buf[size_t(j)] = map[j] < 0 || map[j] >= C ? kNegInf : row[map[j]];
          }
        } else {
          std::copy(row, row + n_cand, buf.begin());
        }
        auto mask = [&](int64_t lo, int64_t hi) {
          for (int64_t j = std::max<int64_t>(0, lo); j < std::min(n_cand, hi); ++j) buf[size_t(j)] = kNegInf;
        };
        if (rule) {
          mask(rule[2], rule[3]);
          if (a.mask_forced) {
            mask(rule[4], rule[5]);
            mask(rule[6], rule[7]);
          }
        }
        const int64_t count =
            a.rule == SelectRule::cumulative_mass ? cpu::cumulative_mass_count(buf.data(), n_cand, a.gamma) : k;
        cpu::top_k(buf.data(), n_cand, std::min(count, n_cand), top);
        out.assign(top.begin(), top.end());
      }
      if (rule)
        for (int f = 0; f < 2; ++f)
          for (int64_t j = std::max<int32_t>(0, rule[4 + 2 * f]); j < rule[5 + 2 * f]; ++j) out.push_back(int32_t(j));
      std::sort(out.begin(), out.end());
      out.erase(std::unique(out.begin(), out.end()), out.end());
      if (a.expand_width > 0) {
        std::vector<int32_t> keys;
        for (int32_t c : out)
          for (int64_t j = int64_t(c) * a.expand_n / a.expand_width; j < int64_t(c + 1) * a.expand_n / a.expand_width; ++j)
            keys.push_back(int32_t(j));
        out = std::move(keys);
      }
    }
  }
  if (bad)
    throw std::invalid_argument("cpu select: a rule's n_cand is outside [0, candidates], reads a missing score row, "
                                "or col_map names a missing column");
  write_csr(lists, a.lists, "cpu select");
}

// ---- merge ------------------------------------------------------------------------------------

std::string lse_merge_refusal(const LseMergeArgs& a) {
  if (on_device({&a.o, &a.lse, &a.o2, &a.lse2, &a.row_offset})) return "an operand is in device memory";
  const Shape4 o = a.o.shape;
  const Shape4 l{o[0], o[1], o[2], 1};
  if (auto p = tensor_problem(a.o, "o"); !p.empty()) return p;
  if (auto p = tensor_problem(a.lse, "lse", &l); !p.empty()) return p;
  if (auto p = tensor_problem(a.o2, "o2", &o); !p.empty()) return p;
  if (auto p = tensor_problem(a.lse2, "lse2", &l); !p.empty()) return p;
  if (a.row_offset.data) {
    const Shape4 r{1, 1, o[2], 1};
    if (auto p = tensor_problem(a.row_offset, "row_offset", &r); !p.empty()) return p;
  }
  return "";
}

void lse_merge(const LseMergeArgs& a) {
  if (auto why = lse_merge_refusal(a); !why.empty()) throw std::invalid_argument("cpu lse_merge: " + why);
  const int64_t rows = a.o.shape[0] * a.o.shape[1] * a.o.shape[2], n = a.o.shape[2];
  const int dv = int(a.o.shape[3]);
  const float* lse2 = a.lse2.host_f32();
  std::vector<float> shifted;
  if (a.row_offset.data) {  // ℓ2 + row_offset first, then the scalar offset in the kernel
    shifted.resize(size_t(rows));
    const float* w = a.row_offset.host_f32();
    for (int64_t r = 0; r < rows; ++r) shifted[size_t(r)] = lse2[r] + w[r % n];
    lse2 = shifted.data();
  }
  cpu::lse_merge(a.o.host_f32(), a.lse.host_f32(), a.o.host_f32(), a.lse.host_f32(), a.o2.host_f32(), lse2, rows, dv,
                 a.offset);
}

}  // namespace ab::cpu_select

// ---- int4 estimation --------------------------------------------------------------------------

namespace ab::cpu_select {
namespace {

std::string int4_problem(const Int4Tensor& t, const std::string& name, const Shape4& x) {
  if (t.values.on_device || t.scales.on_device) return name + " is in device memory";
  if (!t.values.data) return name + " is missing";
  if (t.shape != x) return name + " has the wrong shape";
  const Shape4 layout{x[0], x[1], 1, 1};
  if (t.values.shape != layout) return name + " was not made by the CPU backend's alloc_int4";
  if (t.block < 1) return name + ".block must be >= 1";
  const Shape4 sc{x[0], x[1], ceil_div(x[2], t.block), 1};
  return tensor_problem(t.scales, (name + ".scales").c_str(), &sc);
}

cpu::Int4Rows* int4_rows(const Int4Tensor& t) { return static_cast<cpu::Int4Rows*>(t.values.data); }

}  // namespace

std::string quantize_int4_refusal(const QuantizeInt4Args& a) {
  if (on_device({&a.x, &a.center}) || a.out.values.on_device || a.out.scales.on_device)
    return "an operand is in device memory";
  if (auto p = tensor_problem(a.x, "x"); !p.empty()) return p;
  const Shape4& x = a.x.shape;
  if (a.center.data) {
    const Shape4 c{x[0], x[1], 1, x[3]};
    if (auto p = tensor_problem(a.center, "center", &c); !p.empty()) return p;
  }
  return int4_problem(a.out, "out", x);
}

void quantize_int4(const QuantizeInt4Args& a) {
  if (auto why = quantize_int4_refusal(a); !why.empty()) throw std::invalid_argument("cpu quantize_int4: " + why);
  const Shape4& x = a.x.shape;
  const int64_t BH = x[0] * x[1], N = x[2], nb = ceil_div(N, a.out.block);
  const int d = int(x[3]);
  cpu::Int4Rows* rows = int4_rows(a.out);
  float* scales = a.out.scales.host_f32();
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t bh = 0; bh < BH; ++bh) {
    const float* X = a.x.host_f32() + bh * N * d;
    if (a.center.data) {
      const float* mean = a.center.host_f32() + bh * d;
      std::vector<float> xs(static_cast<size_t>(N * d));
      for (int64_t j = 0; j < N; ++j)
        for (int c = 0; c < d; ++c) xs[size_t(j * d + c)] = X[j * d + c] - mean[c];
      rows[bh] = cpu::quantize_int4(xs.data(), N, d, a.out.block);
    } else {
      rows[bh] = cpu::quantize_int4(X, N, d, a.out.block);
    }
    std::copy(rows[bh].scale.begin(), rows[bh].scale.end(), scales + bh * nb);
  }
}

std::string int4_block_scan_refusal(const Int4BlockScanArgs& a) {
  if (on_device({&a.q, &a.k, &a.k_center}) || a.q4.values.on_device || a.k4.values.on_device ||
      a.lists.offsets.on_device || a.lists.entries.on_device)
    return "an operand is in device memory";
  if (auto p = tensor_problem(a.q, "q"); !p.empty()) return p;
  if (auto p = tensor_problem(a.k, "k"); !p.empty()) return p;
  const Shape4& q = a.q.shape;
  const Shape4& k = a.k.shape;
  if (q[0] != k[0] || q[3] != k[3]) return "q and k must share batch and head_dim";
  if (k[1] <= 0 || q[1] % k[1] != 0) return "the key heads must divide the query heads";
  if (a.k_center.data) {
    const Shape4 c{k[0], k[1], 1, k[3]};
    if (auto p = tensor_problem(a.k_center, "k_center", &c); !p.empty()) return p;
  }
  if (auto p = int4_problem(a.q4, "q4", q); !p.empty()) return p;
  if (auto p = int4_problem(a.k4, "k4", k); !p.empty()) return p;
  if (a.block_q < 1 || a.block_k < 1 || a.segment < 1) return "block_q, block_k and segment must be >= 1";
  if (a.k4.block != a.block_k) return "k4.block must be block_k";
  if (a.local_window < 0) return "local_window must be >= 0";
  if (!(a.scale > 0) && !(a.scale < 0)) return "scale must be set";
  return csr_problem(a.lists);
}

void int4_block_scan(const Int4BlockScanArgs& a) {
  if (auto why = int4_block_scan_refusal(a); !why.empty()) throw std::invalid_argument("cpu int4_block_scan: " + why);
  const int64_t B = a.q.shape[0], Hq = a.q.shape[1], Hk = a.k.shape[1], rep = Hq / Hk;
  const int64_t Nq = a.q.shape[2], Nk = a.k.shape[2];
  const int d = int(a.q.shape[3]);
  const int64_t bq = a.block_q, bk = a.block_k, window = a.local_window, off = a.q_offset;
  const int64_t n_qb = ceil_div(Nq, bq), n_items = B * Hq * n_qb;
  const float scale = a.scale, tau = a.tau;
  const cpu::Int4Rows* qq = int4_rows(a.q4);
  const cpu::Int4Rows* kq = int4_rows(a.k4);
  std::vector<std::vector<int32_t>> per_list(static_cast<size_t>(n_items));
#pragma omp parallel
  {
    RowMat sc;
    std::vector<float> m, l, t, qk;
    std::vector<uint8_t> keep;
    std::vector<int32_t> kept_seg;
    // Exact (m, ℓ) update of rows [r0, r0+nr) with keys [k0, k1), causal per row.
    auto update_stats = [&](const float* Q, const float* K, int64_t r0, int64_t nr, int64_t k0, int64_t k1) {
      if (k1 <= k0) return;
      sc.resize(nr, k1 - k0);
      sc.noalias() = scale * (CMapRM(Q + r0 * d, nr, d) * CMapRM(K + k0 * d, k1 - k0, d).transpose());
      for (int64_t r = 0; r < nr; ++r) {
        const int64_t lim = std::min(k1, r0 + r + off + 1);  // keys j <= qpos
        float mx = m[size_t(r)];
        for (int64_t j = k0; j < lim; ++j) mx = std::max(mx, sc(r, j - k0));
        if (mx == kNegInf) continue;
        float sum = l[size_t(r)] * std::exp(m[size_t(r)] - mx);
        for (int64_t j = k0; j < lim; ++j) sum += std::exp(sc(r, j - k0) - mx);
        m[size_t(r)] = mx;
        l[size_t(r)] = sum;
      }
    };
#pragma omp for schedule(dynamic, 1)
    for (int64_t item = n_items - 1; item >= 0; --item) {
      const int64_t qh = item / n_qb, qb = item % n_qb;
      const int64_t b = qh / Hq, h = qh % Hq, kvh = b * Hk + h / rep;
      const float* Q = at(a.q, b, h, 0);
      const float* K = at(a.k, b, h / rep, 0);
      const int64_t r0 = qb * bq, nr = std::min(Nq, r0 + bq) - r0;
      const int64_t last_key = r0 + nr - 1 + off;  // causal limit of the block's last row
      const int64_t lb1 = last_key / bk;
      const int64_t lb0 = std::max<int64_t>(0, r0 + off - window) / bk;
      std::vector<int32_t>& out = per_list[size_t(item)];
      out.push_back(0);
      if (lb0 > 1) {
        // 1–2. Exact statistics over the sink block and the local window, then thresholds.
        m.assign(size_t(nr), kNegInf);
        l.assign(size_t(nr), 0.0f);
        update_stats(Q, K, r0, nr, 0, std::min(Nk, bk));
        update_stats(Q, K, r0, nr, lb0 * bk, std::min(Nk, last_key + 1));
        qk.assign(size_t(nr), 0.0f);
        if (a.k_center.data) {
          const float* mean = at(a.k_center, b, h / rep, 0);
          for (int64_t r = 0; r < nr; ++r) {
            const float* qr = Q + (r0 + r) * d;
            float acc = 0;
            for (int c = 0; c < d; ++c) acc += qr[c] * mean[c];
            qk[size_t(r)] = acc;
          }
        }
        t.resize(size_t(nr));
        auto thresholds = [&] {
          // x̃ = scale·(s_q·s_k·dot + q·k̄) >= t_r  <=>  s_q·s_k·dot >= t_r/scale − q·k̄.
          if (a.k_center.data) {
            for (int64_t r = 0; r < nr; ++r)
              t[size_t(r)] = cpu::threshold_relative_to_sum(m[size_t(r)], l[size_t(r)], tau) / scale - qk[size_t(r)];
          } else {
            for (int64_t r = 0; r < nr; ++r)
              t[size_t(r)] = cpu::threshold_relative_to_sum(m[size_t(r)], l[size_t(r)], tau) / scale;
          }
        };
        thresholds();
        // 3. Scan blocks 1 .. lb0−1 in segments; with fixed thresholds one scan covers them all.
        const int64_t step = a.refresh ? a.segment : lb0;
        for (int64_t s0 = 1; s0 < lb0; s0 += step) {
          const int64_t s1 = std::min(lb0, s0 + step);
          kept_seg.clear();
          keep.resize(size_t(s1 - s0));
          cpu::int4_blocks_reaching(qq[qh], r0, nr, kq[kvh], s0, s1, bk, t.data(), keep.data());
          for (int64_t kb = s0; kb < s1; ++kb)
            if (keep[size_t(kb - s0)]) kept_seg.push_back(int32_t(kb));
          out.insert(out.end(), kept_seg.begin(), kept_seg.end());
          if (a.refresh && !kept_seg.empty()) {
            for (int32_t kb : kept_seg) update_stats(Q, K, r0, nr, int64_t(kb) * bk, std::min(Nk, int64_t(kb + 1) * bk));
            thresholds();
          }
        }
      }
      for (int64_t kb = std::max<int64_t>(1, lb0); kb <= lb1; ++kb) out.push_back(int32_t(kb));
    }
  }
  write_csr(per_list, a.lists, "cpu int4_block_scan");
}

}  // namespace ab::cpu_select
