#include "backends/cpu/cpu_decode_ops.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "cpu/selection.hpp"
#include "cpu/selection_decode.hpp"

namespace ab::cpu_decode {
namespace {

// Appended piece by piece: GCC 12's -Wrestrict misfires on "(" + std::string (PR 105651).
std::string dims(const Shape4& s) {
  std::string out(1, '(');
  for (int i = 0; i < 4; ++i) {
    out += std::to_string(s[size_t(i)]);
    out += i < 3 ? ", " : ")";
  }
  return out;
}

}  // namespace

std::string copy_rows_refusal(const CopyRowsArgs& a) {
  if (a.src.on_device || a.dst.on_device) return "cpu copy_rows: a tensor is on a device";
  if (a.src.shape[0] != a.dst.shape[0] || a.src.shape[1] != a.dst.shape[1] || a.src.shape[3] != a.dst.shape[3])
    return "cpu copy_rows: src " + dims(a.src.shape) + " and dst " + dims(a.dst.shape) + " differ outside the row axis";
  if (a.rows < 0 || a.src_row < 0 || a.dst_row < 0 || a.src_row + a.rows > a.src.shape[2] ||
      a.dst_row + a.rows > a.dst.shape[2])
    return "cpu copy_rows: rows out of range";
  return "";
}

void copy_rows(const CopyRowsArgs& a) {
  const int64_t bh = a.src.shape[0] * a.src.shape[1], c = a.src.shape[3];
  const int64_t ns = a.src.shape[2], nd = a.dst.shape[2];
  const float* src = a.src.host_f32();
  float* dst = a.dst.host_f32();
  for (int64_t r = 0; r < bh; ++r)
    std::memcpy(dst + (r * nd + a.dst_row) * c, src + (r * ns + a.src_row) * c, sizeof(float) * size_t(a.rows * c));
}

std::string block_mean_keys_refusal(const BlockMeanKeysArgs& a) {
  if (a.k.on_device || a.out.on_device) return "cpu block_mean_keys: a tensor is on a device";
  if (a.block < 1) return "cpu block_mean_keys: block must be >= 1";
  if (a.k.shape[0] != a.out.shape[0] || a.k.shape[1] != a.out.shape[1] || a.k.shape[3] != a.out.shape[3])
    return "cpu block_mean_keys: k " + dims(a.k.shape) + " and out " + dims(a.out.shape) + " differ outside the row axis";
  if (a.blocks < 0 || a.offset < 0 || a.offset + a.blocks * a.block > a.k.shape[2] || a.out_row < 0 ||
      a.out_row + a.blocks > a.out.shape[2])
    return "cpu block_mean_keys: blocks out of range";
  return "";
}

void block_mean_keys(const BlockMeanKeysArgs& a) {
  if (a.blocks <= 0) return;
  const int64_t bh = a.k.shape[0] * a.k.shape[1], n = a.k.shape[2], m = a.out.shape[2];
  const int d = int(a.k.shape[3]);
  for (int64_t r = 0; r < bh; ++r)
    cpu::pool_rows(a.k.host_f32() + (r * n + a.offset) * d, a.blocks * a.block, d, a.block, cpu::Pool::mean,
                   a.out.host_f32() + (r * m + a.out_row) * d);
}

std::string fake_quantize_refusal(const FakeQuantizeArgs& a) {
  if (a.x.on_device || a.out.on_device) return "cpu fake_quantize: a tensor is on a device";
  if (a.x.shape != a.out.shape) return "cpu fake_quantize: x " + dims(a.x.shape) + " and out " + dims(a.out.shape) + " differ";
  if (a.bits < 2 || a.bits > 16) return "cpu fake_quantize: bits must be in 2..16";
  return "";
}

void fake_quantize(const FakeQuantizeArgs& a) {
  const int64_t n = a.x.shape[3], rows = n > 0 ? a.x.numel() / n : 0;
  const float levels = float((1 << (a.bits - 1)) - 1);
  const float* x = a.x.host_f32();
  float* out = a.out.host_f32();
#pragma omp parallel for schedule(static) if (rows * n > (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* o = out + r * n;
    float mx = 0;
    for (int64_t c = 0; c < n; ++c) mx = std::max(mx, std::abs(xr[c]));
    if (mx == 0) {
      std::fill(o, o + n, 0.0f);
      continue;
    }
    const float s = mx / levels;
    for (int64_t c = 0; c < n; ++c) o[c] = std::round(xr[c] / s) * s;
  }
}

