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

namespace {

SparsePrefillArgs input_args(const Inputs& in) {
  SparsePrefillArgs a;
  a.shape = in.shape;
  a.q = in.q;
  a.k = in.k;
  a.v = in.v;
  a.scale = in.scale;
  return a;
}

}  // namespace

SparsePrefillArgs SparsePrefillVariant::op_args(const Inputs& in, const HostIndexLists& lists, const CsrOut& device) {
  SparsePrefillArgs a = input_args(in);
  a.layout = SparseLayout::key_indices;
  a.indices = lists.view();
  if (device.offsets.present()) {
    a.indices.offsets = device.offsets.data;
    a.indices.indices = device.entries.data;
    a.indices.on_device = device.offsets.on_device;
  }
  return a;
}

SparsePrefillArgs SparsePrefillVariant::op_args(const Inputs& in, const HostBlockLists& lists, const CsrOut& device) {
  SparsePrefillArgs a = input_args(in);
  a.layout = SparseLayout::key_blocks;
  a.blocks = lists.view();
  if (device.offsets.present()) {
    a.blocks.offsets = device.offsets.data;
    a.blocks.blocks = device.entries.data;
    a.blocks.on_device = device.offsets.on_device;
  }
  return a;
}

void SparsePrefillVariant::run_op(const Inputs& in, const HostIndexLists& lists, Outputs& out, Backend& be,
                                  const SoftmaxState* resume, const CsrOut& device) {
  SparsePrefillArgs a = op_args(in, lists, device);
  if (resume) a.state_in = *resume;
  a.o = out.o;
  a.lse = out.lse;
  be.sparse_prefill(a);
}

void SparsePrefillVariant::run_op(const Inputs& in, const HostBlockLists& lists, Outputs& out, Backend& be,
                                  const CsrOut& device) {
  SparsePrefillArgs a = op_args(in, lists, device);
  a.o = out.o;
  a.lse = out.lse;
  be.sparse_prefill(a);
}

void SparsePrefillVariant::run(const Inputs& in, const Plan& plan, Outputs& out, Backend& be) {
  const auto* st = static_cast<const SparsePlanBase*>(plan.state.get());
  if (const auto* p = dynamic_cast<const IndexListsPlan*>(st)) return run_op(in, *p->lists, out, be, nullptr, p->device);
  if (const auto* p = dynamic_cast<const BlockListsPlan*>(st)) return run_op(in, *p->lists, out, be, p->device);
  throw std::logic_error("sparse prefill: the plan was not made by this variant");
}

CsrOut SparsePrefillVariant::alloc_lists(Backend& be, int64_t lists, int64_t capacity) {
  CsrOut c;
  c.offsets = be.alloc_indices(lists + 1);
  c.entries = be.alloc_indices(std::max<int64_t>(capacity, 1));
  return c;
}

void SparsePrefillVariant::download_lists(Backend& be, const CsrOut& c, int64_t lists, std::vector<int32_t>& offsets,
                                          std::vector<int32_t>& entries) {
  offsets = be.download_index_buffer(c.offsets, lists + 1);
  entries = be.download_index_buffer(c.entries, offsets.back());
}

CsrOut SparsePrefillVariant::upload_lists(Backend& be, const std::vector<int32_t>& offsets,
                                          const std::vector<int32_t>& entries) {
  CsrOut c;
  c.offsets = be.alloc_indices(int64_t(offsets.size()));
  c.entries = be.alloc_indices(std::max<int64_t>(int64_t(entries.size()), 1));
  be.upload_index_buffer(offsets, c.offsets);
  be.upload_index_buffer(entries, c.entries);
  return c;
}

void SparsePrefillVariant::free_lists(Backend& be, const CsrOut& c) {
  if (c.offsets.present()) be.free_indices(c.offsets);
  if (c.entries.present()) be.free_indices(c.entries);
}

CsrOut SparsePrefillVariant::keep_on_device(Backend& be, const CsrOut& c) {
  if (c.offsets.on_device || c.entries.on_device) return c;
  be.free_indices(c.offsets);
  be.free_indices(c.entries);
  return {};
}

double SparsePrefillVariant::executed_pairs(const Inputs& in, const HostIndexLists& lists, const Backend& be) {
  if (const std::optional<double> p = be.sparse_prefill_executed_pairs(op_args(in, lists))) return *p;
  return selected_pairs(lists, in.shape);
}

double SparsePrefillVariant::executed_pairs(const Inputs& in, const HostBlockLists& lists, const Backend& be) {
  if (const std::optional<double> p = be.sparse_prefill_executed_pairs(op_args(in, lists))) return *p;
  return selected_pairs(lists, in.shape);
}

namespace {

template <class Sel, class Lists>
Plan make_selection_plan(const AttnShape& s, std::shared_ptr<const Lists> lists, double estimation_flops) {
  Plan p;
  p.density = selected_pairs(*lists, s) / (s.allowed_pairs() * s.batch * s.q_heads);
  p.selection = std::make_shared<Sel>(s, std::move(lists));
  p.estimation_flops = estimation_flops;
  return p;
}

}  // namespace

Plan SparsePrefillVariant::selection_plan(const AttnShape& s, std::shared_ptr<const HostIndexLists> sel,
                                          double estimation_flops, std::shared_ptr<SparsePlanBase> st) {
  Plan p = make_selection_plan<TokenSelection>(s, std::move(sel), estimation_flops);
  set_state(p, std::move(st));
  return p;
}

Plan SparsePrefillVariant::selection_plan(const AttnShape& s, std::shared_ptr<const HostBlockLists> sel,
                                          double estimation_flops, std::shared_ptr<SparsePlanBase> st) {
  Plan p = make_selection_plan<BlockSelection>(s, std::move(sel), estimation_flops);
  set_state(p, std::move(st));
  return p;
}

std::shared_ptr<HostBlockLists> block_lists(int64_t q_block, int64_t k_block, int list_heads,
                                            const std::vector<std::vector<int32_t>>& per_list) {
  auto lists = std::make_shared<HostBlockLists>();
  lists->q_block = q_block;
  lists->k_block = k_block;
  lists->list_heads = list_heads;
  for (const auto& l : per_list) {
    lists->blocks.insert(lists->blocks.end(), l.begin(), l.end());
    lists->offsets.push_back(int32_t(lists->blocks.size()));
  }
  return lists;
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

AttnShape SparsePrefillVariant::prefill_shape(const Problem& p) const {
  require_prefill(p);
  return shape_from_problem(p);
}

void SparsePrefillVariant::require_causal(const AttnShape& s, const std::string& method,
                                          const std::string& section) const {
  if (!s.causal)
    throw InputError(info_.name + ": problem.causal = false: " + method + " is a causal prefill method (docs/variants.md " +
                     section + ")");
}

void SparsePrefillVariant::require_self_attention(const AttnShape& s, const std::string& why) const {
  if (s.q_len != s.kv_len)
    throw InputError(info_.name + ": problem q_len = " + std::to_string(s.q_len) + " != kv_len = " +
                     std::to_string(s.kv_len) + ": " + why);
}

void SparsePrefillVariant::set_state(Plan& plan, std::shared_ptr<SparsePlanBase> st) {
  plan.state = std::static_pointer_cast<void>(std::move(st));
}

}  // namespace ab
