#include "reference/attention_reference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace ab {

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

void sdpa_transformed_reference_row(const SdpaArgs& a, const HostTensor& q, const HostTensor& k,
                                    const HostTensor& v, int b, int h, int64_t i, double* o,
                                    double* lse) {
  const AttnShape& s = a.shape;
  const int kh = a.kv_head_of(h);
  const int64_t qpos = i + s.q_offset();
  const double scale = a.effective_scale();
  std::vector<double> w(size_t(s.kv_len), 0.0);
  std::vector<bool> allowed(size_t(s.kv_len), false);
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < s.kv_len; ++j) {
    if (!a.mask.allows(b, h, qpos, j)) continue;
    allowed[size_t(j)] = true;
    double dot = 0;
    for (int c = 0; c < s.head_dim; ++c) dot += double(q.row(b, h, i)[c]) * k.row(b, kh, j)[c];
    double x = dot * scale;
    switch (a.transform) {
      case ScoreTransform::softmax: break;
      case ScoreTransform::softcap: x = a.softcap * std::tanh(x / a.softcap); break;
      case ScoreTransform::sigmoid: x = 1.0 / (1.0 + std::exp(-(x + a.transform_bias))); break;
      case ScoreTransform::relu: x = std::max(x, 0.0); break;
    }
    w[size_t(j)] = x;
    mx = std::max(mx, x);
  }
  for (int c = 0; c < s.v_dim; ++c) o[c] = 0;
  const bool exp_weights =
      a.transform == ScoreTransform::softmax || a.transform == ScoreTransform::softcap;
  double total = 0;
  for (int64_t j = 0; j < s.kv_len; ++j) {
    if (!allowed[size_t(j)]) continue;
    if (exp_weights) w[size_t(j)] = std::exp(w[size_t(j)] - mx);
    total += w[size_t(j)];
  }
  double div = 1.0;
  if (exp_weights) div = total;
  else if (a.transform_normalize) div = total + 1e-8  /* the kernel's normalisation epsilon (core/ops.hpp) */;
  for (int64_t j = 0; j < s.kv_len; ++j) {
    if (!allowed[size_t(j)] || total == 0) continue;
    for (int c = 0; c < s.v_dim; ++c) o[c] += w[size_t(j)] / div * v.row(b, kh, j)[c];
  }
  if (lse) {
    if (total <= 0) *lse = -std::numeric_limits<double>::infinity();
    else *lse = exp_weights ? mx + std::log(total) : std::log(total);
  }
}

void gather_reference_row(const HostTensor& q, const HostTensor& k, const HostTensor& v,
                          const AttnShape& s, double scale, int kv_head, int b, int h,
                          int64_t i, const std::vector<int64_t>& keys, double* o, double* lse) {
  const int d = s.head_dim, dv = s.v_dim;
  const float* qr = q.row(b, h, i);
  std::vector<double> logit(keys.size());
  double mx = -std::numeric_limits<double>::infinity();
  for (size_t n = 0; n < keys.size(); ++n) {
    const float* kr = k.row(b, kv_head, keys[n]);
    double dot = 0;
    for (int c = 0; c < d; ++c) dot += double(qr[c]) * kr[c];
    logit[n] = dot * scale;
    mx = std::max(mx, logit[n]);
  }
  for (int c = 0; c < dv; ++c) o[c] = 0;
  if (keys.empty()) {
    if (lse) *lse = -std::numeric_limits<double>::infinity();
    return;
  }
  double sum = 0;
  for (double x : logit) sum += std::exp(x - mx);
  const double l = mx + std::log(sum);
  for (size_t n = 0; n < keys.size(); ++n) {
    const double p = std::exp(logit[n] - l);
    const float* vr = v.row(b, kv_head, keys[n]);
    for (int c = 0; c < dv; ++c) o[c] += p * vr[c];
  }
  if (lse) *lse = l;
}

namespace {
// One head's row before any cross-head norm (the per-head norm applied when scope is head).
void linear_row_one_head(const LinearAttnArgs& a, const HostTensor& q,
                                    const HostTensor& k, const HostTensor& v, int b, int h,
                                    int64_t i, double* o) {
  const AttnShape& s = a.shape;
  const int d = s.head_dim, dv = s.v_dim, kh = a.kv_head_of(h);
  const int64_t p = i + a.first_position();
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
  if (a.norm != OutputNorm::none && a.norm_scope == NormScope::head) {
    double mean = 0, sq = 0;
    for (int c = 0; c < dv; ++c) mean += o[c] / dv;
    if (a.norm == OutputNorm::rms) mean = 0;
    for (int c = 0; c < dv; ++c) sq += (o[c] - mean) * (o[c] - mean) / dv;
    const double r = 1.0 / std::sqrt(sq + a.eps);
    for (int c = 0; c < dv; ++c) o[c] = (o[c] - mean) * r;
  }
}
}  // namespace

void linear_attention_reference_row(const LinearAttnArgs& a, const HostTensor& q,
                                    const HostTensor& k, const HostTensor& v, int b, int h,
                                    int64_t i, double* o) {
  if (a.norm == OutputNorm::none || a.norm_scope == NormScope::head) {
    linear_row_one_head(a, q, k, v, b, h, i, o);
    return;
  }
  // Scope heads: every query head's row at (b, i), then one norm over all of them.
  const int hq = a.shape.q_heads, dv = a.shape.v_dim;
  std::vector<double> all(size_t(hq) * size_t(dv));
  for (int g = 0; g < hq; ++g) linear_row_one_head(a, q, k, v, b, g, i, all.data() + size_t(g) * size_t(dv));
  double mean = 0, sq = 0;
  if (a.norm == OutputNorm::layer) {
    for (double x : all) mean += x;
    mean /= double(all.size());
  }
  for (double x : all) sq += (x - mean) * (x - mean);
  const double r = 1.0 / std::sqrt(sq / double(all.size()) + a.eps);
  for (int c = 0; c < dv; ++c) o[c] = (all[size_t(h) * size_t(dv) + size_t(c)] - mean) * r;
}

}  // namespace ab
