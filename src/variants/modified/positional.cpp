// Positional attention: weights from positional encodings only, values from the data.
// "Positional Attention: Expressivity and Learnability of Algorithmic Computation", de Luca
// et al., ICML 2025, arXiv 2410.01686. docs/variants.md §20.
//
// A_h = softmax((P W_Q,h)(P W_K,h)ᵀ / √d ⊙ mask), P (N × d_p) the positional encodings, the
// same for every input; head h = A_h · V. The weights are input-independent, so the plan
// phase computes them once per shape and run() — the per-input work — is A·V alone
// (docs/variants.md §20 (d)-(e)). The latency metric times the two phases apart: the plan phase is
// the once-per-shape cost (a model would cache it across inputs and batches), the attention
// phase the per-input cost; FLOPs put the former under `estimation`.
//   cache = weights: A materialised (Hq × Nq × Nkv fp32; refused above 2 GiB), run = A·V
//           (2·pairs·dv per head, empty mask tiles skipped).
//   cache = qk:      the positional queries and keys P·W cached, run = flash SDPA with them
//           (4·pairs·d: QKᵀ recomputed per input, O(N·d) memory at any N).
// The paper trains W_Q, W_K; here they are i.i.d. N(0, 1/d_p) (a stand-in, deterministic from
// the case's seed), P sinusoidal (Vaswani et al.) with d_p = pe_dim channels. Positional K is
// per kv head, so head layouts with shared kv heads share positional keys as they share V.
#include <cmath>
#include <memory>
#include <random>

#include "core/random.hpp"
#include "core/errors.hpp"
#include "variants/dense_sdpa_base.hpp"

namespace ab {
namespace {

constexpr double kWeightsBudgetBytes = 2.0 * (1ull << 30);

// Sinusoidal encoding of position `pos`, channel c of dp.
double sinusoid(int64_t pos, int c, int dp) {
  const double freq = std::pow(10000.0, -double(2 * (c / 2)) / dp);
  return c % 2 == 0 ? std::sin(double(pos) * freq) : std::cos(double(pos) * freq);
}

// Tensors the plan owns, freed with it.
struct PositionalPlan {
  Backend* backend = nullptr;
  TensorRef qp, kp, probs;
  PositionalPlan() = default;
  PositionalPlan(const PositionalPlan&) = delete;
  PositionalPlan& operator=(const PositionalPlan&) = delete;
  ~PositionalPlan() {
    for (const TensorRef* t : {&qp, &kp, &probs})
      if (t->data) backend->free(*t);
  }
};

class Positional final : public DenseSdpaVariant {
 public:
  explicit Positional(ParamSet p) : DenseSdpaVariant(std::move(p)) {
    info_.name = "positional";
    info_.fidelity = {Fidelity::stand_in, "random positional projections in place of trained weights"};
    info_.family = "modified";
    info_.paper = "Positional Attention: Expressivity and Learnability of Algorithmic "
                  "Computation, de Luca et al., ICML 2025, arXiv 2410.01686";
    info_.summary = "weights softmax((P W_Q)(P W_K)ᵀ) from positions only, computed once per "
                    "shape; values from the data (per input: A·V)";
    info_.params = {
        {"pe_dim", ParamType::integer, int64_t{64},
         "channels d_p of the sinusoidal positional encoding P; even, >= 2"},
        {"cache", ParamType::string, std::string("weights"),
         "weights (materialise A, run = A·V) or qk (cache P·W_Q, P·W_K, run = SDPA)",
         {"weights", "qk"}},
    };
    info_.modes = {Mode::prefill, Mode::decode};
  }

  const VariantInfo& info() const override { return info_; }

  AttnShape shape(const Problem& p) const override {
    const int64_t dp = params_.integer("pe_dim");
    if (dp < 2 || dp % 2 != 0)
      throw InputError("positional.pe_dim = " + std::to_string(dp) + ": must be even and >= 2");
    if (p.steps > 1)
      throw InputError("positional: problem.steps = " + std::to_string(p.steps) + ": multi-step "
                       "decode is not supported (the weights are a per-shape product; a step "
                       "would be one row of them)");
    return shape_from_problem(p);
  }

  bool has_plan_phase() const override { return true; }

  // W_Q (1, Hq, d_p, d), W_K (1, Hkv, d_p, d): fixed "trained" weights, from the seed.
  void prepare_inputs(const AttnShape& s, HostInputs& in, uint64_t seed) const override {
    const int dp = int(params_.integer("pe_dim"));
    SeededRandom rng(mix_seed(seed, 0x905));
    const double sd = 1.0 / std::sqrt(double(dp));
    HostTensor wq({1, s.q_heads, dp, s.head_dim}), wk({1, s.kv_heads, dp, s.head_dim});
    for (float& x : wq.data) x = float(sd * rng.normal());
    for (float& x : wk.data) x = float(sd * rng.normal());
    in.extra["pos_wq"] = std::move(wq);
    in.extra["pos_wk"] = std::move(wk);
  }

