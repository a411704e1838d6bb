// DHSA: "Dynamic Hierarchical Sparse Attention", arXiv 2510.24606 — docs/variants.md §18
// (xiongsiheng/DHSA legacy/utils/helper.py: dhsa_sdpa, _obtain_dhsa_mask,
// _select_boundary_candidates, predict_boundaries).
// Keys are segmented into chunks; each chunk is represented by its length-normalised mean key
// (mean over heads and tokens × √length, "avgpool_norm"), each 128-row query block by its
// length-normalised mean query; chunk scores q̄_m·k̄_c are broadcast to the chunk's tokens, and
// each query block keeps a token budget: the most recent allowed keys, the first keys, and the
// top-scored rest. The selection is shared by every head; op 2 gathers the kept keys. The last
// `instruction_tokens` query rows attend densely.
//
// NOT the paper's boundary predictor: DHSA predicts chunk boundaries with a trained 1-D model
// over key features. Without its weights this variant offers two training-free stand-ins
// (docs/variants.md §25), named as such in `list` and in every report's params:
//   chunking = cosine: a boundary after token t scores 1 − cos(mean of the `boundary_window`
//     head-averaged keys ending at t, mean of those starting at t+1); the best (N/block)·
//     chunk_beta candidates are kept greedily with the paper's non-maximum suppression
//     (window nms_window), a boundary forced where the instruction rows start counting as one;
//   chunking = fixed: chunks of block/chunk_beta tokens.
// Where this departs from the reference code, and why: the reference writes the first
// `global_tokens` positions over the lowest slots of the sorted top-k list, which can drop
// selected keys and gather a key twice (counted twice by its SDPA); here the first keys are
// united with the recent ones and the top-scored rest fills the budget, so the budget is exact,
// no key repeats, and the selection grows monotonically with the budget.
// The estimation runs on the backend through the ops of core/ops_select.hpp: the head-averaged
// keys and queries (pool over heads), the boundary scores (pool, window_contrast), the chunk
// and query-block representations (pool over segments and blocks, sqrt_len), their scores
// (scores, raw) and the per-block token budget (select: the recent and first keys as forced
// ranges, the rest top-k over the keys' chunk scores through a column map). The greedy
// boundary choice is sequential and stays on the host, on the downloaded scores. Op 2 reads
// the kept lists where the backend wrote them; their host copy is the plan's selection.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>

#include "variants/sparse_prefill/sparse_prefill_base.hpp"

namespace ab {
namespace {

// Batch b of a backend tensor, as a (1, H, N, D) tensor of its own (contiguous in memory).
TensorRef batch_of(const TensorRef& t, int64_t b) {
  TensorRef v = t;
  v.shape[0] = 1;
  v.data = static_cast<char*>(t.data) + b * (t.bytes() / t.shape[0]);
  return v;
}

struct DhsaPlan : IndexListsPlan {
  std::vector<std::vector<int32_t>> boundaries;  // per batch: chunk starts and N
  // In device memory: per batch entry, its lists, and the groups' query rows (shared).
  std::vector<CsrOut> device;
  IndexBuffer q_offsets, q_rows;
};

// The boundary candidates in score order, best first (ties: lower position; NaN as −inf).
std::vector<int32_t> score_order(const std::vector<float>& score) {
  std::vector<int32_t> idx(score.size());
  std::iota(idx.begin(), idx.end(), 0);
  auto val = [&](int32_t i) {
    const float v = score[size_t(i)];
    return std::isnan(v) ? -std::numeric_limits<float>::infinity() : v;
  };
  std::sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) {
    const float va = val(a), vb = val(b);
    return va > vb || (va == vb && a < b);
  });
  return idx;
}

