#include "variants/sparse_decode/sparse_decode_base.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "core/errors.hpp"
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

InputsKey InputsKey::of(const Inputs& in, Backend& be) {
  InputsKey key;
  key.k = in.k.data;
  const AttnShape& s = in.shape;
  key.sample = {float(s.batch), float(s.kv_heads), float(s.kv_len), float(s.steps)};
  if (in.k.numel() == 0) return key;
  // Four rows of every (batch, kv head), spread over the cache.
  const int64_t n = in.k.shape[2];
  TensorRef rows = be.alloc({in.k.shape[0], in.k.shape[1], 4, in.k.shape[3]}, DType::f32);
  for (int64_t e = 0; e < 4; ++e) {
    CopyRowsArgs a;
    a.src = in.k;
    a.dst = rows;
    a.src_row = (e * 7919) % n;
    a.dst_row = e;
    be.copy_rows(a);
  }
  const HostTensor h = be.download(rows);
  be.free(rows);
  for (int64_t e = 0; e < 64; ++e) key.sample.push_back(h.data[size_t((e * 7919) % h.numel())]);
  return key;
}

void append_range(std::vector<int32_t>& out, int64_t a, int64_t b) {
  for (int64_t j = std::max<int64_t>(0, a); j < b; ++j) out.push_back(int32_t(j));
}