  bool cache_weights() const { return params_.string("cache") == "weights"; }

  double weights_bytes(const AttnShape& s) const {
    return 4.0 * s.q_heads * double(s.q_len) * double(s.kv_len);
  }

  // The positional problem: batch 1 (P is the same for every input).
  AttnShape positional_shape(const AttnShape& s) const {
    AttnShape p = s;
    p.batch = 1;
    return p;
  }

  Support supports(const AttnShape& s, const Backend& b) const override {
    if (!cache_weights()) return DenseSdpaVariant::supports(s, b);
    if (weights_bytes(s) > kWeightsBudgetBytes)
      return Support::no("positional: cache = weights needs " +
                         std::to_string(weights_bytes(s) / double(1ull << 30)).substr(0, 5) +
                         " GiB for A (budget 2 GiB); use cache: qk");
    AttnProbsArgs a;
    a.op = ProbsOp::materialize;
    a.sdpa.shape = positional_shape(s);
    a.sdpa.mask = mask(s);
    const Support m = b.supports_attention_probs(a);
    if (!m.ok) return m;
    a.op = ProbsOp::apply;
    a.sdpa.shape = s;
    return b.supports_attention_probs(a);
  }

  Cost cost(const AttnShape& s, const Plan* plan) const override {
    Cost c;
    const double pairs = s.allowed_pairs();
    c.dense_equivalent = dense_flops(s, pairs);
    const double dp = double(params_.integer("pe_dim"));
    // P·W_Q and P·W_K, once per shape.
    const double proj = 2.0 * dp * s.head_dim * (double(s.q_len) * s.q_heads + double(s.kv_len) * s.kv_heads);
    const AttnShape ps = positional_shape(s);
    const double all_pairs = double(s.q_len) * double(s.kv_len);
    // The qk mode's op 1 over the tiles the backend visits (from the plan).
    const double run_pairs = plan && plan->run_pairs >= 0 ? plan->run_pairs : pairs;
    const double e = dtype_bytes(s.dtype);
    const double v_o = double(s.batch) * (double(s.kv_heads) * s.kv_len + double(s.q_heads) * s.q_len) * s.v_dim * e;
    if (cache_weights()) {
      // Once: the scores and softmax of every row (materialised whole). Per input: A·V over
      // the non-empty tiles.
      c.estimation = proj + 2.0 * ps.q_heads * all_pairs * s.head_dim;
      c.executed = c.estimation + 2.0 * s.batch * s.q_heads * pairs * s.v_dim;
      c.bytes_min = 4.0 * s.q_heads * pairs + v_o;  // A (allowed part) read once per input
    } else {
      c.estimation = proj;
      c.executed = proj + dense_flops(s, run_pairs);
      c.bytes_min = dense_bytes_min(s);
    }
    return c;
  }

  // P for positions [first, first + rows): rows × d_p, row-major.
  static std::vector<double> encodings(int64_t first, int64_t rows, int dp) {
    std::vector<double> pe(size_t(rows * dp));
    for (int64_t r = 0; r < rows; ++r)
      for (int t = 0; t < dp; ++t) pe[size_t(r * dp + t)] = sinusoid(first + r, t, dp);
    return pe;
  }

  // Positional Q or K of one head: rows × d = P (rows × d_p) · W_head (d_p × d). On the host:
  // P is a function of positions alone and W is small (d_p × d per head); the product is the
  // once-per-shape weight preparation a model would cache, not per-input work.
  static void project(const std::vector<double>& pe, const HostTensor& w, int head, int64_t rows,
                      int dp, int d, float* out) {
    std::vector<double> acc(static_cast<size_t>(d));
    for (int64_t r = 0; r < rows; ++r) {
      std::fill(acc.begin(), acc.end(), 0.0);
      for (int t = 0; t < dp; ++t) {
        const double p = pe[size_t(r * dp + t)];
        const float* wr = w.row(0, head, t);
        for (int c = 0; c < d; ++c) acc[size_t(c)] += p * wr[c];
      }
      for (int c = 0; c < d; ++c) out[r * d + c] = float(acc[size_t(c)]);
    }
  }