// Chunk starts, ascending, with 0 and n, from the window-contrast scores of the n keys: the
// best candidates accepted greedily in score order, skipping any within `nms` of an accepted
// one (DHSA's _select_boundary_candidates), until n_chunks are accepted; force > 0 accepts a
// boundary at `force` first (it counts) and ignores candidates after it.
std::vector<int32_t> greedy_boundaries(const std::vector<float>& score, int64_t n_chunks, int64_t nms, int64_t force) {
  const int64_t n = int64_t(score.size());
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  std::vector<int64_t> selected;
  std::vector<char> blocked(static_cast<size_t>(n), 0);
  auto accept = [&](int64_t t) {
    selected.push_back(t);
    for (int64_t u = std::max<int64_t>(0, t - nms); u <= std::min(n - 1, t + nms); ++u) blocked[size_t(u)] = 1;
  };
  if (force > 0) accept(force - 1);  // the boundary after token force − 1
  for (int32_t t : score_order(score)) {
    if (int64_t(selected.size()) >= n_chunks) break;  // the forced boundary counts, as in the code
    if (score[size_t(t)] == kNegInf) break;
    if (force > 0 && t > force - 1) continue;
    if (nms > 0 ? blocked[size_t(t)] : std::find(selected.begin(), selected.end(), t) != selected.end()) continue;
    accept(t);
  }
  std::vector<int32_t> b = {0};
  for (int64_t t : selected) b.push_back(int32_t(t + 1));
  b.push_back(int32_t(n));
  std::sort(b.begin(), b.end());
  b.erase(std::unique(b.begin(), b.end()), b.end());
  return b;
}

class Dhsa final : public SparsePrefillVariant {
 public:
  explicit Dhsa(ParamSet p) : SparsePrefillVariant(std::move(p)) {
    info_.name = "dhsa";
    info_.fidelity = {Fidelity::stand_in, "heuristic chunk boundaries instead of the trained boundary predictor"};
    info_.family = "block-sparse-prefill";
    info_.paper = "DHSA: Dynamic Hierarchical Sparse Attention, arXiv 2510.24606";
    info_.summary = "chunked keys (training-free boundary heuristic in place of the paper's trained "
                    "predictor), length-normalised chunk/query-block scores, per-block token budget "
                    "with local and initial tokens";
    info_.params = {
        {"budget", ParamType::integer, int64_t{2048},
         "keys kept per query block, recent and initial ones included (paper: 2048 LongBench, 1024 NIAH)"},
        {"block", ParamType::integer, int64_t{128}, "query block rows (paper: 128)"},
        {"local_tokens", ParamType::integer, int64_t{128}, "most recent allowed keys always kept (paper: 128)"},
        {"global_tokens", ParamType::integer, int64_t{128}, "first keys always kept (paper: 128)"},
        {"chunking", ParamType::string, std::string("cosine"),
         "boundary rule, training-free stand-ins for the paper's trained predictor: cosine (key "
         "dissimilarity across each position, top candidates with NMS) or fixed (block/chunk_beta tokens)",
         {"cosine", "fixed"}},
        {"chunk_beta", ParamType::integer, int64_t{8}, "chunks per query block: (N/block)·chunk_beta chunks (paper: 8)"},
        {"boundary_window", ParamType::integer, int64_t{4}, "cosine: keys averaged on each side of a candidate (paper: 4)"},
        {"nms_window", ParamType::integer, int64_t{8}, "cosine: candidates closer than this are suppressed (paper: 8)"},
        {"instruction_tokens", ParamType::integer, int64_t{64}, "last query rows computed densely (paper: 64)"},
    };
  }

  AttnShape shape(const Problem& p) const override {
    AttnShape s = prefill_shape(p);
    require_causal(s, "DHSA", "§18");
    require_self_attention(s, "chunks and query blocks share one sequence");
    int_param("budget", 1);
    int_param("block", 1, 1 << 20);
    int_param("local_tokens", 0);
    int_param("global_tokens", 0);
    int_param("chunk_beta", 1, 1 << 16);
    int_param("boundary_window", 1, 1 << 16);
    int_param("nms_window", 0);
    int_param("instruction_tokens", 0);
    return s;
  }

  Support supports(const AttnShape& s, const Backend& b) const override;
  Plan plan(const Inputs& in, Backend& be) override;
  void run(const Inputs& in, const Plan& plan, Outputs& out, Backend& be) override;

