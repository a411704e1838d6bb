// RetrievalAttention: a static set (initial + recent tokens) plus keys retrieved from an index
// over the cache, the two partial attentions merged by LSE.
// "RetrievalAttention: Accelerating Long-Context LLM Inference via Vector Retrieval", Liu et
// al., arXiv 2409.10516 (NeurIPS 2025). docs/variants.md §9. The original code is not public (the
// repository now holds RetroInfer), so the index here is our own, documented below.
//
// Per decode step (T keys) and kv group: the static set S = [0, n_init) ∪ [T − n_local, T)
// and the retrieved set R = the top_k keys outside S by the group's best logit
// max_h q_h·k_j, found through the index; op 3 runs over S and over R and the two (O, LSE)
// merge exactly by LSE (docs/variants.md §0), as the paper merges its GPU and CPU parts.
//
// index: exact — R is the exact top-k over every non-static key (scans them all).
// index: ivf — an attention-aware inverted file built from the PROMPT's queries, the paper's
//   answer to queries being out of distribution for keys (§9 (a)): 
//   build (once per cache; prefill-time work, reported in plan_stats, not in the step's plan):
//     1. the last `index_queries` prompt positions' queries of the group's heads are clustered
//        by spherical k-means into `clusters` centroids (0 = ⌈√N⌉): routing lives in query
//        space, where decode queries are in distribution;
//     2. every prompt query links its exact top `build_topk` keys (causal) into the inverted
//        list of its cluster (RoarGraph-style query→key projection, as lists instead of a graph);
//     3. keys no prompt query linked join the list of the centroid with the largest inner
//        product (every key stays findable); keys the steps append join the same way once they
//        leave the recent window (the index is extended);
//   search: the `nprobe` clusters whose centroid best matches the step's queries (max over the
//   group's heads of q_h·ĉ), their lists' keys scored exactly, top_k kept.
// index: ivf_keys — the same lists from plain k-means on the keys (no queries): the
//   off-the-shelf ANNS baseline that the paper shows fails on OOD queries.
// ivf needs the prompt queries from the case's workload (Variant::prompt_queries); where a
// caller supplies none it falls back to ivf_keys and plan_stats.index_queries says 0.
// plan_stats.scanned_fraction: keys (and centroids) scored per step over the keys visible.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <memory>

#include "core/random.hpp"
#include "core/errors.hpp"
#include "variants/decode_steps.hpp"
#include "variants/sparse_decode/sparse_decode_base.hpp"

