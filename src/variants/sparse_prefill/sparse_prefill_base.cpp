#include "variants/sparse_prefill/sparse_prefill_base.hpp"

#include <cmath>
#include <limits>

#include "variants/dense_sdpa_base.hpp"

namespace ab {

HostSoftmaxState::HostSoftmaxState(const AttnShape& s)
    : m(size_t(int64_t(s.batch) * s.q_heads * s.q_len)),
      l(m.size()),
      acc(m.size() * size_t(s.v_dim)),
      row_shape{s.batch, s.q_heads, s.q_len, 1},
      acc_shape{s.batch, s.q_heads, s.q_len, s.v_dim} {}

SoftmaxState HostSoftmaxState::view() const {
  auto ref = [](const std::vector<float>& v, Shape4 sh) {
    TensorRef t;
    t.data = const_cast<float*>(v.data());  // the op writes it through state_out
    t.shape = sh;
    return t;
  };
  return {ref(m, row_shape), ref(l, row_shape), ref(acc, acc_shape)};
}

Support SparsePrefillVariant::supports(const AttnShape& s, const Backend& b) const {
  if (s.mode != Mode::prefill) return Support::no(info_.name + ": prefill only");
  SparsePrefillArgs probe;
  probe.shape = s;
  return b.supports_sparse_prefill(probe);
}

Cost SparsePrefillVariant::cost(const AttnShape& s, const Plan* plan) const {
  Cost c;
  c.dense_equivalent = dense_flops(s, s.allowed_pairs());
  c.bytes_min = dense_bytes_min(s);
  const double per_pair = 2.0 * (s.head_dim + s.v_dim);
  if (plan && plan->state) {
    const auto& st = *static_cast<const SparsePlanBase*>(plan->state.get());
    c.estimation = plan->estimation_flops;
    c.density = plan->density;
    c.executed = c.estimation + per_pair * st.executed_pairs + st.extra_flops;
  } else {
    const StaticEstimate e = static_estimate(s);
    c.estimation = e.estimation_flops;
    c.density = e.density;
    c.executed = c.estimation + c.dense_equivalent * e.density;
  }
  return c;
}

void f64_attention_row(const Inputs& in, int b, int h, int64_t i, const std::vector<int64_t>& keys,
                       double* o, double* lse) {
  const AttnShape& s = in.shape;
  const int kh = h / (s.q_heads / s.kv_heads);
  const double scale = in.effective_scale();
  const float* q = in.host->q.row(b, h, i);
  std::vector<double> logit(keys.size());
  double mx = -std::numeric_limits<double>::infinity();
  for (size_t t = 0; t < keys.size(); ++t) {
    const float* k = in.host->k.row(b, kh, keys[t]);
    double dot = 0;
    for (int c = 0; c < s.head_dim; ++c) dot += double(q[c]) * k[c];
    logit[t] = dot * scale;
    mx = std::max(mx, logit[t]);
  }
  for (int c = 0; c < s.v_dim; ++c) o[c] = 0;
  if (keys.empty()) {  // a row with no key: O = 0, LSE = -inf (as the op writes it)
    if (lse) *lse = -std::numeric_limits<double>::infinity();
    return;
  }
  double sum = 0;
  for (double x : logit) sum += std::exp(x - mx);
  const double l = mx + std::log(sum);
  for (size_t t = 0; t < keys.size(); ++t) {
    const double p = std::exp(logit[t] - l);
    const float* v = in.host->v.row(b, kh, keys[t]);
    for (int c = 0; c < s.v_dim; ++c) o[c] += p * v[c];
  }
  if (lse) *lse = l;
}

void SparsePrefillVariant::reference_row(const Inputs& in, const Plan& plan, int b, int h,
                                         int64_t i, double* o, double* lse) const {
  if (!plan.selection) throw std::logic_error(info_.name + ": reference_row needs a plan");
  std::vector<int64_t> keys;
  plan.selection->keys(b, h, i, keys);
  f64_attention_row(in, b, h, i, keys, o, lse);
}

SparsePrefillArgs SparsePrefillVariant::op_args(const Inputs& in) {
  SparsePrefillArgs a;
  a.shape = in.shape;
  a.q = in.q;
  a.k = in.k;
  a.v = in.v;
  a.scale = in.scale;
  return a;
}

void SparsePrefillVariant::refuse(const std::string& field, const std::string& value,
                                  const std::string& rule) const {
  throw InputError(info_.name + "." + field + " = " + value + ": " + rule);
}

int64_t SparsePrefillVariant::int_param(const std::string& name, int64_t lo, int64_t hi) const {
  const int64_t v = params_.integer(name);
  if (v < lo) refuse(name, std::to_string(v), "must be >= " + std::to_string(lo));
  if (v > hi) refuse(name, std::to_string(v), "must be <= " + std::to_string(hi));
  return v;
}

double SparsePrefillVariant::number_param(const std::string& name, double lo, double hi, bool lo_open) const {
  const double v = params_.number(name);
  const bool low_bad = lo_open ? !(v > lo) : !(v >= lo);
  if (low_bad || !(v <= hi) || !std::isfinite(v)) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g", v);
    char lo_s[32], hi_s[32];
    std::snprintf(lo_s, sizeof lo_s, "%g", lo);
    std::snprintf(hi_s, sizeof hi_s, "%g", hi);
    refuse(name, buf, std::string("must be in ") + (lo_open ? "(" : "[") + lo_s + ", " + hi_s + "]");
  }
  return v;
}

void SparsePrefillVariant::require_prefill(const Problem& p) const {
  if (p.mode != Mode::prefill)
    throw InputError(info_.name + ": problem.mode = decode: this variant is a prefill method");
}

void SparsePrefillVariant::set_state(Plan& plan, std::shared_ptr<SparsePlanBase> st) {
  plan.state = std::static_pointer_cast<void>(std::move(st));
}

}  // namespace ab