 protected:
  StaticEstimate static_estimate(const AttnShape& s) const override {
    const int64_t block = params_.integer("block"), budget = params_.integer("budget");
    double pairs = 0;
    for (int64_t r0 = 0; r0 < s.q_len; r0 += block) {
      const int64_t r1 = std::min(s.q_len, r0 + block);
      for (int64_t i = r0; i < r1; ++i) pairs += double(std::min<int64_t>(i + 1, budget));
    }
    StaticEstimate e;
    e.density = std::min(1.0, pairs / s.allowed_pairs());
    const double n_qb = double((s.q_len + block - 1) / block);
    e.estimation_flops = s.batch * (double(s.q_len) * s.head_dim * (s.q_heads + s.kv_heads) +
                                    2.0 * n_qb * (n_qb * params_.integer("chunk_beta")) * s.head_dim + 2.0 * n_qb * s.kv_len);
    return e;
  }
};

// Every op plan() and run() call, probed with the argument kinds they pass (shapes and flags,
// no data: a backend answers for the memory and the kinds it can run).
Support Dhsa::supports(const AttnShape& s, const Backend& b) const {
  Support ok = SparsePrefillVariant::supports(s, b);
  if (!ok.ok) return ok;
  const int d = s.head_dim;
  auto buffer = [](int64_t n) {  // an index buffer of n entries (no data)
    IndexBuffer x;
    x.size = n;
    return x;
  };
  PoolArgs heads;
  heads.axis = PoolAxis::heads;
  heads.in.shape = {0, s.kv_heads, s.kv_len, d};
  heads.out.shape = {0, 1, s.kv_len, d};
  heads.group = s.kv_heads;
  if (ok = b.supports_pool(heads); !ok.ok) return ok;
  PoolArgs segments;
  segments.axis = PoolAxis::rows;
  segments.in.shape = {0, 1, s.kv_len, d};
  segments.out.shape = {0, 1, 1, d};
  segments.bounds = buffer(2);
  segments.sqrt_len = true;
  if (ok = b.supports_pool(segments); !ok.ok) return ok;
  if (params_.string("chunking") == "cosine") {
    PoolArgs wc;
    wc.axis = PoolAxis::window_contrast;
    wc.block = params_.integer("boundary_window");
    wc.in.shape = {0, 1, s.kv_len, d};
    wc.out.shape = {0, 1, s.kv_len, 1};
    if (ok = b.supports_pool(wc); !ok.ok) return ok;
  }
  ScoresArgs sc;
  sc.epilogue = ScoresEpilogue::raw;
  sc.q.shape = {0, 1, 1, d};
  sc.k.shape = {0, 1, 1, d};
  sc.out.shape = {0, 1, 1, 1};
  sc.scale = 1.0f;
  if (ok = b.supports_scores(sc); !ok.ok) return ok;
  SelectArgs sel;
  sel.scores.shape = {0, 1, 1, 1};
  sel.batch = 0;
  sel.col_map = buffer(s.kv_len);
  sel.rules = buffer(0);
  sel.mask_forced = true;
  sel.lists.offsets = buffer(1);
  sel.lists.entries = buffer(0);
  return b.supports_select(sel);
}

