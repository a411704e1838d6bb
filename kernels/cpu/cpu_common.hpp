#pragma once
// Shared by the CPU attention kernels of ops 1–3 (sdpa_flash, sparse_prefill, gather_decode):
// row-major Eigen views, the host-tensor checks, and the online-softmax update of one score
// tile (FlashAttention-2, arXiv 2307.08691, Algorithm 1, lines 8–10).
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include <Eigen/Core>

#include "core/ops.hpp"

namespace ab::cpu {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapRM = Eigen::Map<RowMat>;
using CMapRM = Eigen::Map<const RowMat>;
using MapArr = Eigen::Map<Eigen::ArrayXf>;
inline constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// A tensor of the given shape in host memory.
template <class Fail>
void check_host_tensor(const TensorRef& t, Shape4 shape, const char* name, Fail fail) {
  if (t.on_device) fail(std::string(name) + " is not in host memory");
  if (t.shape != shape) fail(std::string(name) + " has the wrong shape");
  if (!t.data && numel(shape) > 0) fail(std::string(name) + " is null");
}

// Q, K, V of shape s in host memory (positive head counts, kv heads dividing the query heads
// when `grouped`); `fail(why)` throws with the kernel's name.
template <class Fail>
void check_host_qkv(const AttnShape& s, const TensorRef& q, const TensorRef& k, const TensorRef& v,
                    bool grouped, Fail fail) {
  if (s.batch < 0 || s.q_heads <= 0 || s.kv_heads <= 0 || s.head_dim <= 0 || s.v_dim <= 0 ||
      s.q_len < 0 || s.kv_len < 0 || (grouped && s.q_heads % s.kv_heads != 0))
    fail("bad shape");
  check_host_tensor(q, {s.batch, s.q_heads, s.q_len, s.head_dim}, "q", fail);
  check_host_tensor(k, {s.batch, s.kv_heads, s.kv_len, s.head_dim}, "k", fail);
  check_host_tensor(v, {s.batch, s.kv_heads, s.kv_len, s.v_dim}, "v", fail);
}

// O of shape (B, Hq, Nq, Dv) and, when given, LSE of B·Hq·Nq floats, in host memory.
template <class Fail>
void check_host_out(const AttnShape& s, const TensorRef& o, const TensorRef& lse, Fail fail) {
  check_host_tensor(o, {s.batch, s.q_heads, s.q_len, s.v_dim}, "o", fail);
  if (lse.data && (lse.on_device || lse.numel() != int64_t(s.batch) * s.q_heads * s.q_len))
    fail("lse must hold B·Hq·Nq host floats");
}

// One score tile S (rows × nc, row-major, masked entries -inf) into the running state: per
// row, m ← max(m, max S), acc and ℓ rescaled by e^(m_old − m), S ← e^(S − m), ℓ += Σ S. A row
// that has seen nothing yet (m = -inf) keeps P = 0. The caller then adds S·V to acc.
inline void online_softmax_tile(float* s, int64_t rows, int64_t nc, float* m, float* l, MapRM& acc) {
  for (int64_t r = 0; r < rows; ++r) {
    MapArr srow(s + r * nc, nc);
    const float m_new = std::max(m[r], srow.maxCoeff());
    if (m_new == kNegInf) {
      srow.setZero();
      continue;
    }
    srow = (srow - m_new).exp();
    const float alpha = std::exp(m[r] - m_new);
    l[r] = l[r] * alpha + srow.sum();
    if (alpha != 1.0f) acc.row(r) *= alpha;
    m[r] = m_new;
  }
}

}  // namespace ab::cpu
