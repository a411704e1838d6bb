// LAMA: low-rank multi-head attention pooling against a learned global context.
// "Low-Rank Factorization for Compact Multi-Head Self-Attention", Mehta et al., arXiv
// 1912.00835 (third-party reimplementation JohnGiorgi/compact-multi-head-self-attention-
// pytorch modules/lama.py). docs/variants.md §21.
//
// Token states h_t pooled by m heads, each scoring the tokens against one global context:
//   u = Pᵀc (m),  f[j, t] = tanh(u_j · (Q_jᵀ h_t)),  A[j, :] = softmax_t f[j, :],  M_j = Σ_t A[j, t] h_t.
// Mapped onto attention tensors: the m heads are the query heads; the head's scoring vector
// Q_j is the single query row of head j (the learned parameter, given as an input); h_t are the
// keys of its kv head for scoring and the values for pooling (the paper pools the states
// themselves: V = K recovers it exactly). P (d × m) and c (d) are generated from the seed,
// i.i.d. N(0, 1/d), so u_j·(Q_j·k_t) has unit scale. The reimplementation's tanh without the
// paper's Eq. 3.13 L2 normalisation is followed.
// As op 1: q'_j = u_j·Q_j, scale 1, the soft-capped softmax with cap 1 (softmax of tanh).
// The output is pooled: one row per (batch, head), so the shape it runs has q_len = 1 and
// output_shape is (B, Hq, 1, Dv); recall and NIAH (token-to-token retrieval) do not apply.
#include <cmath>
#include <memory>

#include "core/errors.hpp"
#include "core/random.hpp"
#include "variants/transformed_sdpa.hpp"

namespace ab {
namespace {

struct LamaPlan {
  Backend* backend = nullptr;
  TensorRef q_scaled;
  LamaPlan() = default;
  LamaPlan(const LamaPlan&) = delete;
  LamaPlan& operator=(const LamaPlan&) = delete;
  ~LamaPlan() {
    if (q_scaled.data) backend->free(q_scaled);
  }
};

class Lama final : public TransformedSdpaVariant {
 public:
  explicit Lama(ParamSet p) : TransformedSdpaVariant(std::move(p)) {
    info_.name = "lama";
    info_.fidelity = {Fidelity::stand_in, "random context and projection in place of trained weights"};
    info_.family = "modified";
    info_.paper = "Low-Rank Factorization for Compact Multi-Head Self-Attention (LAMA), "
                  "Mehta et al., arXiv 1912.00835";
    info_.summary = "multi-head attention pooling: each head scores tokens by tanh(u_j·q_j·k_t) "
                    "against a global context; output pooled to one vector per head";
    info_.params = {};
    info_.modes = {Mode::prefill};
  }

  const VariantInfo& info() const override { return info_; }

  AttnShape shape(const Problem& p) const override {
    AttnShape s = shape_from_problem(p);
    s.q_len = 1;  // the pooled row; causal bottom-right alignment then sees every token
    return s;
  }

  Shape4 output_shape(const AttnShape& s) const override { return {s.batch, s.q_heads, 1, s.v_dim}; }

  void prepare_inputs(const AttnShape& s, HostInputs& in, uint64_t seed) const override {
    SeededRandom rng(mix_seed(seed, 0x1a3a));
    const double sd = 1.0 / std::sqrt(double(s.head_dim));
    HostTensor P({1, 1, s.head_dim, s.q_heads}), c({1, 1, 1, s.head_dim});
    for (float& x : P.data) x = float(sd * rng.normal());
    for (float& x : c.data) x = float(sd * rng.normal());
    in.extra["lama_p"] = std::move(P);
    in.extra["lama_c"] = std::move(c);
  }

  void set_transform(const AttnShape& s, SdpaArgs& a) const override {
    (void)s;
    a.transform = ScoreTransform::softcap;
    a.softcap = 1.0f;
    a.scale = 1.0f;  // u_j is folded into the query
  }

  std::string selection_na_reason() const override {
    return "pooled output: one vector per head from a global context query, no token-to-token "
           "attention; recall and NIAH do not apply";
  }

