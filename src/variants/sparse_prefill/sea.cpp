// SEA proxy — a TRAINING-FREE PROXY of SEA, not SEA itself. SEA: "SEA: Sparse Linear Attention
// with Estimated Attention Mask", Lee et al., ICLR 2024 — VARIANTS.md §11
// (gmlwns2000/sea-attention, src/models/perlin_attention/attention.py, config.py).
// SEA estimates each query's attention row at a compressed width K with a Performer (FAVOR+)
// context fed to a *trained* encoder/decoder, keeps the top-k compressed columns, resizes that
// mask to the true length and runs sparse softmax attention on it. Without the trained
// predictor, this proxy (VARIANTS.md §11's "training-free harness proxy") estimates the
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
#include <algorithm>
#include <cmath>
#include <memory>

#include "core/random.hpp"
#include "cpu/selection.hpp"
#include "variants/sparse_prefill/sparse_prefill_base.hpp"
#include "variants/sparse_prefill/sparse_prefill_eigen.hpp"

namespace ab {
namespace {

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

  Plan plan(const Inputs& in, Backend& be) override;

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

Plan SeaProxy::plan(const Inputs& in, Backend& be) {
  (void)be;
  const AttnShape& s = in.shape;
  const HostInputs& x = *in.host;
  const int d = s.head_dim, nb = features(d);
  const int64_t width = std::min<int64_t>(params_.integer("width"), s.kv_len);
  const int64_t k = params_.integer("k"), group = params_.integer("row_group");
  const uint64_t seed = uint64_t(params_.integer("seed"));
  const int64_t n_groups = (s.q_len + group - 1) / group, off = s.q_offset();

  // ω (nb, d) ~ N(0, 1), one set for every head (a layer's Performer projection).
  RowMat omega(nb, d);
  SeededRandom rng(mix_seed(seed, 0x5ea));
  for (int r = 0; r < nb; ++r)
    for (int c = 0; c < d; ++c) omega(r, c) = float(rng.normal());
  const float xs = std::pow(float(d), -0.25f);

  // φ(x) for rows of x (n, d) into (n, nb); `row_stab`: subtract each row's max of ω·x'
  // (queries: a row constant cancels in the row-normalised estimate), else one global max
  // (keys: a constant for the whole head cancels too).
  auto features_of = [&](const float* X, int64_t n, bool row_stab, RowMat& phi) {
    phi.resize(n, nb);
    phi.noalias() = (xs * CMapRM(X, n, d)) * omega.transpose();
    float gmax = -std::numeric_limits<float>::infinity();
    if (!row_stab) gmax = phi.maxCoeff();
    for (int64_t i = 0; i < n; ++i) {
      float sq = 0;
      for (int c = 0; c < d; ++c) sq += X[i * d + c] * X[i * d + c];
      const float half = 0.5f * xs * xs * sq;
      const float stab = row_stab ? phi.row(i).maxCoeff() : gmax;
      phi.row(i) = (phi.row(i).array() - half - stab).exp() / std::sqrt(float(nb));
    }
  };

  const int64_t n_qh = int64_t(s.batch) * s.q_heads;
  std::vector<std::vector<std::vector<int32_t>>> per_head(static_cast<size_t>(n_qh));
  // Column sums Σ_{j∈c} φ(k_j) per kv head.
  std::vector<RowMat> colsum(static_cast<size_t>(int64_t(s.batch) * s.kv_heads));
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t kvh = 0; kvh < int64_t(colsum.size()); ++kvh) {
    RowMat phi;
    features_of(x.k.row(kvh / s.kv_heads, kvh % s.kv_heads, 0), s.kv_len, false, phi);
    RowMat& cs = colsum[size_t(kvh)];
    cs.setZero(width, nb);
    for (int64_t c = 0; c < width; ++c)
      for (int64_t j = column_start(c, s.kv_len, width); j < column_start(c + 1, s.kv_len, width); ++j) cs.row(c) += phi.row(j);
  }
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t qh = 0; qh < n_qh; ++qh) {
    const int b = int(qh / s.q_heads), h = int(qh % s.q_heads);
    RowMat phi, z;
    features_of(x.q.row(b, h, 0), s.q_len, true, phi);
    z.noalias() = phi * colsum[size_t(int64_t(b) * s.kv_heads + h / s.group())].transpose();  // (Nq, width)
    std::vector<float> score(static_cast<size_t>(width));
    std::vector<int32_t> top;
    auto& lists = per_head[size_t(qh)];
    lists.resize(static_cast<size_t>(n_groups));
    for (int64_t g = 0; g < n_groups; ++g) {
      const int64_t r0 = g * group, r1 = std::min(s.q_len, r0 + group);
      // Candidates: columns every row of the group sees entirely (under causal, those ending
      // at or before the first row's position); the rest the group sees is the diagonal.
      int64_t n_cand = width;
      if (s.causal) {
        n_cand = 0;
        while (n_cand < width && column_start(n_cand + 1, s.kv_len, width) <= r0 + off + 1) ++n_cand;
      }
      std::fill(score.begin(), score.end(), 0.0f);
      for (int64_t i = r0; i < r1; ++i) {
        float total = 0;
        for (int64_t c = 0; c < n_cand; ++c) total += z(i, c);
        if (total <= 0) continue;
        for (int64_t c = 0; c < n_cand; ++c) score[size_t(c)] += z(i, c) / total;
      }
      cpu::top_k(score.data(), n_cand, std::min(k, n_cand), top);
      // The diagonal: columns from n_cand up to the one holding the group's last position.
      const int64_t last_key = s.causal ? std::min(s.kv_len - 1, r1 - 1 + off) : -1;
      for (int64_t c = n_cand; c < width && (!s.causal || column_start(c, s.kv_len, width) <= last_key); ++c)
        top.push_back(int32_t(c));
      std::sort(top.begin(), top.end());
      std::vector<int32_t>& keys = lists[size_t(g)];
      for (int32_t c : top)
        for (int64_t j = column_start(c, s.kv_len, width); j < column_start(c + 1, s.kv_len, width); ++j)
          keys.push_back(int32_t(j));
    }
  }
  auto lists = std::make_shared<HostIndexLists>();
  lists->q_group = group;
  lists->n_groups = n_groups;
  lists->list_heads = s.q_heads;
  for (const auto& head : per_head)
    for (const auto& l : head) lists->push_list(l);
  auto st = std::make_shared<IndexListsPlan>();
  st->lists = lists;
  return finish_plan<HostIndexLists>(
      in, lists,
      2.0 * (double(n_qh) * s.q_len + double(s.batch) * s.kv_heads * s.kv_len) * nb * d +
          2.0 * double(n_qh) * s.q_len * width * nb + 2.0 * double(n_qh) * s.q_len * width,
      st);
}

}  // namespace

std::unique_ptr<Variant> make_sea(const ParamSet& p) { return std::make_unique<SeaProxy>(p); }

}  // namespace ab