namespace ab {
namespace {

struct IvfIndex {
  int64_t clusters = 0;
  std::vector<float> centroids;               // (C, d), unit length
  std::vector<std::vector<int32_t>> lists;    // per cluster, ascending keys
  int64_t indexed_to = 0;                     // keys [0, indexed_to) are in the lists
};

// Scores (n, c) = x·cenᵀ of host rows x (n, d) against host rows cen (c, d), through the
// backend's decode_scores (one item of n query rows; the index's own small tensors).
std::vector<float> index_scores(Backend& be, const float* x, int64_t n, const float* cen, int64_t c, int d) {
  if (n <= 0 || c <= 0) return {};
  HostTensor hx({1, 1, n, d}), hc({1, 1, c, d});
  std::copy_n(x, n * d, hx.ptr());
  std::copy_n(cen, c * d, hc.ptr());
  DecodeScoresArgs a;
  a.shape.batch = a.shape.q_heads = a.shape.kv_heads = 1;
  a.shape.head_dim = a.shape.v_dim = d;
  a.q = be.alloc(hx.shape, DType::f32);
  a.k = be.alloc(hc.shape, DType::f32);
  be.upload(hx, a.q);
  be.upload(hc, a.k);
  DecodeScoreItem it;
  it.q_rows = n;
  it.n = c;
  std::vector<float> sc = scores_to_host(be, a, {it});
  be.free(a.q);
  be.free(a.k);
  return sc;
}

// Spherical k-means of n unit rows x (n, d) into c centroids, deterministic from a seed. The
// index is built on the host (the paper's index lives on the CPU); its products go through
// the backend.
std::vector<float> spherical_kmeans(Backend& be, const std::vector<float>& x, int64_t n, int d, int64_t c,
                                    uint64_t seed, double* flops) {
  std::vector<float> cen(size_t(c) * d);
  SeededRandom rng(seed);
  for (int64_t k = 0; k < c; ++k) {  // distinct random rows as the start
    const int64_t r = (k * n) / c + rng.uniform_int(std::max<int64_t>(1, n / c));
    std::copy_n(x.data() + std::min(r, n - 1) * d, d, cen.data() + k * d);
  }
  std::vector<int32_t> assign(static_cast<size_t>(n));
  for (int it = 0; it < 8; ++it) {
    const std::vector<float> sc = index_scores(be, x.data(), n, cen.data(), c, d);
    *flops += 2.0 * double(n) * double(c) * d;
    for (int64_t r = 0; r < n; ++r)
      assign[size_t(r)] = int32_t(std::max_element(sc.begin() + r * c, sc.begin() + (r + 1) * c) - (sc.begin() + r * c));
    std::vector<float> sum(size_t(c) * d, 0.0f);
    for (int64_t r = 0; r < n; ++r)
      for (int e = 0; e < d; ++e) sum[size_t(assign[size_t(r)]) * d + e] += x[size_t(r * d + e)];
    for (int64_t k = 0; k < c; ++k) {
      double nn = 0;
      for (int e = 0; e < d; ++e) nn += double(sum[size_t(k * d + e)]) * sum[size_t(k * d + e)];
      if (nn == 0) continue;  // an empty cluster keeps its centroid
      for (int e = 0; e < d; ++e) cen[size_t(k * d + e)] = float(sum[size_t(k * d + e)] / std::sqrt(nn));
    }
  }
  return cen;
}

void normalise_rows(std::vector<float>& x, int64_t n, int d) {
  for (int64_t r = 0; r < n; ++r) {
    double nn = 0;
    for (int e = 0; e < d; ++e) nn += double(x[size_t(r * d + e)]) * x[size_t(r * d + e)];
    const float inv = nn > 0 ? float(1.0 / std::sqrt(nn)) : 0.0f;
    for (int e = 0; e < d; ++e) x[size_t(r * d + e)] *= inv;
  }
}

class Retrieval final : public SparseDecodeVariant {
 public:
  explicit Retrieval(ParamSet p) : SparseDecodeVariant(std::move(p)) {
    info_.name = "retrieval";
    info_.fidelity = {Fidelity::stand_in, "an IVF (or exact) index instead of the paper's graph index"};
    info_.family = "token-selection-decode";
    info_.paper = "RetrievalAttention: Accelerating Long-Context LLM Inference via Vector Retrieval, "
                  "Liu et al., arXiv 2409.10516 (NeurIPS 2025)";
    info_.summary = "static initial + recent tokens plus top-k keys retrieved from an index (exact, or an "
                    "attention-aware IVF built from prompt queries), merged by LSE";
    info_.params = {
        {"top_k", ParamType::integer, int64_t{100}, "keys retrieved per step and kv head (the paper's value "
                                                    "was not retrieved); >= 1"},
        {"n_init", ParamType::integer, int64_t{128}, "initial tokens in the static set; >= 0"},
        {"n_local", ParamType::integer, int64_t{512}, "recent tokens in the static set, the step's own "
                                                      "included; >= 1"},
        {"index", ParamType::string, std::string("ivf"),
         "exact: exact top-k over all keys; ivf: attention-aware IVF from prompt queries; ivf_keys: "
         "IVF from k-means on keys (the OOD-naive baseline)", {"exact", "ivf", "ivf_keys"}},
        {"clusters", ParamType::integer, int64_t{0}, "IVF centroids; 0 = ceil(sqrt(prompt length))"},
        {"nprobe", ParamType::integer, int64_t{4}, "IVF clusters searched per step; >= 1"},
        {"index_queries", ParamType::integer, int64_t{256}, "prompt positions whose queries build the ivf "
                                                            "index; >= 1"},
        {"build_topk", ParamType::integer, int64_t{32}, "exact top keys each prompt query links into its "
                                                        "cluster; >= 1"},
    };
  }

  int64_t prompt_queries(const AttnShape& s) const override {
    (void)s;
    return params_.string("index") == "ivf" ? params_.integer("index_queries") : 0;
  }

 protected:
  void check(const AttnShape&) const override {
    for (const char* k : {"top_k", "n_local", "nprobe", "index_queries", "build_topk"}) int_at_least(k, 1);
    for (const char* k : {"n_init", "clusters"}) int_at_least(k, 0);
  }

