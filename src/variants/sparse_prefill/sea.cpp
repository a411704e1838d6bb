// SEA proxy — a TRAINING-FREE PROXY of SEA, not SEA itself. SEA: "SEA: Sparse Linear Attention
// with Estimated Attention Mask", Lee et al., ICLR 2024 — docs/variants.md §11
// (gmlwns2000/sea-attention, src/models/perlin_attention/attention.py, config.py).
// SEA estimates each query's attention row at a compressed width K with a Performer (FAVOR+)
// context fed to a *trained* encoder/decoder, keeps the top-k compressed columns, resizes that
// mask to the true length and runs sparse softmax attention on it. Without the trained
// predictor, this proxy (docs/variants.md §11's "training-free harness proxy") estimates the
// compressed row straight from the kernel features: Ẑ[i, c] = φ(q_i)·Σ_{j∈c} φ(k_j), with the
// FAVOR+ positive random features φ(x) = exp(ω·x' − |x'|²/2)/√nb, x' = x·d^{-1/4}, ω ~ N(0, I),
// nb = d·ln d / nbf features, which estimate exp(q·k/√d) without bias; so Ẑ[i, c] estimates
// the column group's unnormalised attention mass.
// Per group of row_group query rows (SEA's grouped top-k; row_group = 1 is per-row top-k):
// the k compressed columns with the largest summed row-normalised estimates, among the columns
// every row of the group sees entirely, plus the columns that overlap the group's own rows
// (the causal diagonal, always kept); each column expands to its N/K keys; op 2 runs softmax
// attention over them. SEA's mixing with the Performer output is not done: the output is
// sparse softmax attention only, so its error against dense is the selection's.
// The estimation runs on the backend through the ops of core/ops_select.hpp: the features
// (project, favor), the column sums Σ_{j∈c} φ(k_j) (pool over column segments, sum), the
// groups' summed row-normalised compressed rows Ẑ = φ(Q)·colsumᵀ (scores, raw_normalized_sum)
// and the kept columns expanded to their keys (select, top-k with the diagonal as a forced
// range). Op 2 reads the lists where the backend wrote them; their host copy is the plan's
// selection.
#include <algorithm>
#include <cmath>
#include <memory>

#include "core/random.hpp"
#include "variants/sparse_prefill/sparse_prefill_base.hpp"

namespace ab {
namespace {

// Heads [first, first + count) of a backend tensor (B, H, N, D) with the batch and head axes
// taken as one (B·H) axis: a (1, count, N, D) tensor of its own (contiguous in memory).
TensorRef heads_of(const TensorRef& t, int64_t first, int64_t count) {
  TensorRef v = t;
  v.data = static_cast<char*>(t.data) + first * (t.bytes() / (t.shape[0] * t.shape[1]));
  v.shape = {1, count, t.shape[2], t.shape[3]};
  return v;
}

struct SeaPlan : IndexListsPlan {
  CsrOut device;  // op 2's lists in device memory, when there
};

// Scratch of the estimation (the features of a kv head's keys and of its query heads' rows)
// is bounded by processing kv heads in chunks.
constexpr int64_t kScratchBytes = int64_t(256) << 20;

class SeaProxy final : public SparsePrefillVariant {
 public:
  explicit SeaProxy(ParamSet p) : SparsePrefillVariant(std::move(p)) {
    info_.name = "sea";
    info_.fidelity = {Fidelity::stand_in, "Performer-feature block scores instead of the trained estimator"};
    info_.family = "lsh-approximate";
    info_.paper = "SEA: Sparse Linear Attention with Estimated Attention Mask, Lee et al., ICLR 2024 "
                  "(training-free proxy: no trained predictor)";
    info_.summary = "TRAINING-FREE PROXY of SEA: Performer-feature estimate of each compressed "
                    "attention row, grouped top-k columns + diagonal, sparse softmax attention";
    info_.params = {
        {"k", ParamType::integer, int64_t{7}, "compressed columns kept per query group, besides the diagonal (config: 7)"},
        {"width", ParamType::integer, int64_t{128}, "compressed width K: each column covers N/K keys (config: 128)"},
        {"nbf", ParamType::number, 8.0, "Performer features nb = d·ln(d)/nbf (README: 8)"},
        {"row_group", ParamType::integer, int64_t{64}, "query rows sharing one selection (grouped top-k); 1 = per-row"},
        {"seed", ParamType::integer, int64_t{0}, "seed of the random features"},
    };
  }

