// DHSA: "Dynamic Hierarchical Sparse Attention", arXiv 2510.24606 — VARIANTS.md §18
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
// (VARIANTS.md §25), named as such in `list` and in every report's params:
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
#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>

#include "cpu/selection.hpp"
#include "variants/sparse_prefill/sparse_prefill_base.hpp"
#include "variants/sparse_prefill/sparse_prefill_eigen.hpp"

namespace ab {
namespace {

struct DhsaPlan : IndexListsPlan {
  std::vector<std::vector<int32_t>> boundaries;  // per batch: chunk starts and N
};

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

  Plan plan(const Inputs& in, Backend& be) override;

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

Plan Dhsa::plan(const Inputs& in, Backend& be) {
  (void)be;
  const AttnShape& s = in.shape;
  const HostInputs& x = *in.host;
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

  auto st = std::make_shared<DhsaPlan>();
  auto lists = std::make_shared<HostIndexLists>();
  lists->list_heads = 1;
  lists->n_groups = n_qb + (n_instr > 0 ? 1 : 0);
  double flops = 0;
  for (int b = 0; b < s.batch; ++b) {
    // Head-averaged keys and queries (DHSA's representations average over heads).
    std::vector<const float*> kh, qh;
    for (int h = 0; h < s.kv_heads; ++h) kh.push_back(x.k.row(b, h, 0));
    for (int h = 0; h < s.q_heads; ++h) qh.push_back(x.q.row(b, h, 0));
    std::vector<float> kf(static_cast<size_t>(N * d)), qf(static_cast<size_t>(s.q_len * d));
    cpu::average_heads(kh.data(), s.kv_heads, N * d, kf.data());
    cpu::average_heads(qh.data(), s.q_heads, s.q_len * d, qf.data());
    flops += double(N) * d * s.kv_heads + double(s.q_len) * d * s.q_heads;

    // 1. Boundaries.
    const int64_t n_chunks = std::max<int64_t>(1, (N / block) * beta);
    std::vector<int32_t> bounds;
    if (cosine) {
      bounds = cpu::cosine_boundaries(kf.data(), N, d, n_chunks, params_.integer("boundary_window"),
                                 params_.integer("nms_window"), n_instr > 0 && n_instr < N ? N - n_instr : 0);
      flops += 8.0 * double(N) * d;
    } else {
      const int64_t size = std::max<int64_t>(1, block / beta);
      for (int64_t j = 0; j < N; j += size) bounds.push_back(int32_t(j));
      bounds.push_back(int32_t(N));
    }
    const int64_t nc = int64_t(bounds.size()) - 1;
    // 2–4. Chunk keys k̄_c = mean × √len, query blocks q̄_m = mean × √len, S = q̄ k̄ᵀ.
    RowMat kbar(nc, d), qbar(std::max<int64_t>(n_qb, 1), d);
    for (int64_t c = 0; c < nc; ++c) {
      const int64_t a0 = bounds[size_t(c)], a1 = bounds[size_t(c + 1)];
      cpu::pool_rows(kf.data() + a0 * d, a1 - a0, d, a1 - a0, cpu::Pool::mean, kbar.row(c).data());
      kbar.row(c) *= std::sqrt(float(a1 - a0));
    }
    for (int64_t m = 0; m < n_qb; ++m) {
      const int64_t r0 = m * block, r1 = std::min(n_rows, r0 + block);
      cpu::pool_rows(qf.data() + r0 * d, r1 - r0, d, r1 - r0, cpu::Pool::mean, qbar.row(m).data());
      qbar.row(m) *= std::sqrt(float(r1 - r0));
    }
    RowMat S = qbar.topRows(n_qb) * kbar.transpose();  // (n_qb, nc)
    flops += 2.0 * double(n_qb) * double(nc) * d;
    std::vector<int32_t> chunk_of(static_cast<size_t>(N));
    for (int64_t c = 0; c < nc; ++c)
      for (int64_t j = bounds[size_t(c)]; j < bounds[size_t(c + 1)]; ++j) chunk_of[size_t(j)] = int32_t(c);

    // 5–7. Per query block: recent ∪ initial ∪ top-scored rest, `budget` keys in all.
    std::vector<std::vector<int32_t>> per_block(static_cast<size_t>(n_qb));
#pragma omp parallel
    {
      std::vector<float> score;
      std::vector<int32_t> top;
#pragma omp for schedule(dynamic, 4)
      for (int64_t m = 0; m < n_qb; ++m) {
        const int64_t e = std::min(N, (m + 1) * block);  // allowed keys [0, e)
        const int64_t k_total = std::min(budget, e);
        const int64_t recent = std::min({local, k_total, e});
        std::vector<int32_t>& out = per_block[size_t(m)];
        std::vector<char> taken(static_cast<size_t>(e), 0);
        for (int64_t j = e - recent; j < e; ++j) taken[size_t(j)] = 1;
        for (int64_t j = 0; j < std::min(global, e); ++j) taken[size_t(j)] = 1;
        int64_t fixed = 0;
        for (char t : taken) fixed += t;
        const int64_t rest = std::max<int64_t>(0, k_total - fixed);
        if (rest > 0) {
          score.resize(static_cast<size_t>(e));
          for (int64_t j = 0; j < e; ++j)
            score[size_t(j)] = taken[size_t(j)] ? -std::numeric_limits<float>::infinity() : S(m, chunk_of[size_t(j)]);
          cpu::top_k(score.data(), e, std::min(rest, e - fixed), top);
          for (int32_t j : top) taken[size_t(j)] = 1;
        }
        for (int64_t j = 0; j < e; ++j)
          if (taken[size_t(j)]) out.push_back(int32_t(j));
      }
    }
    flops += 2.0 * double(n_qb) * double(N);
    for (int64_t m = 0; m < n_qb; ++m) {
      std::vector<int32_t> rows(static_cast<size_t>(std::min(n_rows, (m + 1) * block) - m * block));
      std::iota(rows.begin(), rows.end(), int32_t(m * block));
      lists->push_group_rows(rows);
      lists->push_list(per_block[size_t(m)]);
    }
    if (n_instr > 0) {  // the instruction rows: every key
      std::vector<int32_t> rows(static_cast<size_t>(n_instr)), all(static_cast<size_t>(N));
      std::iota(rows.begin(), rows.end(), int32_t(n_rows));
      std::iota(all.begin(), all.end(), 0);
      lists->push_group_rows(rows);
      lists->push_list(all);
    }
    st->boundaries.push_back(std::move(bounds));
  }
  st->lists = lists;
  return finish_plan<HostIndexLists>(in, lists, flops, st);
}

}  // namespace

std::unique_ptr<Variant> make_dhsa(const ParamSet& p) { return std::make_unique<Dhsa>(p); }

}  // namespace ab