  double nominal_keys(const AttnShape& s, int64_t t) const override {
    const double T = double(step_position(s, t) + 1);
    return std::min(T, double(params_.integer("n_init") + params_.integer("n_local") + params_.integer("top_k")));
  }
  double nominal_estimation_flops(const AttnShape& s) const override {
    double f = 0;
    for (int64_t t = 0; t < s.steps; ++t) f += 2.0 * s.batch * s.q_heads * s.head_dim * double(step_position(s, t) + 1);
    return params_.string("index") == "exact" ? f : f * 0.05;  // before planning: a guess of the scan
  }

  Support supports_selection(const AttnShape& s, const Backend& b) const override {
    Support ok = probe_scores(s, b, DecodeQueryRows::group, DecodeScoreEpilogue::head_max, false);
    if (!ok.ok || params_.string("index") == "exact") return ok;
    ok = probe_scores(s, b, DecodeQueryRows::group, DecodeScoreEpilogue::head_max, true);
    return ok.ok ? probe_scores(s, b, DecodeQueryRows::group, DecodeScoreEpilogue::raw, false) : ok;
  }
  int max_sources() const override { return 2; }

  Selected select(const Inputs& in, Backend& be) override {
    const AttnShape& s = in.shape;
    const int64_t top_k = params_.integer("top_k"), n_init = params_.integer("n_init"),
                  n_local = params_.integer("n_local"), nprobe = params_.integer("nprobe");
    const std::string mode = params_.string("index");
    const int G = s.group(), d = s.head_dim;
    const int64_t nl = int64_t(s.batch) * s.kv_heads;
    auto stat = std::make_shared<StepKeyLists>(s.steps, nl);
    auto retrieved = std::make_shared<StepKeyLists>(s.steps, nl);
    Selected out;
    std::vector<int32_t> keys, cand, top;
    double scanned = 0, visible = 0;
    if (mode == "exact") {
      // Every step's exact group scores max_h q_h·k_j of the non-static keys, one op.
      std::vector<DecodeScoreItem> items;
      int64_t total = 0;
      for (int64_t t = 0; t < s.steps; ++t) {
        const int64_t T = step_position(s, t) + 1, local_from = std::max(n_init, T - n_local);
        for (int64_t r = 0; r < nl; ++r) {
          DecodeScoreItem it;
          it.b = int32_t(r / s.kv_heads);
          it.kv_head = int32_t(r % s.kv_heads);
          it.q_row = t;
          it.k0 = n_init;
          it.n = std::max<int64_t>(0, local_from - n_init);
          it.out = total;
          total += it.n;
          items.push_back(it);
        }
      }
      DecodeScoresArgs a;
      a.shape = s;
      a.q = in.q;
      a.k = in.k;
      a.scale = 1.0f;
      a.epilogue = DecodeScoreEpilogue::head_max;
      const std::vector<float> sc = scores_to_host(be, a, items);
      size_t item = 0;
      for (int64_t t = 0; t < s.steps; ++t) {
        const int64_t T = step_position(s, t) + 1, local_from = std::max(n_init, T - n_local);
        for (int64_t r = 0; r < nl; ++r) {
          const DecodeScoreItem& it = items[item++];
          keys.clear();
          append_range(keys, 0, std::min(n_init, T));
          append_range(keys, local_from, T);
          stat->push(t, keys);
          out.estimation_flops += 2.0 * G * d * double(it.n);
          out.estimation_bytes += double(it.n) * d * dtype_bytes(s.dtype);
          scanned += double(it.n);
          visible += double(T);
          top_k_host(sc.data() + it.out, it.n, top_k, top);  // the top-k: small host control
          keys.clear();
          for (int32_t e : top) keys.push_back(int32_t(n_init + e));
          sort_unique(keys);
          retrieved->push(t, keys);
        }
      }
    } else {
      build_indexes(in, be, out);
      std::vector<IvfIndex> ivf = indexes_;  // extended per step
      // The inverted lists and the search live on the host (the paper's index is on the CPU);
      // the products they need — new keys against the centroids, the step's queries against
      // the centroids, the probed lists' keys — go through the backend.
      const int64_t C = indexes_.empty() ? 0 : indexes_[0].clusters;
      HostTensor cen({s.batch, s.kv_heads, std::max<int64_t>(1, C), d});
      for (int64_t r = 0; r < nl; ++r) std::copy(ivf[size_t(r)].centroids.begin(), ivf[size_t(r)].centroids.end(), cen.row(r / s.kv_heads, r % s.kv_heads, 0));
      const TensorRef cen_dev = be.alloc(cen.shape, DType::f32);
      be.upload(cen, cen_dev);
      std::vector<int64_t> stamp(static_cast<size_t>(s.kv_len), -1);
      std::vector<float> best;
      int64_t stamp_id = 0;
      DecodeScoresArgs a;
      a.shape = s;
      a.scale = 1.0f;
      for (int64_t t = 0; t < s.steps; ++t) {
        const int64_t T = step_position(s, t) + 1, local_from = std::max(n_init, T - n_local);
        for (int64_t r = 0; r < nl; ++r) {
          const int b = int(r / s.kv_heads), kh = int(r % s.kv_heads);
          keys.clear();
          append_range(keys, 0, std::min(n_init, T));
          append_range(keys, local_from, T);
          stat->push(t, keys);
          IvfIndex& ix = ivf[size_t(r)];
          extend(ix, be, in, cen_dev, b, kh, std::min<int64_t>(local_from, T), out);  // keys that left the window
          // The probed clusters: the centroids best matched by the group's heads.
          a.q = in.q;
          a.k = cen_dev;
          a.key_lists = IndexLists{};
          a.epilogue = DecodeScoreEpilogue::raw;
          DecodeScoreItem it;
          it.b = b;
          it.kv_head = kh;
          it.q_row = t;
          it.n = ix.clusters;
          const std::vector<float> csc = scores_to_host(be, a, {it});
          best.assign(size_t(ix.clusters), -std::numeric_limits<float>::infinity());
          for (int g = 0; g < G; ++g)
            for (int64_t c = 0; c < ix.clusters; ++c) best[size_t(c)] = std::max(best[size_t(c)], csc[size_t(g * ix.clusters + c)]);
          top_k_host(best.data(), ix.clusters, nprobe, top);
          ++stamp_id;
          cand.clear();
          for (int32_t c : top)
            for (int32_t j : ix.lists[size_t(c)])
              if (j >= n_init && j < local_from && stamp[size_t(j)] != stamp_id) {
                stamp[size_t(j)] = stamp_id;
                cand.push_back(j);
              }
          out.estimation_flops += 2.0 * G * d * double(ix.clusters);
          out.estimation_bytes += double(ix.clusters) * d * 4.0;
          scanned += double(ix.clusters);
          // Exact group scores of the candidates: max over the group's heads of q_h·k_j.
          std::vector<float> sc;
          if (!cand.empty()) {
            a.k = in.k;
            a.key_lists = be.upload_indices({0, int32_t(cand.size())}, cand);
            a.epilogue = DecodeScoreEpilogue::head_max;
            it.n = int64_t(cand.size());
            sc = scores_to_host(be, a, {it});
          }
          out.estimation_flops += 2.0 * G * d * double(cand.size());
          out.estimation_bytes += double(cand.size()) * d * dtype_bytes(s.dtype);
          scanned += double(cand.size());
          visible += double(T);
          top_k_host(sc.data(), int64_t(sc.size()), top_k, top);
          keys.clear();
          for (int32_t e : top) keys.push_back(cand[size_t(e)]);
          sort_unique(keys);
          retrieved->push(t, keys);
        }
      }
      be.free(cen_dev);
    }
    out.stats["scanned_fraction"] = visible > 0 ? scanned / visible : 0.0;
    out.stats["index_queries"] = double(index_queries_);
    if (mode != "exact") {
      out.stats["clusters"] = double(indexes_.empty() ? 0 : indexes_[0].clusters);
      out.stats["index_build_flops"] = build_flops_;
      out.stats["index_build_seconds"] = build_seconds_;
    }
    out.sources.push_back({stat, 0, {}, {}});
    out.sources.push_back({retrieved, 0, {}, {}});
    return out;
  }