std::string decode_scores_refusal(const DecodeScoresArgs& a) {
  const AttnShape& s = a.shape;
  if (a.q.on_device || a.k.on_device || a.out.on_device || a.key_lists.on_device)
    return "cpu decode_scores: a tensor or the key lists are on a device";
  if (s.kv_heads <= 0 || s.q_heads % s.kv_heads != 0) return "cpu decode_scores: q_heads must be a multiple of kv_heads";
  if (a.q.shape[0] != s.batch || a.q.shape[1] != s.q_heads || a.q.shape[3] != s.head_dim)
    return "cpu decode_scores: q " + dims(a.q.shape) + " does not match the shape";
  if (a.k.shape[0] != s.batch || a.k.shape[1] != s.kv_heads || a.k.shape[3] != s.head_dim)
    return "cpu decode_scores: k " + dims(a.k.shape) + " does not match the shape";
  if (a.epilogue == DecodeScoreEpilogue::probs_output_l1 &&
      (a.v.on_device || a.v.shape[0] != s.batch || a.v.shape[1] != s.kv_heads || a.v.shape[2] != a.k.shape[2]))
    return "cpu decode_scores: v " + dims(a.v.shape) + " does not match k " + dims(a.k.shape);
  for (int64_t i = 0; i < a.n_items; ++i) {
    const DecodeScoreItem& it = a.items[i];
    if (it.b < 0 || it.b >= s.batch || it.kv_head < 0 || it.kv_head >= s.kv_heads || it.q_row < 0 ||
        it.q_rows < 1 || it.q_row + it.q_rows > a.q.shape[2] || it.n < 0 || it.k0 < 0 || it.out < 0 || it.out + a.item_size(it) > a.out.numel())
      return "cpu decode_scores: item " + std::to_string(i) + " is out of range";
    if (a.key_lists.indices ? it.k0 + it.n > a.key_lists.total : it.k0 + it.n > a.k.shape[2])
      return "cpu decode_scores: item " + std::to_string(i) + "'s keys are out of range";
  }
  return "";
}

