#include "reference/attention_stats.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

// GCC 12 warns -Wmaybe-uninitialized inside its AVX-512 headers when Eigen's double-precision
// products are inlined (a false positive on _mm512_undefined_*, GCC PR 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <Eigen/Dense>

namespace ab {

std::vector<int64_t> sample_rows(int64_t q_len, int64_t count, int64_t first) {
  first = std::clamp<int64_t>(first, 0, std::max<int64_t>(0, q_len - 1));
  const int64_t range = q_len - first;
  std::vector<int64_t> rows;
  if (range <= 0) return rows;
  if (count <= 0 || count >= range) {
    for (int64_t i = first; i < q_len; ++i) rows.push_back(i);
    return rows;
  }
  if (count == 1) return {q_len - 1};
  for (int64_t r = 0; r < count; ++r) rows.push_back(first + (r * (range - 1)) / (count - 1));
  rows.erase(std::unique(rows.begin(), rows.end()), rows.end());
  return rows;
}

void dense_attention_rows(const HostTensor& q, const HostTensor& k, const HostTensor* v,
                          const AttnShape& s, const Mask& m, double scale, int kv_head, int b,
                          int h, const int64_t* rows, int count, double* p, double* o, double* lse) {
  using MatD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Strided = Eigen::Map<MatD, 0, Eigen::OuterStride<>>;
  constexpr double kNegInf = -std::numeric_limits<double>::infinity();
  constexpr int64_t kTile = 256;  // keys widened to float64 per GEMM
  const int d = s.head_dim, dv = s.v_dim;
  const int64_t n = s.kv_len;
  const bool plain = !m.extra && m.window <= 0;
  // Keys past the last row's causal horizon are masked for every row of the block.
  int64_t hi = 0;
  for (int r = 0; r < count; ++r)
    hi = std::max(hi, m.causal ? std::min<int64_t>(n, rows[r] + s.q_offset() + 1) : n);
  MatD qd(count, d), tile(kTile, std::max(d, dv));
  for (int r = 0; r < count; ++r) {
    const float* qr = q.row(b, h, rows[r]);
    for (int c = 0; c < d; ++c) qd(r, c) = qr[c];
  }
  // Logits: float64 GEMMs over tiles of keys (the same sums as the definition, in another order).
  for (int64_t j0 = 0; j0 < hi; j0 += kTile) {
    const int64_t jt = std::min(kTile, hi - j0);
    for (int64_t j = 0; j < jt; ++j) {
      const float* kr = k.row(b, kv_head, j0 + j);
      for (int c = 0; c < d; ++c) tile(j, c) = kr[c];
    }
    Strided(p + j0, count, jt, Eigen::OuterStride<>(n)).noalias() =
        scale * (qd * tile.topLeftCorner(jt, d).transpose());
  }
  for (int r = 0; r < count; ++r) {
    double* pr = p + r * n;
    const int64_t qpos = rows[r] + s.q_offset();
    const int64_t rhi = m.causal ? std::min<int64_t>(n, qpos + 1) : n;
    double mx = kNegInf;
    for (int64_t j = 0; j < n; ++j) {
      if (j >= rhi || (!plain && !m.allows(b, h, qpos, j))) {
        pr[j] = kNegInf;
        continue;
      }
      mx = std::max(mx, pr[j]);
    }
    if (mx == kNegInf) {
      std::fill(pr, pr + n, 0.0);
      lse[r] = kNegInf;
      continue;
    }
    double sum = 0;
    for (int64_t j = 0; j < n; ++j) {
      pr[j] = pr[j] == kNegInf ? 0.0 : std::exp(pr[j] - mx);
      sum += pr[j];
    }
    const double inv = 1.0 / sum;
    for (int64_t j = 0; j < n; ++j) pr[j] *= inv;
    lse[r] = mx + std::log(sum);
  }
  if (!o) return;
  Eigen::Map<MatD> om(o, count, dv);
  om.setZero();
  if (!v) return;
  for (int64_t j0 = 0; j0 < hi; j0 += kTile) {
    const int64_t jt = std::min(kTile, hi - j0);
    for (int64_t j = 0; j < jt; ++j) {
      const float* vr = v->row(b, kv_head, j0 + j);
      for (int c = 0; c < dv; ++c) tile(j, c) = vr[c];
    }
    om.noalias() += Strided(p + j0, count, jt, Eigen::OuterStride<>(n)) * tile.topLeftCorner(jt, dv);
  }
}

double dense_attention_row(const HostTensor& q, const HostTensor& k, const HostTensor* v,
                           const AttnShape& s, const Mask& m, double scale, int kv_head, int b,
                           int h, int64_t i, double* p, double* o) {
  double lse = 0;
  dense_attention_rows(q, k, v, s, m, scale, kv_head, b, h, &i, 1, p, o, &lse);
  return lse;
}

RowStats row_stats(const double* p, const AttnShape& s, const Mask& m, int b, int h, int64_t qpos,
                   int64_t window, int64_t sink_token, std::vector<double>& scratch, int64_t period) {
  RowStats r;
  scratch.clear();
  for (int64_t j = 0; j < s.kv_len; ++j) {
    if (!m.allows(b, h, qpos, j)) continue;
    const double pj = p[j];
    scratch.push_back(pj);
    if (pj > 0) r.entropy -= pj * std::log(pj);
    if (std::abs(qpos - j) < window) r.local_mass += pj;
    if (period > 0 && (qpos - j) % period == 0) r.slash_mass += pj;
  }
  r.visible = static_cast<int64_t>(scratch.size());
  if (sink_token >= 0 && sink_token < s.kv_len) r.first_mass = p[sink_token];
  if (r.visible == 0) return r;
  auto top_mass = [&](double frac) {
    // k = ceil(frac · N) keys (N = kv_len, as the capture's README measures), at most the visible ones.
    const int64_t kk = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(frac * double(s.kv_len))), 1, r.visible);
    std::nth_element(scratch.begin(), scratch.begin() + (kk - 1), scratch.end(), std::greater<>());
    double sum = 0;
    for (int64_t t = 0; t < kk; ++t) sum += scratch[t];
    return sum;
  };
  // nth_element leaves the largest kk first, so the 10% pass may reuse the partition.
  r.top10_mass = top_mass(0.10);
  r.top1_mass = top_mass(0.01);
  return r;
}