 private:
  // Adds keys [ix.indexed_to, upto) to the list of their best centroid (the index grows with
  // the cache as keys leave the recent window); cen (B, Hkv, C, D) holds every index's
  // centroids on the backend.
  void extend(IvfIndex& ix, Backend& be, const Inputs& in, const TensorRef& cen, int b, int kh, int64_t upto,
              Selected& out) const {
    if (upto <= ix.indexed_to) return;
    const int64_t n = upto - ix.indexed_to;
    const std::vector<float> sc = key_centroid_scores(be, in, cen, b, kh, ix.indexed_to, n, ix.clusters);
    out.estimation_flops += 2.0 * double(n) * double(ix.clusters) * in.shape.head_dim;
    for (int64_t e = 0; e < n; ++e) {
      const int64_t c = std::max_element(sc.begin() + e * ix.clusters, sc.begin() + (e + 1) * ix.clusters) -
                        (sc.begin() + e * ix.clusters);
      ix.lists[size_t(c)].push_back(int32_t(ix.indexed_to + e));
    }
    ix.indexed_to = upto;
  }

  // Scores (n, C) of keys [j0, j0 + n) of (b, kv head kh) against that index's centroids: the
  // keys as the query rows of decode_scores, one head per "group".
  static std::vector<float> key_centroid_scores(Backend& be, const Inputs& in, const TensorRef& cen, int b, int kh,
                                                int64_t j0, int64_t n, int64_t C) {
    DecodeScoresArgs a;
    a.shape = in.shape;
    a.shape.q_heads = in.shape.kv_heads;
    a.q = in.k;
    a.k = cen;
    a.scale = 1.0f;
    DecodeScoreItem it;
    it.b = b;
    it.kv_head = kh;
    it.q_row = j0;
    it.q_rows = n;
    it.n = C;
    return scores_to_host(be, a, {it});
  }