  Plan plan(const Inputs& in, Backend& b) override {
    const AttnShape& s = in.shape;
    const int dp = int(params_.integer("pe_dim")), d = s.head_dim;
    const HostTensor wq = b.download(in.extra.at("pos_wq"));
    const HostTensor wk = b.download(in.extra.at("pos_wk"));
    // Positional queries sit at the query rows' absolute positions (bottom-right aligned).
    const int64_t nb = cache_weights() ? 1 : s.batch;
    HostTensor qp({nb, s.q_heads, s.q_len, d}), kp({nb, s.kv_heads, s.kv_len, d});
    const std::vector<double> pe = encodings(0, s.kv_len, dp);
    const std::vector<double> pe_q(pe.begin() + s.q_offset() * dp, pe.end());
    for (int h = 0; h < s.q_heads; ++h) project(pe_q, wq, h, s.q_len, dp, d, qp.row(0, h, 0));
    for (int h = 0; h < s.kv_heads; ++h) project(pe, wk, h, s.kv_len, dp, d, kp.row(0, h, 0));
    for (int64_t bb = 1; bb < nb; ++bb) {  // qk mode: the same rows for every batch entry
      std::copy(qp.row(0, 0, 0), qp.row(0, 0, 0) + s.q_heads * s.q_len * d, qp.row(bb, 0, 0));
      std::copy(kp.row(0, 0, 0), kp.row(0, 0, 0) + s.kv_heads * s.kv_len * d, kp.row(bb, 0, 0));
    }
    auto st = std::make_shared<PositionalPlan>();
    st->backend = &b;
    st->qp = b.alloc(qp.shape, s.dtype);
    st->kp = b.alloc(kp.shape, s.dtype);
    b.upload(qp, st->qp);
    b.upload(kp, st->kp);
    if (cache_weights()) {
      AttnProbsArgs a;
      a.op = ProbsOp::materialize;
      a.sdpa.shape = positional_shape(s);
      a.sdpa.q = st->qp;
      a.sdpa.k = st->kp;
      a.sdpa.scale = in.scale;
      a.sdpa.mask = mask(s);
      st->probs = b.alloc({1, s.q_heads, s.q_len, s.kv_len}, DType::f32);
      a.probs = st->probs;
      b.attention_probs(a);
    }
    Plan p;
    p.state = st;
    if (!cache_weights()) p.run_pairs = run_pairs(b, args(in, nullptr), s);
    p.selection_na_reason = "the weights come from positions only, not from the inputs' "
                            "Q·K: recall against dense attention on the data is undefined";
    return p;
  }

  void run(const Inputs& in, const Plan& plan, Outputs& out, Backend& b) override {
    const auto* st = static_cast<const PositionalPlan*>(plan.state.get());
    if (!st) throw std::logic_error("positional: run() before plan()");
    SdpaArgs a = args(in, &out);
    a.q = st->qp;
    a.k = st->kp;
    if (cache_weights()) {
      AttnProbsArgs pa;
      pa.op = ProbsOp::apply;
      pa.sdpa = a;
      pa.sdpa.q = in.q;  // shapes only: apply reads P and V
      pa.sdpa.k = in.k;
      pa.probs = st->probs;
      b.attention_probs(pa);
    } else {
      b.sdpa(a);
    }
  }

  // Float64, from the definition: positional scores of row i against every allowed key,
  // softmax, Σ p_j v_j. No LSE (the weights mode has none to compare).
  void reference_row(const Inputs& in, const Plan& plan, int b, int h, int64_t i, double* o,
                     double* lse) const override {
    (void)plan;
    const AttnShape& s = in.shape;
    const int dp = int(params_.integer("pe_dim")), d = s.head_dim;
    const int kh = h / s.group();
    const HostTensor& wq = in.host->extra.at("pos_wq");
    const HostTensor& wk = in.host->extra.at("pos_wk");
    const Mask m = mask(s);
    const int64_t qpos = i + s.q_offset();
    std::vector<double> qrow(size_t(d), 0.0), krow(static_cast<size_t>(d)), logits(size_t(s.kv_len));
    for (int c = 0; c < d; ++c)
      for (int t = 0; t < dp; ++t) qrow[size_t(c)] += sinusoid(qpos, t, dp) * wq.row(0, h, t)[c];
    const double scale = in.effective_scale();
    double mx = -INFINITY;
    for (int64_t j = 0; j < s.kv_len; ++j) {
      logits[size_t(j)] = -INFINITY;
      if (!m.allows(b, h, qpos, j)) continue;
      std::fill(krow.begin(), krow.end(), 0.0);
      for (int t = 0; t < dp; ++t) {
        const double pj = sinusoid(j, t, dp);
        for (int c = 0; c < d; ++c) krow[size_t(c)] += pj * wk.row(0, kh, t)[c];
      }
      double dot = 0;
      for (int c = 0; c < d; ++c) dot += qrow[size_t(c)] * krow[size_t(c)];
      logits[size_t(j)] = dot * scale;
      mx = std::max(mx, logits[size_t(j)]);
    }
    double sum = 0;
    for (int64_t j = 0; j < s.kv_len; ++j) sum += std::exp(logits[size_t(j)] - mx);
    for (int c = 0; c < s.v_dim; ++c) o[c] = 0;
    for (int64_t j = 0; j < s.kv_len; ++j) {
      const double p = std::exp(logits[size_t(j)] - mx) / sum;
      if (p == 0) continue;
      for (int c = 0; c < s.v_dim; ++c) o[c] += p * in.host->v.row(b, kh, j)[c];
    }
    if (lse) *lse = cache_weights() ? NAN : mx + std::log(sum);
  }

 private:
  VariantInfo info_;
};

}  // namespace

std::unique_ptr<Variant> make_positional(const ParamSet& p) { return std::make_unique<Positional>(p); }

}  // namespace ab