void sort_unique(std::vector<int32_t>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

std::vector<float> scores_to_host(Backend& be, DecodeScoresArgs a, const std::vector<DecodeScoreItem>& items) {
  int64_t total = 0;
  for (const auto& it : items) total = std::max(total, it.out + a.item_size(it));
  if (total == 0) return {};
  a.out = be.alloc({1, 1, 1, total}, DType::f32);
  a.items = items.data();
  a.n_items = int64_t(items.size());
  be.decode_scores(a);
  HostTensor h = be.download(a.out);
  be.free(a.out);
  return std::move(h.data);
}

void top_k_host(const float* scores, int64_t n, int64_t k, std::vector<int32_t>& out) {
  out.clear();
  k = std::clamp<int64_t>(k, 0, n);
  if (k == 0) return;
  std::vector<int32_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  auto val = [&](int32_t i) { const float v = scores[i]; return std::isnan(v) ? kNegInf : v; };
  auto before = [&](int32_t a, int32_t b) {
    const float va = val(a), vb = val(b);
    return va > vb || (va == vb && a < b);
  };
  if (k < n) std::nth_element(idx.begin(), idx.begin() + k, idx.end(), before);
  idx.resize(static_cast<size_t>(k));
  std::sort(idx.begin(), idx.end(), before);
  out = std::move(idx);
}

void fake_quantize_row(const float* x, float* out, int64_t n, int bits) {
  float mx = 0;
  for (int64_t c = 0; c < n; ++c) mx = std::max(mx, std::abs(x[c]));
  const float levels = float((1 << (bits - 1)) - 1);
  if (mx == 0) {
    std::fill(out, out + n, 0.0f);
    return;
  }
  const float s = mx / levels;
  for (int64_t c = 0; c < n; ++c) out[c] = std::round(x[c] / s) * s;
}

double cosine_host(const float* a, const float* b, int64_t n) {
  double ab = 0, aa = 0, bb = 0;
  for (int64_t i = 0; i < n; ++i) {
    ab += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  return aa > 0 && bb > 0 ? ab / std::sqrt(aa * bb) : 0.0;
}

HostTensor step_queries(Backend& be, const Inputs& in, int64_t t) {
  const AttnShape& s = in.shape;
  CopyRowsArgs a;
  a.src = in.q;
  a.dst = be.alloc({s.batch, s.q_heads, 1, s.head_dim}, s.dtype);
  a.src_row = t;
  be.copy_rows(a);
  HostTensor h = be.download(a.dst);
  be.free(a.dst);
  return h;
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

TensorRef SparseDecodeVariant::block_means(const Inputs& in, Backend& be, int64_t offset, int64_t block,
                                           int64_t prompt_blocks, int64_t blocks, PromptMeans& cache, Selected& out) {
  const AttnShape& s = in.shape;
  const int d = s.head_dim;
  const InputsKey key = InputsKey::of(in, be);
  if (!(cache.inputs == key) || !cache.means.data) {
    if (cache.means.data) be.free(cache.means);
    cache.means = be.alloc({s.batch, s.kv_heads, std::max<int64_t>(1, prompt_blocks), d}, DType::f32);
    BlockMeanKeysArgs a;
    a.k = in.k;
    a.out = cache.means;
    a.offset = offset;
    a.block = block;
    a.blocks = prompt_blocks;
    be.block_mean_keys(a);
    cache.inputs = key;
  }
  TensorRef means = be.alloc({s.batch, s.kv_heads, std::max<int64_t>(1, blocks), d}, DType::f32);
  if (prompt_blocks > 0) {
    CopyRowsArgs c;
    c.src = cache.means;
    c.dst = means;
    c.rows = prompt_blocks;
    be.copy_rows(c);
  }
  BlockMeanKeysArgs a;
  a.k = in.k;
  a.out = means;
  a.offset = offset + prompt_blocks * block;
  a.block = block;
  a.blocks = blocks - prompt_blocks;
  a.out_row = prompt_blocks;
  be.block_mean_keys(a);
  out.estimation_flops += double(s.batch) * s.kv_heads * double((blocks - prompt_blocks) * block) * d;
  out.estimation_bytes += double(s.batch) * s.kv_heads * double((blocks - prompt_blocks) * block) * d * dtype_bytes(s.dtype);
  out.stats["prefill_pool_flops"] = double(s.batch) * s.kv_heads * double(prompt_blocks * block) * d;
  return means;
}

Support SparseDecodeVariant::probe_block_means(const AttnShape& s, const Backend& b) {
  BlockMeanKeysArgs a;
  a.k.shape = {s.batch, s.kv_heads, s.kv_len, s.head_dim};
  a.out.shape = {s.batch, s.kv_heads, 1, s.head_dim};
  a.blocks = 0;
  Support ok = b.supports_block_mean_keys(a);
  if (!ok.ok) return ok;
  CopyRowsArgs c;
  c.src = a.out;
  c.dst = a.out;
  return b.supports_copy_rows(c);
}

Support SparseDecodeVariant::probe_scores(const AttnShape& s, const Backend& b, DecodeQueryRows rows,
                                          DecodeScoreEpilogue epilogue, bool key_lists) {
  DecodeScoresArgs a;
  a.shape = s;
  a.q.shape = {s.batch, s.q_heads, s.q_len, s.head_dim};
  a.k.shape = {s.batch, s.kv_heads, s.kv_len, s.head_dim};
  a.v.shape = {s.batch, s.kv_heads, s.kv_len, s.v_dim};
  a.out.shape = {1, 1, 1, 1};
  a.rows = rows;
  a.epilogue = epilogue;
  if (key_lists) a.key_lists.lists = 1;  // the call gathers keys by index
  return b.supports_decode_scores(a);
}

namespace {

struct DecodePlanState {
  std::vector<DecodeSource> sources;
  std::vector<std::vector<IndexLists>> lists;  // per source, per step: op 3's lists on the backend
  double estimation_bytes = 0;
};

const DecodePlanState* state_of(const Plan& p) { return static_cast<const DecodePlanState*>(p.state.get()); }

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
  // Every op plan() and run() call, probed with the argument kinds they pass: the selection's
  // scoring ops (the variant's), the step rows' copies, op 3 over lists from upload_indices,
  // and the LSE merge when several key sources are merged.
  const AttnShape one = step_shape(s);
  CopyRowsArgs c;
  c.src.shape = {s.batch, s.q_heads, s.q_len, s.head_dim};
  c.dst.shape = {s.batch, s.q_heads, 1, s.head_dim};
  Support ok = b.supports_copy_rows(c);
  if (!ok.ok) return ok;
  GatherDecodeArgs a;
  a.shape = one;
  a.q.shape = c.dst.shape;
  a.k.shape = {s.batch, s.kv_heads, s.kv_len, s.head_dim};
  a.v.shape = {s.batch, s.kv_heads, s.kv_len, s.v_dim};
  a.o.shape = {s.batch, s.q_heads, 1, s.v_dim};
  a.lse.shape = {s.batch, s.q_heads, 1, 1};
  a.lists.lists = int64_t(s.batch) * s.kv_heads;
  ok = b.supports_gather_decode(a);
  if (!ok.ok) return ok;
  if (max_sources() > 1) {
    LseMergeArgs m;  // empty tensors: probes the op for this backend's memory, not data
    m.o.shape = m.o2.shape = {0, s.q_heads, 1, s.v_dim};
    m.lse.shape = m.lse2.shape = {0, s.q_heads, 1, 1};
    ok = b.supports_lse_merge(m);
    if (!ok.ok) return ok;
  }
  return supports_selection(s, b);
}

Plan SparseDecodeVariant::plan(const Inputs& in, Backend& b) {
  Selected sel = select(in, b);
  auto st = std::make_shared<DecodePlanState>();
  st->sources = sel.sources;
  st->estimation_bytes = sel.estimation_bytes;
  std::vector<std::shared_ptr<const StepKeyLists>> lists;
  double entries = 0;
  for (const auto& src : sel.sources) {
    lists.push_back(src.lists);
    entries += src.lists->entries();
    // Op 3 reads each step's lists where the backend's kernels read them.
    std::vector<IndexLists> steps;
    for (int64_t t = 0; t < src.lists->steps(); ++t) {
      const IndexLists h = src.lists->view(t);
      steps.push_back(b.upload_indices(std::vector<int32_t>(h.offsets, h.offsets + h.lists + 1),
                                       std::vector<int32_t>(h.indices, h.indices + h.total)));
    }
    st->lists.push_back(std::move(steps));
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
  std::vector<TensorRef> o2, lse2;
  for (size_t k = 1; k < ns; ++k) {
    o2.push_back(b.alloc({s.batch, s.q_heads, 1, s.v_dim}, s.dtype));
    lse2.push_back(b.alloc({s.batch, s.q_heads, 1, 1}, DType::f32));
  }
  TensorRef q_alt;
  for (const DecodeSource& src : st->sources)
    if (src.q_dev.data && !q_alt.data) q_alt = b.alloc({s.batch, s.q_heads, 1, s.head_dim}, s.dtype);
  GatherDecodeArgs a;
  a.shape = step_shape(s);
  a.scale = in.scale;
  for (int64_t t = 0; t < s.steps; ++t) {
    rows.load_query(t);
    for (size_t k = 0; k < ns; ++k) {
      const DecodeSource& src = st->sources[k];
      a.q = rows.q();
      if (src.q_dev.data) {  // this source's own (fake-quantised) query row t
        CopyRowsArgs c;
        c.src = src.q_dev;
        c.dst = q_alt;
        c.src_row = t;
        b.copy_rows(c);
        a.q = q_alt;
      }
      a.k = src.k_dev.data ? src.k_dev : in.k;
      a.v = in.v;
      a.o = k == 0 ? rows.o() : o2[k - 1];
      a.lse = k == 0 ? rows.lse() : lse2[k - 1];
      a.lists = st->lists[k][size_t(t)];
      b.gather_decode(a);
    }
    for (size_t k = 1; k < ns; ++k) {
      LseMergeArgs m;
      m.o = rows.o();
      m.lse = rows.lse();
      m.o2 = o2[k - 1];
      m.lse2 = lse2[k - 1];
      b.lse_merge(m);
    }
    rows.store(t);
  }
  rows.finish();
  for (size_t k = 1; k < ns; ++k) {
    b.free(o2[k - 1]);
    b.free(lse2[k - 1]);
  }
  if (q_alt.data) b.free(q_alt);
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
  std::vector<float> qq(size_t(s.head_dim)), kq(size_t(s.head_dim));
  for (const DecodeSource& src : st->sources) {
    const float* qr = in.host->q.row(b, h, i);
    if (src.quant_bits) {
      fake_quantize_row(qr, qq.data(), s.head_dim, src.quant_bits);
      qr = qq.data();
    }
    const int32_t* keys = src.lists->keys(i, r);
    for (int64_t e = 0; e < src.lists->size(i, r); ++e) {
      const float* kr = in.host->k.row(b, kh, keys[e]);
      if (src.quant_bits) {
        fake_quantize_row(kr, kq.data(), s.head_dim, src.quant_bits);
        kr = kq.data();
      }
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