std::vector<HeadStats> attention_stats(const HostTensor& q, const HostTensor& k,
                                       const AttnShape& s, double scale,
                                       const StatsOptions& opts) {
  if (scale <= 0) scale = 1.0 / std::sqrt(static_cast<double>(s.head_dim));
  Mask mask;
  mask.causal = s.causal;
  const int64_t first = static_cast<int64_t>(std::floor(opts.row_start * s.q_len));
  const std::vector<int64_t> rows = sample_rows(s.q_len, opts.rows, first);
  const int heads = s.batch * s.q_heads;
  const int64_t nrows = static_cast<int64_t>(rows.size());
  std::vector<HeadStats> out(static_cast<size_t>(heads));
  // One (head, row) pair per iteration; each thread keeps its own N-long buffers and writes
  // its row's statistics into a slot, summed per head afterwards in a fixed order (the result
  // does not depend on the thread count).
  std::vector<RowStats> per_row(static_cast<size_t>(heads * nrows));
  const int64_t kBlock = dense_row_block(s.kv_len);  // rows per pass over K and V
  const int64_t blocks = (nrows + kBlock - 1) / kBlock;
#pragma omp parallel
  {
    std::vector<double> p(static_cast<size_t>(kBlock * s.kv_len)), scratch, lse(kBlock);
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < heads * blocks; ++t) {
      const int bh = static_cast<int>(t / blocks);
      const int b = bh / s.q_heads, h = bh % s.q_heads;
      const int64_t r0 = (t % blocks) * kBlock;
      const int cnt = static_cast<int>(std::min(kBlock, nrows - r0));
      dense_attention_rows(q, k, nullptr, s, mask, scale, h / s.group(), b, h, &rows[static_cast<size_t>(r0)], cnt,
                           p.data(), nullptr, lse.data());
      for (int r = 0; r < cnt; ++r)
        per_row[static_cast<size_t>(bh * nrows + r0 + r)] =
            row_stats(p.data() + r * s.kv_len, s, mask, b, h, rows[static_cast<size_t>(r0 + r)] + s.q_offset(),
                      opts.window, opts.sink_token, scratch, opts.period);
    }
  }
  for (int bh = 0; bh < heads; ++bh) {
    HeadStats& hs = out[static_cast<size_t>(bh)];
    hs.b = bh / s.q_heads;
    hs.h = bh % s.q_heads;
    for (int64_t r = 0; r < nrows; ++r) {
      const RowStats& rs = per_row[static_cast<size_t>(bh * nrows + r)];
      if (rs.visible == 0) continue;
      ++hs.rows;
      hs.entropy += rs.entropy;
      hs.first_mass += rs.first_mass;
      hs.local_mass += rs.local_mass;
      hs.top1_mass += rs.top1_mass;
      hs.top10_mass += rs.top10_mass;
      hs.slash_mass += rs.slash_mass;
      if (mask.allows(hs.b, hs.h, rows[static_cast<size_t>(r)] + s.q_offset(), opts.sink_token)) {
        ++hs.alpha_rows;
        hs.alpha += rs.first_mass;
      }
    }
    if (hs.rows > 0) {
      const double n = static_cast<double>(hs.rows);
      hs.entropy /= n;
      hs.first_mass /= n;
      hs.local_mass /= n;
      hs.top1_mass /= n;
      hs.top10_mass /= n;
      hs.slash_mass /= n;
    }
    if (hs.alpha_rows > 0) hs.alpha /= static_cast<double>(hs.alpha_rows);
  }
  return out;
}

double sink_ratio(const std::vector<HeadStats>& heads, double epsilon) {
  if (heads.empty()) return 0;
  int64_t n = 0;
  for (const auto& h : heads) n += h.alpha > epsilon ? 1 : 0;
  return 100.0 * static_cast<double>(n) / static_cast<double>(heads.size());
}

}  // namespace ab
