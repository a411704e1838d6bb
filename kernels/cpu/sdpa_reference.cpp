#include <cmath>
#include <limits>

#include "cpu/sdpa.hpp"

namespace ab::cpu {

void sdpa_reference_row(const HostTensor& q, const HostTensor& k, const HostTensor& v,
                        const AttnShape& s, const Mask& m, double scale, int kv_head,
                        int b, int h, int64_t i, double* o, double* lse,
                        std::vector<double>* probs) {
  const int d = s.head_dim, dv = s.v_dim;
  const int64_t qpos = i + s.q_offset();
  const float* qr = q.row(b, h, i);
  std::vector<double> logits(static_cast<size_t>(s.kv_len));
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < s.kv_len; ++j) {
    if (!m.allows(b, h, qpos, j)) {
      logits[j] = -std::numeric_limits<double>::infinity();
      continue;
    }
    const float* kr = k.row(b, kv_head, j);
    double dot = 0;
    for (int c = 0; c < d; ++c) dot += static_cast<double>(qr[c]) * kr[c];
    logits[j] = dot * scale;
    mx = std::max(mx, logits[j]);
  }
  for (int c = 0; c < dv; ++c) o[c] = 0;
  if (probs) probs->assign(static_cast<size_t>(s.kv_len), 0.0);
  if (mx == -std::numeric_limits<double>::infinity()) {  // fully masked row: O = 0, LSE = -inf
    if (lse) *lse = mx;
    return;
  }
  double sum = 0;
  for (int64_t j = 0; j < s.kv_len; ++j) sum += std::exp(logits[j] - mx);
  const double l = mx + std::log(sum);
  for (int64_t j = 0; j < s.kv_len; ++j) {
    if (logits[j] == -std::numeric_limits<double>::infinity()) continue;
    const double p = std::exp(logits[j] - l);
    if (probs) (*probs)[j] = p;
    const float* vr = v.row(b, kv_head, j);
    for (int c = 0; c < dv; ++c) o[c] += p * vr[c];
  }
  if (lse) *lse = l;
}

}  // namespace ab::cpu
