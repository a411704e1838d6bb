// The selection and estimation ops on the CUDA backend (cuda_select_ops.hpp): argument checks
// as the CPU's (src/backends/cpu/cpu_select_ops.cpp, cpu_decode_ops.cpp) for what the host can
// see — the contents of device index buffers (segment bounds, rules, column maps) are read by
// the kernels only, which clamp what the CPU would refuse — and the launches of
// kernels/cuda/selection.
#include "backends/cuda/cuda_select_ops.hpp"

#include <algorithm>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/selection/selection.hpp"

namespace ab::cuda_select {
namespace {

namespace sel = ab::cuda::sel;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

sel::Ten ten(const TensorRef& t) {
  sel::Ten r;
  r.p = t.data;
  r.elem = t.dtype == DType::bf16 ? sel::kBF16 : t.dtype == DType::f16 ? sel::kF16 : sel::kF32;
  r.n0 = t.shape[0];
  r.n1 = t.shape[1];
  r.n2 = t.shape[2];
  r.n3 = t.shape[3];
  return r;
}
float* f32(const TensorRef& t) { return static_cast<float*>(t.data); }

// supports_*: operands that are there must be this backend's memory.
Support operands(const char* op, std::initializer_list<const TensorRef*> ts, std::initializer_list<const IndexBuffer*> bs = {}) {
  for (const TensorRef* t : ts)
    if (t->data && !t->on_device) return Support::no(std::string(op) + ": tensors must be allocated by the cuda backend");
  for (const IndexBuffer* b : bs)
    if (b->data && !b->on_device) return Support::no(std::string(op) + ": index buffers must be made by the cuda backend");
  return Support::yes();
}

[[noreturn]] void fail(const char* op, const std::string& why) { throw std::invalid_argument(std::string(op) + ": " + why); }
void need(bool ok, const char* op, const char* why) {
  if (!ok) fail(op, why);
}
void need_tensor(const TensorRef& t, const char* op, const char* name, const Shape4* shape = nullptr, bool f32_only = false) {
  if (!t.data && t.numel() > 0) fail(op, std::string(name) + " is missing");
  if (t.data && !t.on_device) fail(op, std::string(name) + " is not cuda backend memory");
  if (shape && t.shape != *shape) fail(op, std::string(name) + " has the wrong shape");
  if (f32_only && t.dtype != DType::f32) fail(op, std::string(name) + " must be fp32");
}
void need_buffer(const IndexBuffer& b, const char* op, const char* name, int64_t min_size) {
  if (!b.data) fail(op, std::string(name) + " is missing");
  if (!b.on_device) fail(op, std::string(name) + " is not cuda backend memory");
  if (b.size < min_size) fail(op, std::string(name) + " is too small");
}
void check(cudaError_t e, const char* op) {
  if (e != cudaSuccess) throw std::runtime_error(std::string(op) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}
sel::Csr csr(const CsrOut& c, int64_t lists, const char* op) {
  need_buffer(c.offsets, op, "the output offsets", lists + 1);
  if (c.entries.size > 0) need_buffer(c.entries, op, "the output entries", 0);
  sel::Csr r;
  r.offsets = c.offsets.data;
  r.entries = c.entries.data;
  r.cap = c.entries.size;
  return r;
}
bool grid_ok(int64_t n) { return n >= 0 && n < (int64_t(1) << 31); }
bool grid_yz_ok(int64_t n) { return n >= 0 && n <= 65535; }

}  // namespace

// ---- pool ----

Support supports_pool(const PoolArgs& a) { return operands("cuda pool", {&a.in, &a.out}, {&a.bounds, &a.col_limits}); }

void pool(const PoolArgs& a, cudaStream_t s) {
  const char* op = "cuda pool";
  need_tensor(a.in, op, "in");
  const Shape4& i = a.in.shape;
  const Shape4& o = a.out.shape;
  need_tensor(a.out, op, "out", nullptr, true);
  need(grid_yz_ok(i[0] * i[1]) && grid_yz_ok(i[0] * o[1]), op, "batch × heads exceeds 65535");
  if (a.axis == PoolAxis::window_contrast) {
    need(a.block >= 1, op, "block must be >= 1");
    need(o == Shape4{i[0], i[1], i[2], 1}, op, "out must be (B, H, N, 1)");
    sel::WindowContrastP p;
    p.in = ten(a.in);
    p.out = f32(a.out);
    p.block = a.block;
    check(sel::window_contrast(p, s), op);
    return;
  }
  if (a.axis == PoolAxis::heads) {
    need(a.how == Reduce::mean || a.how == Reduce::max, op, "heads pool: mean or max");
    need(a.group >= 1 && a.row_stride >= 1, op, "group and row_stride must be >= 1");
    need(i[1] > 0 && (o[1] * a.group) % i[1] == 0, op, "the input heads must divide out heads × group");
    need(o == Shape4{i[0], o[1], ceil_div(i[2], a.row_stride), i[3]}, op, "out must be (B, Hout, ceil(N / row_stride), D)");
    sel::PoolHeadsP p;
    p.in = ten(a.in);
    p.out = f32(a.out);
    p.hout = o[1];
    p.rows = o[2];
    p.group = a.group;
    p.row_stride = a.row_stride;
    p.max = a.how == Reduce::max;
    check(sel::pool_heads(p, s), op);
    return;
  }
  if (a.bounds.present()) {
    need_buffer(a.bounds, op, "bounds", o[2] + 1);
    need(a.bounds.size == o[2] + 1, op, "bounds must hold out rows + 1 entries");
  } else {
    need(a.block >= 1, op, "block must be >= 1");
    const int64_t end = a.rows_end > 0 ? std::min(a.rows_end, i[2]) : i[2];
    need(o[2] == ceil_div(end, a.block), op, "out must hold ceil(rows_end / block) rows");
  }
  need(o[0] == i[0] && o[1] == i[1] && o[3] == i[3], op, "out must be (B, H, segments, D)");
  need(!a.f64_sum || a.how == Reduce::mean, op, "f64_sum is for the mean");
  need(o[2] < (int64_t(1) << 31), op, "too many segments");
  if (a.how == Reduce::normalized_sum) need_buffer(a.col_limits, op, "col_limits", o[2]);
  sel::PoolRowsP p;
  p.in = ten(a.in);
  p.out = f32(a.out);
  p.segs = o[2];
  p.block = a.block;
  p.rows_end = a.rows_end;
  p.bounds = a.bounds.present() ? a.bounds.data : nullptr;
  p.col_limits = a.how == Reduce::normalized_sum ? a.col_limits.data : nullptr;
  p.how = a.how == Reduce::mean ? 0 : a.how == Reduce::max ? 1 : a.how == Reduce::sum ? 2 : 3;
  p.f64_sum = a.f64_sum;
  p.sqrt_len = a.sqrt_len;
  check(sel::pool_rows(p, s), op);
}

// ---- project ----

Support supports_project(const ProjectArgs& a) {
  return operands("cuda project", {&a.x, &a.proj, &a.out}, {&a.code, &a.codes});
}

void project(const ProjectArgs& a, cudaStream_t s, const ScratchFn& scratch) {
  const char* op = "cuda project";
  need_tensor(a.x, op, "x");
  need_tensor(a.proj, op, "proj");
  const Shape4& x = a.x.shape;
  const Shape4& pr = a.proj.shape;
  need(x[0] * x[1] <= 65535, op, "batch × heads exceeds 65535");
  if (a.epilogue == ProjectEpilogue::favor) {
    need(pr[0] == 1 && pr[1] == 1 && pr[3] == x[3], op, "proj must be (1, 1, F, D)");
    const Shape4 want{x[0], x[1], x[2], pr[2]};
    need_tensor(a.out, op, "out", &want, true);
    sel::FavorP p;
    p.x = ten(a.x);
    p.proj = ten(a.proj);
    p.out = f32(a.out);
    p.xs = a.xs;
    p.row_stab = a.row_stab;
    if (!a.row_stab) p.slice_max = static_cast<uint32_t*>(scratch(size_t(std::max<int64_t>(x[0] * x[1], 1)) * 4));
    check(sel::project_favor(p, s), op);
    return;
  }
  need(pr[0] == 1 && pr[1] == 1 && pr[2] == x[3] && pr[3] >= 1 && pr[3] <= 30, op, "proj must be (1, 1, D, F), F in [1, 30]");
  need_buffer(a.code, op, "code", int64_t(1) << pr[3]);
  need(a.code.size == (int64_t(1) << pr[3]), op, "code must hold 2^F entries");
  need_buffer(a.codes, op, "codes", x[0] * x[1] * x[2]);
  sel::SignCodeP p;
  p.x = ten(a.x);
  p.proj = ten(a.proj);
  p.code = a.code.data;
  p.codes = a.codes.data;
  check(sel::project_sign_code(p, s), op);
}

// ---- scores ----

Support supports_scores(const ScoresArgs& a) {
  return operands("cuda scores", {&a.q, &a.k, &a.out, &a.thr}, {&a.lists.offsets, &a.lists.entries, &a.col_limits});
}

void scores(const ScoresArgs& a, cudaStream_t s) {
  const char* op = "cuda scores";
  need_tensor(a.q, op, "q");
  need_tensor(a.k, op, "k");
  const Shape4& q = a.q.shape;
  const Shape4& k = a.k.shape;
  need(q[0] == k[0] && q[3] == k[3], op, "q and k must share batch and head_dim");
  need(k[1] > 0 && q[1] % k[1] == 0, op, "the key heads must divide the query heads");
  need(a.row_stride >= 1, op, "row_stride must be >= 1");
  need(q[0] * q[1] <= 65535, op, "batch × heads exceeds 65535");
  const int64_t nr_all = q[2];
  const int64_t row_end = a.row_end > 0 ? a.row_end : nr_all;
  const int64_t positions = a.positions > 0 ? a.positions : nr_all;
  const int64_t n_keys = a.n_keys > 0 ? a.n_keys : k[2];
  need(a.row_begin >= 0 && a.row_begin <= row_end && row_end <= nr_all, op, "bad row range");
  need(n_keys <= k[2], op, "n_keys exceeds the keys");
  need(a.scale > 0 || a.scale < 0, op, "scale must be set");
  const int64_t nr = row_end - a.row_begin;
  auto pos = [&](int64_t r) { return std::min(positions - 1, r * a.row_stride + a.row_stride - 1); };
  sel::ScoresP p;
  p.q = ten(a.q);
  p.k = ten(a.k);
  p.out = static_cast<float*>(a.out.data);
  p.out_rows = a.out.shape[2];
  p.scale = a.scale;
  p.n_keys = n_keys;
  p.row_begin = a.row_begin;
  p.row_end = row_end;
  p.positions = positions;
  p.row_stride = a.row_stride;
  p.q_offset = a.q_offset;
  p.causal = a.causal;
  switch (a.epilogue) {
    case ScoresEpilogue::raw: {
      const Shape4 want{q[0], q[1], nr, n_keys};
      need_tensor(a.out, op, "out", &want, true);
      need(grid_yz_ok(ceil_div(n_keys, 64)), op, "too many keys for the raw tile grid");
      p.epilogue = 0;
      break;
    }
    case ScoresEpilogue::probs_head_mean: {
      need(a.head_group >= 1 && q[1] % a.head_group == 0, op, "head_group must divide the query heads");
      const Shape4 want{q[0], q[1] / a.head_group, nr, n_keys};
      need_tensor(a.out, op, "out", &want, true);
      p.epilogue = 1;
      p.head_group = a.head_group;
      break;
    }
    case ScoresEpilogue::probs_block_pool: {
      need(a.key_block >= 1 && a.row_block >= 1, op, "key_block and row_block must be >= 1");
      need(nr == 0 || (pos(a.row_begin) / a.row_block >= a.group_base &&
                       pos(row_end - 1) / a.row_block - a.group_base < a.out.shape[2]),
           op, "a scored row's group falls outside out");
      const Shape4 want{q[0], q[1], a.out.shape[2], ceil_div(n_keys, a.key_block)};
      need_tensor(a.out, op, "out", &want, true);
      need(grid_ok(a.out.shape[2]), op, "too many row groups");
      p.epilogue = 2;
      p.key_block = a.key_block;
      p.row_block = a.row_block;
      p.group_base = a.group_base;
      p.key_max = a.key_pool != Reduce::mean;
      p.row_max = a.row_reduce != Reduce::mean;
      break;
    }
    case ScoresEpilogue::keys_reaching: {
      need(a.row_group >= 1, op, "row_group must be >= 1");
      need(a.key_begin >= 0, op, "key_begin must be >= 0");
      const Shape4 want{q[0], q[1], q[2], 1};
      need_tensor(a.thr, op, "thr", &want);
      const int64_t n_groups = ceil_div(q[2], a.row_group);
      need(grid_ok(n_groups), op, "too many row groups");
      p.epilogue = 3;
      p.thr = ten(a.thr);
      p.row_group = a.row_group;
      p.key_begin = a.key_begin;
      p.keys_per_group = a.keys_per_group;
      p.thr_offset = a.thr_offset;
      p.partial_keeps_all = a.partial_keeps_all;
      p.lists = csr(a.lists, q[0] * q[1] * n_groups, op);
      break;
    }
    case ScoresEpilogue::raw_normalized_sum: {
      need(a.row_group >= 1, op, "row_group must be >= 1");
      const int64_t n_groups = ceil_div(nr, a.row_group);
      need_buffer(a.col_limits, op, "col_limits", n_groups);
      need(a.col_limits.size == n_groups, op, "raw_normalized_sum needs a column limit per row group");
      const Shape4 want{q[0], q[1], n_groups, n_keys};
      need_tensor(a.out, op, "out", &want, true);
      need(grid_ok(n_groups), op, "too many row groups");
      p.epilogue = 4;
      p.row_group = a.row_group;
      p.col_limits = a.col_limits.data;
      break;
    }
  }
  check(sel::scores(p, s), op);
}

// ---- select ----

Support supports_select(const SelectArgs& a) {
  return operands("cuda select", {&a.scores}, {&a.col_map, &a.rules, &a.lists.offsets, &a.lists.entries});
}

void select(const SelectArgs& a, cudaStream_t s, const ScratchFn& scratch) {
  const char* op = "cuda select";
  need_tensor(a.scores, op, "scores");
  const Shape4& sc = a.scores.shape;
  need(a.batch == sc[0], op, "scores must have the lists' batch");
  need(a.list_heads >= 1 && sc[1] >= 1 && a.list_heads % sc[1] == 0, op, "the score heads must divide list_heads");
  need(a.n_per >= 1 && (a.rules.present() || sc[2] == 1 || sc[2] >= a.n_per), op,
       "scores need one row per list index (or one shared)");
  need(a.col_map_stride >= 0, op, "col_map_stride must be >= 0");
  if (a.col_map.present()) {
    need_buffer(a.col_map, op, "col_map", a.col_map_stride > 0 ? a.batch * a.col_map_stride : 0);
  }
  const int64_t n_lists = a.n_lists();
  need(grid_ok(n_lists), op, "too many lists");
  if (a.rules.present()) {
    need_buffer(a.rules, op, "rules", n_lists * kSelectRuleInts);
    need(a.rules.size == n_lists * kSelectRuleInts, op, "rules must hold 8 entries per list");
  }
  need(a.expand_width >= 0 && (a.expand_width == 0 || a.expand_n >= 0), op, "bad expansion");
  sel::SelectP p;
  p.scores = ten(a.scores);
  p.batch = a.batch;
  p.list_heads = a.list_heads;
  p.n_per = a.n_per;
  p.col_map = a.col_map.present() ? a.col_map.data : nullptr;
  p.col_map_stride = a.col_map_stride;
  p.map_len = a.col_map_stride > 0 ? a.col_map_stride : a.col_map.size;
  p.rules = a.rules.present() ? a.rules.data : nullptr;
  p.k = a.k;
  p.gamma = a.gamma;
  p.cumulative = a.rule == SelectRule::cumulative_mass;
  p.mask_forced = a.mask_forced;
  p.expand_width = a.expand_width;
  p.expand_n = a.expand_n;
  p.lists = csr(a.lists, n_lists, op);
  p.scratch = static_cast<uint32_t*>(scratch(sel::select_scratch_bytes(p)));
  check(sel::select(p, s), op);
}

// ---- lse_merge ----

Support supports_lse_merge(const LseMergeArgs& a) {
  return operands("cuda lse_merge", {&a.o, &a.lse, &a.o2, &a.lse2, &a.row_offset});
}

void lse_merge(const LseMergeArgs& a, cudaStream_t s) {
  const char* op = "cuda lse_merge";
  const Shape4 o = a.o.shape;
  const Shape4 l{o[0], o[1], o[2], 1};
  need_tensor(a.o, op, "o");
  need_tensor(a.lse, op, "lse", &l, true);
  need_tensor(a.o2, op, "o2", &o);
  need_tensor(a.lse2, op, "lse2", &l, true);
  if (a.row_offset.data) {
    const Shape4 r{1, 1, o[2], 1};
    need_tensor(a.row_offset, op, "row_offset", &r, true);
  }
  sel::LseMergeP p;
  p.o = ten(a.o);
  p.o2 = ten(a.o2);
  p.lse = f32(a.lse);
  p.lse2 = f32(a.lse2);
  p.row_offset = a.row_offset.data ? f32(a.row_offset) : nullptr;
  p.offset = a.offset;
  check(sel::lse_merge(p, s), op);
}

// ---- int4 ----

namespace {
// The default Int4Tensor of Backend::alloc_int4: values (B, H, N, ceil(D / 4)) words.
sel::Int4P int4(const Int4Tensor& t, const Shape4& x, const char* op, const char* name) {
  if (!t.values.data || !t.values.on_device || !t.scales.on_device)
    fail(op, std::string(name) + " must be made by the cuda backend's alloc_int4");
  if (t.shape != x) fail(op, std::string(name) + " has the wrong shape");
  if (t.block < 1) fail(op, std::string(name) + ".block must be >= 1");
  if (t.values.shape != Shape4{x[0], x[1], x[2], (x[3] + 3) / 4}) fail(op, std::string(name) + ".values has the wrong layout");
  const Shape4 sc{x[0], x[1], ceil_div(x[2], t.block), 1};
  need_tensor(t.scales, op, name, &sc, true);
  sel::Int4P p;
  p.values = static_cast<int32_t*>(t.values.data);
  p.scales = f32(t.scales);
  p.block = t.block;
  return p;
}
}  // namespace

Support supports_quantize_int4(const QuantizeInt4Args& a) {
  return operands("cuda quantize_int4", {&a.x, &a.center, &a.out.values, &a.out.scales});
}

void quantize_int4(const QuantizeInt4Args& a, cudaStream_t s) {
  const char* op = "cuda quantize_int4";
  need_tensor(a.x, op, "x");
  const Shape4& x = a.x.shape;
  if (a.center.data) {
    const Shape4 c{x[0], x[1], 1, x[3]};
    need_tensor(a.center, op, "center", &c);
  }
  need(x[0] * x[1] <= 65535, op, "batch × heads exceeds 65535");
  sel::QuantizeInt4P p;
  p.x = ten(a.x);
  if (a.center.data) p.center = ten(a.center);
  p.out = int4(a.out, x, op, "out");
  check(sel::quantize_int4(p, s), op);
}

Support supports_int4_block_scan(const Int4BlockScanArgs& a) {
  const Support o = operands("cuda int4_block_scan", {&a.q, &a.k, &a.k_center, &a.q4.values, &a.k4.values},
                             {&a.lists.offsets, &a.lists.entries});
  if (!o.ok) return o;
  if (a.block_q > sel::kInt4MaxBlockQ)
    return Support::no("cuda int4_block_scan: block_q above " + std::to_string(sel::kInt4MaxBlockQ) + " rows");
  if (a.refresh && a.segment > sel::kInt4MaxSegment)
    return Support::no("cuda int4_block_scan: refresh segments above " + std::to_string(sel::kInt4MaxSegment) + " blocks");
  return Support::yes();
}

void int4_block_scan(const Int4BlockScanArgs& a, cudaStream_t s) {
  const char* op = "cuda int4_block_scan";
  if (Support sup = supports_int4_block_scan(a); !sup.ok) fail(op, sup.reason);
  need_tensor(a.q, op, "q");
  need_tensor(a.k, op, "k");
  const Shape4& q = a.q.shape;
  const Shape4& k = a.k.shape;
  need(q[0] == k[0] && q[3] == k[3], op, "q and k must share batch and head_dim");
  need(k[1] > 0 && q[1] % k[1] == 0, op, "the key heads must divide the query heads");
  if (a.k_center.data) {
    const Shape4 c{k[0], k[1], 1, k[3]};
    need_tensor(a.k_center, op, "k_center", &c);
  }
  need(a.block_q >= 1 && a.block_k >= 1 && a.segment >= 1, op, "block_q, block_k and segment must be >= 1");
  need(a.k4.block == a.block_k, op, "k4.block must be block_k");
  need(a.local_window >= 0, op, "local_window must be >= 0");
  need(a.scale > 0 || a.scale < 0, op, "scale must be set");
  const int64_t n_lists = q[0] * q[1] * ceil_div(q[2], a.block_q);
  need(grid_ok(n_lists), op, "too many lists");
  sel::Int4ScanP p;
  p.q = ten(a.q);
  p.k = ten(a.k);
  if (a.k_center.data) p.k_center = ten(a.k_center);
  p.q4 = int4(a.q4, q, op, "q4");
  p.k4 = int4(a.k4, k, op, "k4");
  p.scale = a.scale;
  p.tau = a.tau;
  p.block_q = a.block_q;
  p.block_k = a.block_k;
  p.local_window = a.local_window;
  p.segment = a.segment;
  p.refresh = a.refresh;
  p.q_offset = a.q_offset;
  p.lists = csr(a.lists, n_lists, op);
  check(sel::int4_block_scan(p, s), op);
}

// ---- decode-time ops ----

Support supports_copy_rows(const CopyRowsArgs& a) { return operands("cuda copy_rows", {&a.src, &a.dst}); }

void copy_rows(const CopyRowsArgs& a, cudaStream_t s) {
  const char* op = "cuda copy_rows";
  need_tensor(a.src, op, "src");
  need_tensor(a.dst, op, "dst");
  need(a.src.shape[0] == a.dst.shape[0] && a.src.shape[1] == a.dst.shape[1] && a.src.shape[3] == a.dst.shape[3], op,
       "src and dst differ outside the row axis");
  need(a.rows >= 0 && a.src_row >= 0 && a.dst_row >= 0 && a.src_row + a.rows <= a.src.shape[2] &&
           a.dst_row + a.rows <= a.dst.shape[2],
       op, "rows out of range");
  sel::CopyRowsP p;
  p.src = ten(a.src);
  p.dst = ten(a.dst);
  p.src_row = a.src_row;
  p.dst_row = a.dst_row;
  p.rows = a.rows;
  check(sel::copy_rows(p, s), op);
}

Support supports_block_mean_keys(const BlockMeanKeysArgs& a) { return operands("cuda block_mean_keys", {&a.k, &a.out}); }

void block_mean_keys(const BlockMeanKeysArgs& a, cudaStream_t s) {
  const char* op = "cuda block_mean_keys";
  need_tensor(a.k, op, "k");
  need_tensor(a.out, op, "out");
  need(a.block >= 1, op, "block must be >= 1");
  need(a.k.shape[0] == a.out.shape[0] && a.k.shape[1] == a.out.shape[1] && a.k.shape[3] == a.out.shape[3], op,
       "k and out differ outside the row axis");
  need(a.blocks >= 0 && a.offset >= 0 && a.offset + a.blocks * a.block <= a.k.shape[2] && a.out_row >= 0 &&
           a.out_row + a.blocks <= a.out.shape[2],
       op, "blocks out of range");
  sel::BlockMeanP p;
  p.k = ten(a.k);
  p.out = ten(a.out);
  p.offset = a.offset;
  p.block = a.block;
  p.blocks = a.blocks;
  p.out_row = a.out_row;
  check(sel::block_mean_keys(p, s), op);
}

Support supports_fake_quantize(const FakeQuantizeArgs& a) { return operands("cuda fake_quantize", {&a.x, &a.out}); }

void fake_quantize(const FakeQuantizeArgs& a, cudaStream_t s) {
  const char* op = "cuda fake_quantize";
  need_tensor(a.x, op, "x");
  need_tensor(a.out, op, "out", &a.x.shape);
  need(a.bits >= 2 && a.bits <= 16, op, "bits must be in 2..16");
  sel::FakeQuantP p;
  p.x = ten(a.x);
  p.out = ten(a.out);
  p.bits = a.bits;
  check(sel::fake_quantize(p, s), op);
}

Support supports_decode_scores(const DecodeScoresArgs& a) {
  const Support o = operands("cuda decode_scores", {&a.q, &a.k, &a.v, &a.out});
  if (!o.ok) return o;
  if (a.key_lists.indices && !a.key_lists.on_device)
    return Support::no("cuda decode_scores: key lists must come from the cuda backend's upload_indices");
  return Support::yes();
}

void decode_scores(const DecodeScoresArgs& a, cudaStream_t s) {
  const char* op = "cuda decode_scores";
  if (Support sup = supports_decode_scores(a); !sup.ok) fail(op, sup.reason);
  const AttnShape& sh = a.shape;
  need(sh.kv_heads > 0 && sh.q_heads % sh.kv_heads == 0, op, "q_heads must be a multiple of kv_heads");
  need_tensor(a.q, op, "q");
  need_tensor(a.k, op, "k");
  need_tensor(a.out, op, "out", nullptr, true);
  need(a.q.shape[0] == sh.batch && a.q.shape[1] == sh.q_heads && a.q.shape[3] == sh.head_dim, op, "q does not match the shape");
  need(a.k.shape[0] == sh.batch && a.k.shape[1] == sh.kv_heads && a.k.shape[3] == sh.head_dim, op, "k does not match the shape");
  const bool l1 = a.epilogue == DecodeScoreEpilogue::probs_output_l1;
  if (l1) {
    need_tensor(a.v, op, "v");
    need(a.v.shape[0] == sh.batch && a.v.shape[1] == sh.kv_heads && a.v.shape[2] == a.k.shape[2], op, "v does not match k");
  }
  std::vector<sel::DecItem> items(static_cast<size_t>(std::max<int64_t>(a.n_items, 0)));
  for (int64_t i = 0; i < a.n_items; ++i) {
    const DecodeScoreItem& it = a.items[i];
    if (it.b < 0 || it.b >= sh.batch || it.kv_head < 0 || it.kv_head >= sh.kv_heads || it.q_row < 0 || it.q_rows < 1 ||
        it.q_row + it.q_rows > a.q.shape[2] || it.n < 0 || it.k0 < 0 || it.out < 0 || it.out + a.item_size(it) > a.out.numel())
      fail(op, "item " + std::to_string(i) + " is out of range");
    if (a.key_lists.indices ? it.k0 + it.n > a.key_lists.total : it.k0 + it.n > a.k.shape[2])
      fail(op, "item " + std::to_string(i) + "'s keys are out of range");
    sel::DecItem& d = items[size_t(i)];
    d.b = it.b;
    d.kv_head = it.kv_head;
    d.q_row = it.q_row;
    d.k0 = it.k0;
    d.n = it.n;
    d.out = it.out;
    d.q_rows = it.q_rows;
  }
  sel::DecodeScoresP p;
  p.q = ten(a.q);
  p.k = ten(a.k);
  if (l1) p.v = ten(a.v);
  p.out = f32(a.out);
  p.q_heads = sh.q_heads;
  p.kv_heads = sh.kv_heads;
  p.head_dim = sh.head_dim;
  p.scale = a.scale;
  p.group_mean = a.rows == DecodeQueryRows::group_mean;
  p.epilogue = int(a.epilogue);
  p.key_idx = a.key_lists.indices;
  p.items = items.data();
  p.n_items = a.n_items;
  check(sel::decode_scores(p, s), op);
}

}  // namespace ab::cuda_select
