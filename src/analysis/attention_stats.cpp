#include "analysis/attention_stats.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

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

double dense_attention_row(const HostTensor& q, const HostTensor& k, const HostTensor* v,
                           const AttnShape& s, const Mask& m, double scale, int kv_head, int b,
                           int h, int64_t i, double* p, double* o) {
  constexpr double kNegInf = -std::numeric_limits<double>::infinity();
  const int d = s.head_dim;
  const int64_t n = s.kv_len;
  const int64_t qpos = i + s.q_offset();
  const float* qr = q.row(b, h, i);
  // Keys outside [lo, hi) are masked for the structured part of every mask: skip them whole.
  const int64_t hi = m.causal ? std::min<int64_t>(n, qpos + 1) : n;
  const bool plain = !m.extra && m.window <= 0;
  double mx = kNegInf;
  for (int64_t j = 0; j < n; ++j) {
    if (j >= hi || (!plain && !m.allows(b, h, qpos, j))) {
      p[j] = kNegInf;
      continue;
    }
    const float* kr = k.row(b, kv_head, j);
    double dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int c = 0; c < d; ++c) dot += static_cast<double>(qr[c]) * static_cast<double>(kr[c]);
    p[j] = dot * scale;
    mx = std::max(mx, p[j]);
  }
  if (o)
    for (int c = 0; c < s.v_dim; ++c) o[c] = 0;
  if (mx == kNegInf) {
    std::fill(p, p + n, 0.0);
    return kNegInf;
  }
  double sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    p[j] = p[j] == kNegInf ? 0.0 : std::exp(p[j] - mx);
    sum += p[j];
  }
  const double inv = 1.0 / sum;
  for (int64_t j = 0; j < n; ++j) p[j] *= inv;
  if (o && v) {
    const int dv = s.v_dim;
    for (int64_t j = 0; j < n; ++j) {
      const double pj = p[j];
      if (pj == 0.0) continue;
      const float* vr = v->row(b, kv_head, j);
#pragma omp simd
      for (int c = 0; c < dv; ++c) o[c] += pj * static_cast<double>(vr[c]);
    }
  }
  return mx + std::log(sum);
}

RowStats row_stats(const double* p, const AttnShape& s, const Mask& m, int b, int h, int64_t qpos,
                   int64_t window, int64_t sink_token, std::vector<double>& scratch) {
  RowStats r;
  scratch.clear();
  for (int64_t j = 0; j < s.kv_len; ++j) {
    if (!m.allows(b, h, qpos, j)) continue;
    const double pj = p[j];
    scratch.push_back(pj);
    if (pj > 0) r.entropy -= pj * std::log(pj);
    if (std::abs(qpos - j) < window) r.local_mass += pj;
  }
  r.visible = static_cast<int64_t>(scratch.size());
  if (sink_token >= 0 && sink_token < s.kv_len) r.first_mass = p[sink_token];
  if (r.visible == 0) return r;
  auto top_mass = [&](double frac) {
    const int64_t kk = std::clamp<int64_t>(static_cast<int64_t>(std::ceil(frac * r.visible)), 1, r.visible);
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
#pragma omp parallel
  {
    std::vector<double> p(static_cast<size_t>(s.kv_len)), scratch;
#pragma omp for schedule(dynamic, 4)
    for (int64_t t = 0; t < heads * nrows; ++t) {
      const int bh = static_cast<int>(t / nrows);
      const int b = bh / s.q_heads, h = bh % s.q_heads;
      const int64_t i = rows[static_cast<size_t>(t % nrows)];
      dense_attention_row(q, k, nullptr, s, mask, scale, h / s.group(), b, h, i, p.data(), nullptr);
      per_row[static_cast<size_t>(t)] =
          row_stats(p.data(), s, mask, b, h, i + s.q_offset(), opts.window, opts.sink_token, scratch);
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