  AttnShape shape(const Problem& p) const override {
    AttnShape s = prefill_shape(p);
    int_param("k", 0);
    int_param("width", 1, 1 << 24);
    number_param("nbf", 0.0, 1e6, true);
    int_param("row_group", 1, 1 << 24);
    int_param("seed", 0);
    return s;
  }

  Support supports(const AttnShape& s, const Backend& b) const override;
  Plan plan(const Inputs& in, Backend& be) override;
  void run(const Inputs& in, const Plan& plan, Outputs& out, Backend& be) override;

 protected:
  StaticEstimate static_estimate(const AttnShape& s) const override {
    const double width = double(std::min<int64_t>(params_.integer("width"), s.kv_len));
    const double col = double(s.kv_len) / width;
    StaticEstimate e;
    e.density = std::min(1.0, double(s.q_len) * (double(params_.integer("k")) + 2.0) * col / s.allowed_pairs());
    const double nb = features(s.head_dim);
    e.estimation_flops = s.batch * (2.0 * (double(s.q_len) * s.q_heads + double(s.kv_len) * s.kv_heads) * nb * s.head_dim +
                                    2.0 * double(s.q_len) * s.q_heads * width * nb);
    return e;
  }

 private:
  int features(int d) const {
    return std::max(1, int(std::lround(double(d) * std::log(double(d)) / params_.number("nbf"))));
  }
};

// Column c of a compressed row covers keys [bound(c), bound(c+1)).
int64_t column_start(int64_t c, int64_t n, int64_t width) { return c * n / width; }

// Every op plan() and run() call, probed with the argument kinds they pass (shapes and flags,
// no data: a backend answers for the memory and the kinds it can run).
Support SeaProxy::supports(const AttnShape& s, const Backend& b) const {
  Support ok = SparsePrefillVariant::supports(s, b);
  if (!ok.ok) return ok;
  const int d = s.head_dim, nb = features(d);
  const int64_t width = std::min<int64_t>(params_.integer("width"), s.kv_len);
  auto buffer = [](int64_t n) {  // an index buffer of n entries (no data)
    IndexBuffer x;
    x.size = n;
    return x;
  };
  ProjectArgs pr;
  pr.epilogue = ProjectEpilogue::favor;
  pr.x.shape = {0, s.kv_heads, s.kv_len, d};
  pr.proj.shape = {1, 1, nb, d};
  pr.out.shape = {0, s.kv_heads, s.kv_len, nb};
  if (ok = b.supports_project(pr); !ok.ok) return ok;
  PoolArgs cols;
  cols.axis = PoolAxis::rows;
  cols.how = Reduce::sum;
  cols.in.shape = {0, 1, s.kv_len, nb};
  cols.out.shape = {0, 1, 1, nb};
  cols.bounds = buffer(2);
  if (ok = b.supports_pool(cols); !ok.ok) return ok;
  ScoresArgs sc;
  sc.epilogue = ScoresEpilogue::raw_normalized_sum;
  sc.q.shape = {0, s.q_heads, s.q_len, nb};
  sc.k.shape = {0, s.kv_heads, width, nb};
  sc.out.shape = {0, s.q_heads, 1, width};
  sc.scale = 1.0f;
  sc.row_group = s.q_len;
  sc.col_limits = buffer(1);
  if (ok = b.supports_scores(sc); !ok.ok) return ok;
  SelectArgs sel;
  sel.scores.shape = {0, s.q_heads, 1, width};
  sel.batch = 0;
  sel.list_heads = s.q_heads;
  sel.rules = buffer(0);
  sel.expand_width = width;
  sel.expand_n = s.kv_len;
  sel.lists.offsets = buffer(1);
  sel.lists.entries = buffer(0);
  return b.supports_select(sel);
}

Plan SeaProxy::plan(const Inputs& in, Backend& be) {
  const AttnShape& s = in.shape;
  const int d = s.head_dim, nb = features(d), G = s.group();
  const int64_t width = std::min<int64_t>(params_.integer("width"), s.kv_len);
  const int64_t k = params_.integer("k"), group = params_.integer("row_group");
  const uint64_t seed = uint64_t(params_.integer("seed"));
  const int64_t n_groups = (s.q_len + group - 1) / group, off = s.q_offset();
  const int64_t n_qh = int64_t(s.batch) * s.q_heads, n_kh = int64_t(s.batch) * s.kv_heads;

  // ω (nb, d) ~ N(0, 1), one set for every head (a layer's Performer projection).
  HostTensor omega({1, 1, nb, d});
  SeededRandom rng(mix_seed(seed, 0x5ea));
  for (float& w : omega.data) w = float(rng.normal());
  const TensorRef omega_dev = be.alloc(omega.shape, DType::f32);
  be.upload(omega, omega_dev);
  const float xs = std::pow(float(d), -0.25f);
  auto upload = [&](const std::vector<int32_t>& v) {
    IndexBuffer x = be.alloc_indices(int64_t(v.size()));
    be.upload_index_buffer(v, x);
    return x;
  };

  // Per group: the candidate columns (those every row of the group sees entirely: under
  // causal, those ending at or before the first row's position; the rest it sees is the
  // diagonal), the k kept among them, and the diagonal [n_cand, diag_end) kept whole.
  std::vector<int32_t> n_cand(static_cast<size_t>(n_groups)), rules(static_cast<size_t>(n_qh * n_groups * kSelectRuleInts), 0);
  int64_t capacity = 0;
  const int64_t col_max = (s.kv_len + width - 1) / width;  // keys of the widest column
  for (int64_t g = 0; g < n_groups; ++g) {
    const int64_t r0 = g * group, r1 = std::min(s.q_len, r0 + group);
    int64_t nc = width;
    if (s.causal) {
      nc = 0;
      while (nc < width && column_start(nc + 1, s.kv_len, width) <= r0 + off + 1) ++nc;
    }
    // The diagonal: columns from n_cand up to the one holding the group's last position.
    const int64_t last_key = s.causal ? std::min(s.kv_len - 1, r1 - 1 + off) : -1;
    int64_t diag_end = nc;
    while (diag_end < width && (!s.causal || column_start(diag_end, s.kv_len, width) <= last_key)) ++diag_end;
    n_cand[size_t(g)] = int32_t(nc);
    for (int64_t qh = 0; qh < n_qh; ++qh) {
      int32_t* r = rules.data() + (qh * n_groups + g) * kSelectRuleInts;
      r[0] = int32_t(nc);
      r[1] = int32_t(std::min(k, nc));
      r[4] = int32_t(nc);
      r[5] = int32_t(diag_end);
    }
    capacity += n_qh * (std::min(k, nc) + diag_end - nc) * col_max;
  }
  std::vector<int32_t> col_bounds(static_cast<size_t>(width + 1));
  for (int64_t c = 0; c <= width; ++c) col_bounds[size_t(c)] = int32_t(column_start(c, s.kv_len, width));
  const IndexBuffer bounds_buf = upload(col_bounds), limits_buf = upload(n_cand);

  // The groups' scores (B, Hq, n_groups, width): Σ over the group's rows of Ẑ[i, c] / Σ_{c' <
  // n_cand} Ẑ[i, c'], over the candidate columns; kv heads (and their query heads) in chunks.
  const TensorRef score = be.alloc({s.batch, s.q_heads, n_groups, width}, DType::f32);
  const int64_t per_kv = 4 * (s.kv_len * nb + width * nb + G * s.q_len * nb);
  const int64_t chunk = std::clamp<int64_t>(kScratchBytes / std::max<int64_t>(per_kv, 1), 1, n_kh);
  for (int64_t r0 = 0; r0 < n_kh; r0 += chunk) {
    const int64_t c = std::min(chunk, n_kh - r0);
    // φ(k) with one stabiliser per head (a constant for the whole head cancels in the
    // row-normalised estimate), then the column sums.
    ProjectArgs pk;
    pk.epilogue = ProjectEpilogue::favor;
    pk.x = heads_of(in.k, r0, c);
    pk.proj = omega_dev;
    pk.out = be.alloc({1, c, s.kv_len, nb}, DType::f32);
    pk.xs = xs;
    pk.row_stab = false;
    be.project(pk);
    PoolArgs cols;
    cols.axis = PoolAxis::rows;
    cols.how = Reduce::sum;
    cols.in = pk.out;
    cols.out = be.alloc({1, c, width, nb}, DType::f32);
    cols.bounds = bounds_buf;
    be.pool(cols);
    be.free(pk.out);
    // φ(q) with each row's own stabiliser (a row constant cancels too), Ẑ = φ(q)·colsumᵀ,
    // normalised per row over the group's candidates and summed over the group.
    ProjectArgs pq = pk;
    pq.x = heads_of(in.q, r0 * G, c * G);
    pq.out = be.alloc({1, c * G, s.q_len, nb}, DType::f32);
    pq.row_stab = true;
    be.project(pq);
    ScoresArgs z;
    z.epilogue = ScoresEpilogue::raw_normalized_sum;
    z.q = pq.out;
    z.k = cols.out;
    z.out = heads_of(score, r0 * G, c * G);
    z.scale = 1.0f;
    z.row_group = group;
    z.col_limits = limits_buf;
    be.scores(z);
    be.free(pq.out);
    be.free(cols.out);
  }
  be.free(omega_dev);
  be.free_indices(bounds_buf);
  be.free_indices(limits_buf);

  // Per group: the top-k candidate columns ∪ the diagonal, each column expanded to its keys.
  auto st = std::make_shared<SeaPlan>();
  SelectArgs sel;
  sel.scores = score;
  sel.batch = s.batch;
  sel.list_heads = s.q_heads;
  sel.n_per = n_groups;
  sel.rules = upload(rules);
  sel.expand_width = width;
  sel.expand_n = s.kv_len;
  sel.lists.offsets = be.alloc_indices(n_qh * n_groups + 1);
  sel.lists.entries = be.alloc_indices(capacity);
  be.select(sel);
  be.free(score);
  be.free_indices(sel.rules);

  // The host copy: the plan's selection.
  auto lists = std::make_shared<HostIndexLists>();
  lists->q_group = group;
  lists->n_groups = n_groups;
  lists->list_heads = s.q_heads;
  lists->offsets = be.download_index_buffer(sel.lists.offsets, n_qh * n_groups + 1);
  lists->indices = be.download_index_buffer(sel.lists.entries, lists->offsets.back());
  st->device = keep_on_device(be, sel.lists);
  st->lists = lists;
  return finish_plan<HostIndexLists>(
      in, lists,
      2.0 * (double(n_qh) * s.q_len + double(n_kh) * s.kv_len) * nb * d +
          2.0 * double(n_qh) * s.q_len * width * nb + 2.0 * double(n_qh) * s.q_len * width,
      st, be);
}

// Op 2 over the plan's lists, in device memory when the backend wrote them there.
void SeaProxy::run(const Inputs& in, const Plan& plan, Outputs& out, Backend& be) {
  const SeaPlan& st = state_of<SeaPlan>(plan);
  SparsePrefillArgs a = op_args(in, *st.lists);
  if (st.device.offsets.present()) {
    a.indices.offsets = st.device.offsets.data;
    a.indices.indices = st.device.entries.data;
    a.indices.on_device = true;
  }
  a.o = out.o;
  a.lse = out.lse;
  be.sparse_prefill(a);
}

}  // namespace

std::unique_ptr<Variant> make_sea(const ParamSet& p) { return std::make_unique<SeaProxy>(p); }

}  // namespace ab