Plan Dhsa::plan(const Inputs& in, Backend& be) {
  const AttnShape& s = in.shape;
  const int d = s.head_dim;
  const int64_t N = s.kv_len;
  const int64_t block = params_.integer("block");
  const int64_t budget = std::min(params_.integer("budget"), N);
  const int64_t local = params_.integer("local_tokens"), global = params_.integer("global_tokens");
  const int64_t beta = params_.integer("chunk_beta");
  const bool cosine = params_.string("chunking") == "cosine";
  const int64_t n_instr = std::min(params_.integer("instruction_tokens"), s.q_len);
  const int64_t n_rows = s.q_len - n_instr;  // rows in query blocks
  const int64_t n_qb = (n_rows + block - 1) / block;
  const int64_t n_groups = n_qb + (n_instr > 0 ? 1 : 0);

  auto st = std::make_shared<DhsaPlan>();
  auto lists = std::make_shared<HostIndexLists>();
  lists->list_heads = 1;
  lists->n_groups = n_groups;
  // The groups' query rows, the same for every batch entry: the blocks, then the instruction
  // rows (every row once, in order).
  std::vector<std::vector<int32_t>> group_rows(static_cast<size_t>(n_groups));
  std::vector<int32_t> q_offsets = {0}, q_rows(static_cast<size_t>(s.q_len));
  std::iota(q_rows.begin(), q_rows.end(), 0);
  for (int64_t g = 0; g < n_groups; ++g) {
    const int64_t r0 = g * block, r1 = g < n_qb ? std::min(n_rows, r0 + block) : s.q_len;
    group_rows[size_t(g)].assign(q_rows.begin() + (g < n_qb ? r0 : n_rows), q_rows.begin() + r1);
    q_offsets.push_back(int32_t(r1));
  }
  // The rules of the select op, the same for every batch entry. Query block m sees keys
  // [0, e); it keeps the `recent` last and the first `global` of them (forced ranges, masked
  // as candidates) and the top-scored rest up to k_total. The instruction rows keep every key.
  std::vector<int32_t> rules(static_cast<size_t>(n_groups * kSelectRuleInts), 0);
  int64_t capacity = 0;
  for (int64_t m = 0; m < n_qb; ++m) {
    const int64_t e = std::min(N, (m + 1) * block);
    const int64_t k_total = std::min(budget, e);
    const int64_t recent = std::min({local, k_total, e});
    const int64_t first = std::min(global, e);
    const int64_t fixed = recent + first - std::max<int64_t>(0, first - (e - recent));
    const int64_t rest = std::max<int64_t>(0, k_total - fixed);
    const int64_t kk = rest > 0 ? std::min(rest, e - fixed) : 0;
    int32_t* r = rules.data() + m * kSelectRuleInts;
    r[0] = int32_t(e);
    r[1] = int32_t(kk);
    r[4] = int32_t(e - recent);
    r[5] = int32_t(e);
    r[6] = 0;
    r[7] = int32_t(first);
    capacity += fixed + kk;
  }
  if (n_instr > 0) {
    int32_t* r = rules.data() + n_qb * kSelectRuleInts;
    r[5] = int32_t(N);
    capacity += N;
  }

  auto upload = [&](const std::vector<int32_t>& v) {
    IndexBuffer x = be.alloc_indices(int64_t(v.size()));
    be.upload_index_buffer(v, x);
    return x;
  };
  const IndexBuffer rules_buf = upload(rules);

  double flops = 0;
  for (int b = 0; b < s.batch; ++b) {
    // Head-averaged keys and queries (DHSA's representations average over heads).
    const TensorRef kb = batch_of(in.k, b), qb = batch_of(in.q, b);
    const TensorRef kf = be.alloc({1, 1, N, d}, DType::f32), qf = be.alloc({1, 1, s.q_len, d}, DType::f32);
    PoolArgs avg;
    avg.axis = PoolAxis::heads;
    avg.in = kb;
    avg.out = kf;
    avg.group = s.kv_heads;
    be.pool(avg);
    avg.in = qb;
    avg.out = qf;
    avg.group = s.q_heads;
    be.pool(avg);
    flops += double(N) * d * s.kv_heads + double(s.q_len) * d * s.q_heads;

    // 1. Boundaries.
    const int64_t n_chunks = std::max<int64_t>(1, (N / block) * beta);
    std::vector<int32_t> bounds;
    if (cosine) {
      PoolArgs wc;
      wc.axis = PoolAxis::window_contrast;
      wc.in = kf;
      wc.out = be.alloc({1, 1, N, 1}, DType::f32);
      wc.block = params_.integer("boundary_window");
      be.pool(wc);
      const HostTensor score = be.download(wc.out);
      be.free(wc.out);
      bounds = greedy_boundaries(score.data, n_chunks, params_.integer("nms_window"),
                                 n_instr > 0 && n_instr < N ? N - n_instr : 0);
      flops += 8.0 * double(N) * d;
    } else {
      const int64_t size = std::max<int64_t>(1, block / beta);
      for (int64_t j = 0; j < N; j += size) bounds.push_back(int32_t(j));
      bounds.push_back(int32_t(N));
    }
    const int64_t nc = int64_t(bounds.size()) - 1;
    // 2–4. Chunk keys k̄_c = mean × √len, query blocks q̄_m = mean × √len, S = q̄ k̄ᵀ.
    PoolArgs chunks;
    chunks.axis = PoolAxis::rows;
    chunks.in = kf;
    chunks.out = be.alloc({1, 1, nc, d}, DType::f32);
    chunks.bounds = upload(bounds);
    chunks.sqrt_len = true;
    be.pool(chunks);
    TensorRef S = be.alloc({1, 1, std::max<int64_t>(n_qb, 1), std::max<int64_t>(nc, 1)}, DType::f32);
    if (n_qb > 0) {
      PoolArgs qblocks;
      qblocks.axis = PoolAxis::rows;
      qblocks.in = qf;
      qblocks.out = be.alloc({1, 1, n_qb, d}, DType::f32);
      qblocks.block = block;
      qblocks.rows_end = n_rows;
      qblocks.sqrt_len = true;
      be.pool(qblocks);
      ScoresArgs sc;
      sc.epilogue = ScoresEpilogue::raw;
      sc.q = qblocks.out;
      sc.k = chunks.out;
      sc.out = S;  // (n_qb, nc)
      sc.scale = 1.0f;
      be.scores(sc);
      be.free(qblocks.out);
    }
    flops += 2.0 * double(n_qb) * double(nc) * d;
    std::vector<int32_t> chunk_of(static_cast<size_t>(N));
    for (int64_t c = 0; c < nc; ++c)
      for (int64_t j = bounds[size_t(c)]; j < bounds[size_t(c + 1)]; ++j) chunk_of[size_t(j)] = int32_t(c);

    // 5–7. Per query block: recent ∪ initial ∪ top-scored rest, `budget` keys in all; a key
    // scores its chunk's S(m, c).
    SelectArgs sel;
    sel.scores = S;
    sel.batch = 1;
    sel.list_heads = 1;
    sel.n_per = n_groups;
    sel.col_map = upload(chunk_of);
    sel.rules = rules_buf;
    sel.mask_forced = true;
    sel.lists.offsets = be.alloc_indices(n_groups + 1);
    sel.lists.entries = be.alloc_indices(capacity);
    be.select(sel);
    flops += 2.0 * double(n_qb) * double(N);
    for (const TensorRef& t : {kf, qf, chunks.out, S}) be.free(t);
    be.free_indices(chunks.bounds);
    be.free_indices(sel.col_map);

    // The host copy: the plan's selection.
    const std::vector<int32_t> off = be.download_index_buffer(sel.lists.offsets, n_groups + 1);
    const std::vector<int32_t> keys = be.download_index_buffer(sel.lists.entries, off.back());
    if (const CsrOut kept = keep_on_device(be, sel.lists); kept.offsets.present()) st->device.push_back(kept);
    for (int64_t g = 0; g < n_groups; ++g) {
      lists->push_group_rows(group_rows[size_t(g)]);
      lists->push_list(std::vector<int32_t>(keys.begin() + off[size_t(g)], keys.begin() + off[size_t(g) + 1]));
    }
    st->boundaries.push_back(std::move(bounds));
  }
  be.free_indices(rules_buf);
  if (!st->device.empty()) {
    st->q_offsets = upload(q_offsets);
    st->q_rows = upload(q_rows);
  }
  st->lists = lists;
  return finish_plan<HostIndexLists>(in, lists, flops, st, be);
}

