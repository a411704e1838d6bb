#include "variants/sparse_decode/sparse_decode_base.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/errors.hpp"
#include "cpu/lse_merge.hpp"
#include "cpu/selection.hpp"
#include "variants/decode_steps.hpp"
#include "variants/dense_sdpa_base.hpp"

namespace ab {

StepKeyLists::StepKeyLists(int64_t steps, int64_t lists)
    : lists_(lists), offsets_(size_t(steps), std::vector<int32_t>{0}), indices_(size_t(steps)) {}

void StepKeyLists::push(int64_t t, const std::vector<int32_t>& keys) {
  auto& idx = indices_[size_t(t)];
  idx.insert(idx.end(), keys.begin(), keys.end());
  offsets_[size_t(t)].push_back(int32_t(idx.size()));
}

IndexLists StepKeyLists::view(int64_t t) const {
  IndexLists l;
  l.offsets = offsets_[size_t(t)].data();
  l.indices = indices_[size_t(t)].data();
  l.lists = int64_t(offsets_[size_t(t)].size()) - 1;
  l.total = int64_t(indices_[size_t(t)].size());
  l.on_device = false;
  return l;
}

double StepKeyLists::entries() const {
  double n = 0;
  for (const auto& v : indices_) n += double(v.size());
  return n;
}

void DecodeTokenSelection::keys(int b, int h, int64_t i, std::vector<int64_t>& out) const {
  out.clear();
  const int64_t r = int64_t(b) * shape_.kv_heads + h / shape_.group();
  const int64_t limit = step_position(shape_, i);
  for (const auto& src : sources_) {
    const int32_t* k = src->keys(i, r);
    for (int64_t e = 0; e < src->size(i, r); ++e)
      if (k[e] <= limit) out.push_back(k[e]);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
}

InputsKey InputsKey::of(const Inputs& in) {
  InputsKey k;
  k.host = in.host.get();
  const HostTensor& K = in.host->k;
  k.sample = {float(in.shape.batch), float(in.shape.kv_heads), float(in.shape.kv_len), float(in.shape.steps)};
  for (int64_t e = 0; e < 64 && K.numel() > 0; ++e) k.sample.push_back(K.data[size_t((e * 7919) % K.numel())]);
  return k;
}

std::vector<std::vector<float>> block_mean_keys(const HostTensor& k, const AttnShape& s, int64_t offset,
                                                int64_t block, int64_t blocks) {
  std::vector<std::vector<float>> means(static_cast<size_t>(int64_t(s.batch) * s.kv_heads));
  for (int b = 0; b < s.batch; ++b)
    for (int kh = 0; kh < s.kv_heads; ++kh) {
      auto& m = means[size_t(b) * s.kv_heads + kh];
      m.resize(size_t(std::max<int64_t>(0, blocks)) * s.head_dim);
      if (blocks > 0) cpu::pool_rows(k.row(b, kh, offset), blocks * block, s.head_dim, block, cpu::Pool::mean, m.data());
    }
  return means;
}

void append_range(std::vector<int32_t>& out, int64_t a, int64_t b) {
  for (int64_t j = std::max<int64_t>(0, a); j < b; ++j) out.push_back(int32_t(j));
}

void sort_unique(std::vector<int32_t>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

void gather_queries(const HostTensor& q, int b, int h0, int n, int64_t t, float* out) {
  const int64_t d = q.shape[3];
  for (int g = 0; g < n; ++g) std::copy_n(q.row(b, h0 + g, t), d, out + size_t(g) * d);
}

void gather_keys(const HostTensor& k, int b, int kh, const int32_t* keys, int64_t n, float* out) {
  const int64_t d = k.shape[3];
  for (int64_t e = 0; e < n; ++e) std::copy_n(k.row(b, kh, keys[e]), d, out + e * d);
}

std::shared_ptr<StepKeyLists> kv_head_lists(const AttnShape& s) {
  return std::make_shared<StepKeyLists>(s.steps, int64_t(s.batch) * s.kv_heads);
}

void SparseDecodeVariant::refuse(const std::string& param, const std::string& value, const std::string& rule) const {
  throw InputError(info_.name + "." + param + " = " + value + ": " + rule);
}

int64_t SparseDecodeVariant::int_at_least(const std::string& name, int64_t lo, const std::string& note) const {
  const int64_t v = params_.integer(name);
  if (v < lo) refuse(name, std::to_string(v), "must be >= " + std::to_string(lo) + note);
  return v;
}

double SparseDecodeVariant::cosine_param(const std::string& name) const {
  const double v = params_.number(name);
  if (!(v >= -1.0 && v <= 1.0)) refuse(name, std::to_string(v), "must be a cosine in [-1, 1]");
  return v;
}

std::vector<std::vector<float>> SparseDecodeVariant::block_means(const Inputs& in, int64_t offset, int64_t block,
                                                                 int64_t prompt_blocks, int64_t blocks,
                                                                 PromptMeans& cache, Selected& out) {
  const AttnShape& s = in.shape;
  const HostTensor& K = in.host->k;
  const int d = s.head_dim;
  if (!(cache.inputs == InputsKey::of(in))) {
    cache.means = block_mean_keys(K, s, offset, block, prompt_blocks);
    cache.inputs = InputsKey::of(in);
  }
  std::vector<std::vector<float>> means = cache.means;
  const auto fresh = block_mean_keys(K, s, offset + prompt_blocks * block, block, blocks - prompt_blocks);
  for (size_t r = 0; r < means.size(); ++r) means[r].insert(means[r].end(), fresh[r].begin(), fresh[r].end());
  out.estimation_flops += double(s.batch) * s.kv_heads * double((blocks - prompt_blocks) * block) * d;
  out.estimation_bytes += double(s.batch) * s.kv_heads * double((blocks - prompt_blocks) * block) * d * dtype_bytes(s.dtype);
  out.stats["prefill_pool_flops"] = double(s.batch) * s.kv_heads * double(prompt_blocks * block) * d;
  return means;
}

namespace {

struct DecodePlanState {
  std::vector<DecodeSource> sources;
  double estimation_bytes = 0;
};

const DecodePlanState* state_of(const Plan& p) { return static_cast<const DecodePlanState*>(p.state.get()); }

TensorRef host_ref(const HostTensor& t) {
  TensorRef r;
  r.data = const_cast<float*>(t.ptr());
  r.shape = t.shape;
  r.dtype = DType::f32;
  return r;
}

}  // namespace

AttnShape SparseDecodeVariant::shape(const Problem& p) const {
  if (p.mode != Mode::decode)
    throw InputError(info().name + ": problem.mode = " + std::string(mode_name(p.mode)) +
                     ": a decode-time selection method runs in mode: decode only");
  AttnShape s = shape_from_problem(p);
  if (s.q_len != s.steps)
    throw InputError(info().name + ": problem.q_len = " + std::to_string(p.q_len) +
                     ": a decode-time selection method takes one query token per step (q_len 1)");
  check(s);
  return s;
}

Support SparseDecodeVariant::supports(const AttnShape& s, const Backend& b) const {
  // The plan's lists stay in host memory and the sources merge by LSE on the host: a backend
  // whose op 3 reads host lists (the CPU) runs it; others answer why not.
  GatherDecodeArgs a;
  a.shape = step_shape(s);
  a.lists.lists = int64_t(s.batch) * s.kv_heads;
  a.lists.on_device = false;
  return b.supports_gather_decode(a);
}

Plan SparseDecodeVariant::plan(const Inputs& in, Backend& b) {
  (void)b;
  Selected sel = select(in);
  auto st = std::make_shared<DecodePlanState>();
  st->sources = sel.sources;
  st->estimation_bytes = sel.estimation_bytes;
  std::vector<std::shared_ptr<const StepKeyLists>> lists;
  double entries = 0;
  for (const auto& src : sel.sources) {
    lists.push_back(src.lists);
    entries += src.lists->entries();
  }
  Plan p;
  p.selection = std::make_shared<DecodeTokenSelection>(in.shape, std::move(lists));
  const double allowed = double(in.shape.batch) * in.shape.kv_heads * in.shape.allowed_pairs();
  p.density = allowed > 0 ? entries / allowed : 1.0;
  p.estimation_flops = sel.estimation_flops;
  p.stats = std::move(sel.stats);
  p.stats["keys_per_step_per_kv_head"] = entries / double(in.shape.steps) / (double(in.shape.batch) * in.shape.kv_heads);
  p.stats["estimation_bytes"] = sel.estimation_bytes;
  p.state = st;
  return p;
}

Cost SparseDecodeVariant::cost(const AttnShape& s, const Plan* plan) const {
  const DecodePlanState* st = plan ? state_of(*plan) : nullptr;
  const double e = dtype_bytes(s.dtype);
  const double lists = double(s.batch) * s.kv_heads;
  double entries = 0, est = 0, est_bytes = 0;
  if (st) {
    for (const auto& src : st->sources) entries += src.lists->entries();
    est = plan->estimation_flops;
    est_bytes = st->estimation_bytes;
  } else {
    for (int64_t t = 0; t < s.steps; ++t) entries += lists * nominal_keys(s, t);
    est = nominal_estimation_flops(s);
  }
  Cost c;
  // Each list entry is one (query row, key) pair for each of the G query heads of its group.
  c.executed = entries * s.group() * 2.0 * (s.head_dim + s.v_dim) + est;
  c.estimation = est;
  c.dense_equivalent = dense_flops(s, s.allowed_pairs());
  const double allowed = lists * s.allowed_pairs();
  c.density = allowed > 0 ? entries / allowed : 1.0;
  // Q once, O and LSE written once, and every step's gathered K and V rows read afresh (a
  // decoder's step reads them again), plus what the estimation reads.
  const double rows = double(s.batch) * s.q_heads * s.q_len;
  c.bytes_min = rows * (s.head_dim + s.v_dim) * e + rows * 4.0 + entries * (s.head_dim + s.v_dim) * e + est_bytes;
  return c;
}

void SparseDecodeVariant::run(const Inputs& in, const Plan& plan, Outputs& out, Backend& b) {
  const DecodePlanState* st = state_of(plan);
  if (!st) throw std::logic_error(info().name + ": run() without a plan");
  const AttnShape& s = in.shape;
  StepRows rows(b, in, out);
  const size_t ns = st->sources.size();
  // Sources after the first write to their own scratch, merged into the first by LSE.
  std::vector<HostTensor> o2, lse2;
  for (size_t k = 1; k < ns; ++k) {
    o2.emplace_back(Shape4{s.batch, s.q_heads, 1, s.v_dim});
    lse2.emplace_back(Shape4{s.batch, s.q_heads, 1, 1});
  }
  HostTensor q_alt({s.batch, s.q_heads, 1, s.head_dim});
  if (ns > 1 && (rows.o().on_device || in.k.on_device))
    throw std::runtime_error(info().name + ": merging key sources needs host tensors");
  GatherDecodeArgs a;
  a.shape = step_shape(s);
  a.scale = in.scale;
  for (int64_t t = 0; t < s.steps; ++t) {
    rows.load_query(t);
    for (size_t k = 0; k < ns; ++k) {
      const DecodeSource& src = st->sources[k];
      a.q = rows.q();
      if (src.q) {  // this source's own (fake-quantised) query row t
        const int64_t d = s.head_dim;
        for (int64_t r = 0; r < int64_t(s.batch) * s.q_heads; ++r)
          std::copy_n(src.q->ptr() + (r * s.q_len + t) * d, d, q_alt.ptr() + r * d);
        a.q = host_ref(q_alt);
      }
      a.k = src.k ? host_ref(*src.k) : in.k;
      a.v = in.v;
      a.o = k == 0 ? rows.o() : host_ref(o2[k - 1]);
      a.lse = k == 0 ? rows.lse() : host_ref(lse2[k - 1]);
      a.lists = src.lists->view(t);
      b.gather_decode(a);
    }
    for (size_t k = 1; k < ns; ++k)
      cpu::lse_merge_into(rows.o().host_f32(), rows.lse().host_f32(), o2[k - 1].ptr(), lse2[k - 1].ptr(),
                          int64_t(s.batch) * s.q_heads, s.v_dim);
    rows.store(t);
  }
  rows.finish();
}

void SparseDecodeVariant::reference_row(const Inputs& in, const Plan& plan, int b, int h, int64_t i,
                                        double* o, double* lse) const {
  const DecodePlanState* st = state_of(plan);
  const AttnShape& s = in.shape;
  const int kh = h / s.group();
  const int64_t r = int64_t(b) * s.kv_heads + kh;
  const double scale = in.effective_scale();
  std::vector<double> logit;
  std::vector<const float*> vrow;
  for (const DecodeSource& src : st->sources) {
    const HostTensor& q = src.q ? *src.q : in.host->q;
    const HostTensor& k = src.k ? *src.k : in.host->k;
    const float* qr = q.row(b, h, i);
    const int32_t* keys = src.lists->keys(i, r);
    for (int64_t e = 0; e < src.lists->size(i, r); ++e) {
      const float* kr = k.row(b, kh, keys[e]);
      double dot = 0;
      for (int c = 0; c < s.head_dim; ++c) dot += double(qr[c]) * kr[c];
      logit.push_back(dot * scale);
      vrow.push_back(in.host->v.row(b, kh, keys[e]));
    }
  }
  for (int c = 0; c < s.v_dim; ++c) o[c] = 0;
  if (logit.empty()) {
    if (lse) *lse = -std::numeric_limits<double>::infinity();
    return;
  }
  const double mx = *std::max_element(logit.begin(), logit.end());
  double sum = 0;
  for (double x : logit) sum += std::exp(x - mx);
  const double l = mx + std::log(sum);
  for (size_t n = 0; n < logit.size(); ++n) {
    const double p = std::exp(logit[n] - l);
    for (int c = 0; c < s.v_dim; ++c) o[c] += p * vrow[n][c];
  }
  if (lse) *lse = l;
}

}  // namespace ab