// Items run one after another, each kernel threading over its key chunks as the variants'
// loops did (a decode item has a handful of query rows and the whole cache: the keys are the
// parallel axis).
void decode_scores(const DecodeScoresArgs& a) {
  const AttnShape& s = a.shape;
  const int G = a.group(), d = s.head_dim;
  const int64_t nq = a.q.shape[2], nk = a.k.shape[2];
  const float* Q = a.q.host_f32();
  const float* K = a.k.host_f32();
  float* out = a.out.host_f32();
  using E = DecodeScoreEpilogue;
  if (a.epilogue == E::soft_vote)  // every vote segment starts at 0; its items add in order
    for (int64_t i = 0; i < a.n_items; ++i) std::fill_n(out + a.items[i].out, a.items[i].n, 0.0f);
  std::vector<float> qbuf, kbuf, tmp;
  for (int64_t i = 0; i < a.n_items; ++i) {
    const DecodeScoreItem& it = a.items[i];
    const int64_t n = it.n, R = a.query_rows(it), m_rows = it.q_rows;
    qbuf.resize(size_t(R) * d);
    const float* q0 = Q + ((int64_t(it.b) * s.q_heads + int64_t(it.kv_head) * G) * nq + it.q_row) * d;
    if (a.rows == DecodeQueryRows::group) {  // rows (g, m), head-major
      for (int g = 0; g < G; ++g)
        std::copy_n(q0 + int64_t(g) * nq * d, m_rows * d, qbuf.data() + size_t(g) * m_rows * d);
    } else {
      std::fill(qbuf.begin(), qbuf.end(), 0.0f);
      for (int64_t m = 0; m < m_rows; ++m)
        for (int g = 0; g < G; ++g)
          for (int c = 0; c < d; ++c) qbuf[size_t(m * d + c)] += q0[(int64_t(g) * nq + m) * d + c] / float(G);
    }
    const float* kh = K + (int64_t(it.b) * s.kv_heads + it.kv_head) * nk * d;
    const float* kp = kh + it.k0 * d;
    if (a.key_lists.indices && a.epilogue != E::head_max) {
      kbuf.resize(size_t(n) * d);
      const int32_t* idx = a.key_lists.indices + it.k0;
      for (int64_t e = 0; e < n; ++e) std::copy_n(kh + int64_t(idx[e]) * d, d, kbuf.data() + e * d);
      kp = kbuf.data();
    }
    float* o = out + it.out;
    switch (a.epilogue) {
      case E::raw:
        cpu::group_scores(qbuf.data(), R, kp, n, d, a.scale, o);
        break;
      case E::probs:
        cpu::softmax_probs(qbuf.data(), R, nullptr, kp, n, d, a.scale, o);
        break;
      case E::probs_head_sum:
      case E::probs_head_max: {
        tmp.resize(size_t(R) * size_t(n));
        cpu::softmax_probs(qbuf.data(), R, nullptr, kp, n, d, a.scale, tmp.data());
        std::fill_n(o, n, 0.0f);
        const bool mx = a.epilogue == E::probs_head_max;
        for (int64_t g = 0; g < R; ++g)
          for (int64_t j = 0; j < n; ++j) {
            const float p = tmp[size_t(g) * size_t(n) + size_t(j)];
            o[j] = mx ? std::max(o[j], p) : o[j] + p;
          }
        break;
      }
      case E::soft_vote:
        tmp.resize(size_t(R) * size_t(n));
        cpu::group_scores(qbuf.data(), R, kp, n, d, a.scale, tmp.data());
        cpu::soft_vote(tmp.data(), R, n, o);
        break;
      case E::probs_output_l1: {
        cpu::softmax_probs(qbuf.data(), R, nullptr, kp, n, d, a.scale, o);
        const int64_t dv = a.v.shape[3];
        const float* vh = a.v.host_f32() + (int64_t(it.b) * s.kv_heads + it.kv_head) * nk * dv;
        double l1 = 0;
        for (int64_t g = 0; g < R; ++g)
          for (int64_t c = 0; c < dv; ++c) {
            double acc = 0;
            for (int64_t e = 0; e < n; ++e) {
              const int64_t j = a.key_lists.indices ? a.key_lists.indices[it.k0 + e] : it.k0 + e;
              acc += double(o[g * n + e]) * vh[j * dv + c];
            }
            l1 += std::abs(acc);
          }
        o[int64_t(R) * n] = float(l1);
        break;
      }
      case E::head_max:
        std::fill_n(o, n, -std::numeric_limits<float>::infinity());
        if (a.key_lists.indices) {  // scattered keys: one plain dot per (row, key), read in place
          const int32_t* idx = a.key_lists.indices + it.k0;
          for (int64_t e = 0; e < n; ++e) {
            const float* kr = kh + int64_t(idx[e]) * d;
            for (int64_t g = 0; g < R; ++g) {
              float dot = 0;
              for (int c = 0; c < d; ++c) dot += qbuf[size_t(g * d + c)] * kr[c];
              o[e] = std::max(o[e], a.scale * dot);
            }
          }
          break;
        }
        tmp.resize(size_t(R) * size_t(n));
        cpu::group_scores(qbuf.data(), R, kp, n, d, a.scale, tmp.data());
        for (int64_t g = 0; g < R; ++g)
          for (int64_t j = 0; j < n; ++j) o[j] = std::max(o[j], tmp[size_t(g) * size_t(n) + size_t(j)]);
        break;
    }
  }
}

}  // namespace ab::cpu_decode