  // The per-(batch, kv head) indexes over the prompt keys [0, N), built once per input set:
  // prefill-time work, so later plans of the same inputs reuse them (latency samples time the
  // decode-time search only).
  // Built on the host from downloaded keys and prompt queries: the paper keeps the index and
  // the vectors it retrieves from in CPU memory; the products go through the backend.
  void build_indexes(const Inputs& in, Backend& be, Selected& out) {
    const AttnShape& s = in.shape;
    const InputsKey key = InputsKey::of(in, be);
    if (built_for_ == key) return;
    const auto t0 = std::chrono::steady_clock::now();
    const HostTensor K = be.download(in.k);
    const int G = s.group(), d = s.head_dim;
    const int64_t N = step_position(s, 0), nl = int64_t(s.batch) * s.kv_heads;
    const int64_t C = params_.integer("clusters") > 0 ? std::min(params_.integer("clusters"), N)
                                                      : std::max<int64_t>(1, int64_t(std::ceil(std::sqrt(double(N)))));
    const int64_t build_topk = params_.integer("build_topk");
    const auto qp = in.extra.find("q_prompt");
    const bool use_queries = params_.string("index") == "ivf" && qp != in.extra.end();
    const HostTensor QP = use_queries ? be.download(qp->second) : HostTensor();
    const int64_t M = use_queries ? QP.shape[2] : 0;
    const float scale = in.effective_scale();
    indexes_.assign(size_t(nl), IvfIndex{});
    build_flops_ = 0;
    for (int64_t r = 0; r < nl; ++r) {
      const int b = int(r / s.kv_heads), kh = int(r % s.kv_heads);
      IvfIndex& ix = indexes_[size_t(r)];
      ix.clusters = C;
      ix.lists.assign(size_t(C), {});
      const uint64_t seed = mix_seed(0x1d5eed, uint64_t(b), uint64_t(kh));
      if (use_queries) {
        // Rows (g, m): the group's heads at prompt positions N - M + m.
        std::vector<float> q(static_cast<size_t>(G * M * d));
        for (int g = 0; g < G; ++g) std::copy_n(QP.row(b, kh * G + g, 0), M * d, q.data() + size_t(g) * M * d);
        std::vector<float> qn(q);
        normalise_rows(qn, G * M, d);
        ix.centroids = spherical_kmeans(be, qn, G * M, d, C, seed, &build_flops_);
        // Each prompt query's cluster and its exact causal top keys.
        const std::vector<float> csc = index_scores(be, qn.data(), G * M, ix.centroids.data(), C, d);
        const int64_t rows_per = 64;
        std::vector<float> sc;
        std::vector<int32_t> top;
        for (int64_t r0 = 0; r0 < G * M; r0 += rows_per) {
          const int64_t nr = std::min(rows_per, G * M - r0);
          sc = prompt_key_scores(be, in, b, kh, q.data() + r0 * d, nr, N, scale);
          build_flops_ += 2.0 * double(nr) * double(N) * d;
          for (int64_t e = 0; e < nr; ++e) {
            const int64_t row = r0 + e, pos = N - M + row % M;  // prompt position: sees keys <= pos
            float* srow = sc.data() + e * N;
            top_k_host(srow, pos + 1, build_topk, top);
            const int64_t c = std::max_element(csc.begin() + row * C, csc.begin() + (row + 1) * C) - (csc.begin() + row * C);
            ix.lists[size_t(c)].insert(ix.lists[size_t(c)].end(), top.begin(), top.end());
          }
        }
      } else {
        // Keys only: spherical k-means on the keys themselves, trained on an evenly strided
        // sample of at most 64 keys per centroid (FAISS trains on 39..256 per centroid; all N
        // keys would cost 8·N·C·d per kv head, minutes per NIAH grid at 64k), then every key
        // assigned below.
        const int64_t n_train = std::min(N, 64 * C);
        std::vector<float> kn(static_cast<size_t>(n_train * d));
        for (int64_t e = 0; e < n_train; ++e) std::copy_n(K.row(b, kh, e * N / n_train), d, kn.data() + e * d);
        normalise_rows(kn, n_train, d);
        ix.centroids = spherical_kmeans(be, kn, n_train, d, C, seed, &build_flops_);
      }
      // Keys no prompt query linked: the centroid with the largest inner product.
      std::vector<char> linked(static_cast<size_t>(N), 0);
      for (auto& l : ix.lists) {
        sort_unique(l);
        for (int32_t j : l) linked[size_t(j)] = 1;
      }
      std::vector<int32_t> rest;
      for (int64_t j = 0; j < N; ++j)
        if (!linked[size_t(j)]) rest.push_back(int32_t(j));
      const int64_t chunk = 4096;
      std::vector<float> kbuf;
      for (size_t e0 = 0; e0 < rest.size(); e0 += size_t(chunk)) {
        const int64_t n = std::min<int64_t>(chunk, int64_t(rest.size() - e0));
        kbuf.resize(size_t(n * d));
        for (int64_t e = 0; e < n; ++e) std::copy_n(K.row(b, kh, rest[e0 + size_t(e)]), d, kbuf.data() + e * d);
        const std::vector<float> ksc = index_scores(be, kbuf.data(), n, ix.centroids.data(), C, d);
        for (int64_t e = 0; e < n; ++e) {
          const int64_t c = std::max_element(ksc.begin() + e * C, ksc.begin() + (e + 1) * C) - (ksc.begin() + e * C);
          ix.lists[size_t(c)].push_back(rest[e0 + size_t(e)]);
        }
      }
      build_flops_ += 2.0 * double(rest.size()) * double(C) * d;
      for (auto& l : ix.lists) std::sort(l.begin(), l.end());
      ix.indexed_to = N;
    }
    build_seconds_ = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    index_queries_ = M;
    built_for_ = key;
    (void)out;
  }