  // u = Pᵀc, from the weights P (d × H) and the context vector c (d): d·H products.
  static std::vector<double> context_scales(const HostTensor& P, const HostTensor& c, int d,
                                            int heads) {
    std::vector<double> u(size_t(heads), 0.0);
    for (int j = 0; j < heads; ++j)
      for (int k = 0; k < d; ++k) u[size_t(j)] += double(P.row(0, 0, k)[j]) * c.ptr()[k];
    return u;
  }

  Support supports(const AttnShape& s, const Backend& b) const override {
    const Support sdpa = TransformedSdpaVariant::supports(s, b);
    if (!sdpa.ok) return sdpa;
    ScaleHeadsArgs sc;
    sc.x.shape = sc.out.shape = {s.batch, s.q_heads, s.q_len, s.head_dim};
    return b.supports_scale_heads(sc);
  }

  Cost cost(const AttnShape& s, const Plan* plan) const override {
    (void)plan;
    Cost c;
    c.executed = dense_flops(s, double(s.kv_len)) + 2.0 * s.head_dim * s.q_heads;  // + u = Pᵀc
    AttnShape full = s;
    full.q_len = s.kv_len;  // self-attention over the same tokens
    c.dense_equivalent = dense_flops(full, full.allowed_pairs());
    c.bytes_min = dense_bytes_min(s);
    return c;
  }

  Plan plan(const Inputs& in, Backend& b) override {
    const AttnShape& s = in.shape;
    // The weights are small (d × H): downloaded, u computed on the host; the query rows are
    // scaled by the backend.
    const std::vector<double> u = context_scales(b.download(in.extra.at("lama_p")),
                                                 b.download(in.extra.at("lama_c")), s.head_dim, s.q_heads);
    std::vector<float> factor(u.size());
    for (size_t h = 0; h < u.size(); ++h) factor[h] = float(u[h]);
    auto st = std::make_shared<LamaPlan>();
    st->backend = &b;
    st->q_scaled = b.alloc(in.q.shape, s.dtype);
    ScaleHeadsArgs sc;
    sc.x = in.q;
    sc.out = st->q_scaled;
    sc.factor = factor.data();
    b.scale_heads(sc);
    Plan p;
    p.state = st;
    p.selection_na_reason = selection_na_reason();
    return p;
  }

  void run(const Inputs& in, const Plan& plan, Outputs& out, Backend& b) override {
    const auto* st = static_cast<const LamaPlan*>(plan.state.get());
    if (!st) throw std::logic_error("lama: run() before plan()");
    SdpaArgs a = transformed_args(in, &out);
    a.q = st->q_scaled;
    b.sdpa(a);
  }

  // Float64 from the definition: f_t = tanh(u_j (q_j·k_t)), softmax over t, Σ A_t v_t.
  void reference_row(const Inputs& in, const Plan& plan, int b, int h, int64_t i, double* o,
                     double* lse) const override {
    (void)plan;
    const AttnShape& s = in.shape;
    const double u = context_scales(in.host->extra.at("lama_p"), in.host->extra.at("lama_c"),
                                    s.head_dim, s.q_heads)[size_t(h)];
    const int kh = h / s.group();
    std::vector<double> f(size_t(s.kv_len));
    double mx = -INFINITY;
    for (int64_t t = 0; t < s.kv_len; ++t) {
      double dot = 0;
      for (int c = 0; c < s.head_dim; ++c)
        dot += double(in.host->q.row(b, h, i)[c]) * in.host->k.row(b, kh, t)[c];
      f[size_t(t)] = std::tanh(u * dot);
      mx = std::max(mx, f[size_t(t)]);
    }
    double sum = 0;
    for (double x : f) sum += std::exp(x - mx);
    for (int c = 0; c < s.v_dim; ++c) o[c] = 0;
    for (int64_t t = 0; t < s.kv_len; ++t) {
      const double a = std::exp(f[size_t(t)] - mx) / sum;
      for (int c = 0; c < s.v_dim; ++c) o[c] += a * in.host->v.row(b, kh, t)[c];
    }
    if (lse) *lse = mx + std::log(sum);
  }

 private:
  VariantInfo info_;
};

}  // namespace

std::unique_ptr<Variant> make_lama(const ParamSet& p) { return std::make_unique<Lama>(p); }

}  // namespace ab