// Op 2 over the plan's lists: in device memory one call per batch entry (each has its own
// lists), in host memory one call over the host copies.
void Dhsa::run(const Inputs& in, const Plan& plan, Outputs& out, Backend& be) {
  const DhsaPlan& st = state_of<DhsaPlan>(plan);
  if (st.device.empty()) return SparsePrefillVariant::run(in, plan, out, be);
  for (int b = 0; b < in.shape.batch; ++b) {
    SparsePrefillArgs a;
    a.shape = in.shape;
    a.shape.batch = 1;
    a.q = batch_of(in.q, b);
    a.k = batch_of(in.k, b);
    a.v = batch_of(in.v, b);
    a.scale = in.scale;
    a.layout = SparseLayout::key_indices;
    a.indices.n_groups = st.lists->n_groups;
    a.indices.list_heads = 1;
    a.indices.offsets = st.device[size_t(b)].offsets.data;
    a.indices.indices = st.device[size_t(b)].entries.data;
    a.indices.q_offsets = st.q_offsets.data;
    a.indices.q_rows = st.q_rows.data;
    a.indices.on_device = st.q_rows.on_device;
    a.o = batch_of(out.o, b);
    a.lse = batch_of(out.lse, b);
    be.sparse_prefill(a);
  }
}

}  // namespace

std::unique_ptr<Variant> make_dhsa(const ParamSet& p) { return std::make_unique<Dhsa>(p); }

}  // namespace ab