  // Scores (nr, N) = scale·q·kᵀ of host query rows q (nr, d) against keys [0, N) of (b, kh),
  // through decode_scores: the rows sit in a (B, Hkv, nr, D) tensor at (b, kh), one head per
  // "group".
  static std::vector<float> prompt_key_scores(Backend& be, const Inputs& in, int b, int kh, const float* q,
                                              int64_t nr, int64_t N, float scale) {
    const AttnShape& s = in.shape;
    HostTensor hq({s.batch, s.kv_heads, nr, s.head_dim});
    std::copy_n(q, nr * s.head_dim, hq.row(b, kh, 0));
    DecodeScoresArgs a;
    a.shape = s;
    a.shape.q_heads = s.kv_heads;
    a.q = be.alloc(hq.shape, DType::f32);
    be.upload(hq, a.q);
    a.k = in.k;
    a.scale = scale;
    DecodeScoreItem it;
    it.b = b;
    it.kv_head = kh;
    it.q_rows = nr;
    it.n = N;
    std::vector<float> sc = scores_to_host(be, a, {it});
    be.free(a.q);
    return sc;
  }

  std::vector<IvfIndex> indexes_;
  InputsKey built_for_;
  double build_flops_ = 0, build_seconds_ = 0;
  int64_t index_queries_ = 0;
};

}  // namespace

std::unique_ptr<Variant> make_retrieval(const ParamSet& p) { return std::make_unique<Retrieval>(p); }

}  // namespace ab
