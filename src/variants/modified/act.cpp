// ACT: training-free post-softmax attention calibration of hidden attention sinks.
// "Unveiling and Harnessing Hidden Attention Sinks: Training-Free Attention Calibration for
// Enhancing Large Language Models", Yu et al., ICML 2024, arXiv 2406.15765
// (GATECH-EIC/ACT models/llama_modelling_aug.py). docs/variants.md §16c.
//
// For each calibrated head, on the dense probabilities A:
//   1. column scores c_j = Σ_t A[t, j] / (T - j)  (T - j: the rows that see key j)
//   2. sinks S = {j >= 1 : c_j > α}               (the first token is never a sink)
//   3. A[:, S] *= β
//   4. each row's removed mass (1 - β)·Σ_{j∈S} A[t, j] goes to its non-sink entries in
//      proportion to their values (A[0, 0] = 1 then holds: row 0 sees key 0 only).
// Composition of ops, never materialising A: dense SDPA gives O and LSE; the column mass op
// gives Σ_t A[t, j] from Q, K and the LSE; two more SDPA calls, over the sink keys only and
// over the other keys only, give o_S, LSE_S and o_N, LSE_N; with the sinks' share
// m = 1 / (1 + exp(LSE_N - LSE_S)) each row is
//   o = β·m·o_S + (1 - β·m)·o_N.
// (Reusing the dense O as m·o_S + (1 - m)·o_N would save the non-sink pass, but recovering o_N
// from it divides a cancellation by 1 - m: with strong sinks, m ≈ 0.99 in the tests, that
// costs two digits of fp32.) Heads without sinks skip both passes (their tiles are empty).
// The combine is the backend's lse_blend. The two passes are op 1 under a key-set mask
// predicate where the backend takes one (the CPU), otherwise op 2 over key-index lists (one
// list per (batch, head): the sinks, or every other key), uploaded into index buffers the plan
// allocated (the GPU): the same keys, so the same formula. It changes
// the output on purpose (docs/variants.md §25): its deviation from dense is reported as output
// error, and the accuracy check is against this formula in float64 with the sinks the run
// found (the test checks the sink sets against float64 column scores separately).

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <sstream>

#include "core/errors.hpp"
#include "core/mask_library.hpp"
#include "variants/dense_sdpa_base.hpp"
#include "reference/attention_reference.hpp"

namespace ab {
namespace {

// Scratch the plan owns, and the sink sets the last run found (read by reference_row and
// cost).
struct ActState {
  Backend* backend = nullptr;
  TensorRef column, sink_o, sink_lse, rest_o, rest_lse;
  std::vector<std::vector<int64_t>> sinks;  // per b·Hq + h, sorted
  // The passes as op 2 over key-index lists (a backend without mask predicates): offsets and
  // indices of the sink lists and of the rest lists, in backend memory.
  bool passes_by_lists = false;
  IndexBuffer list_offsets[2], list_indices[2];
  bool have_sinks = false;
  // Score pairs per (batch, query head) the backend computes in the column pass (-1: the
  // backend does not say).
  double column_pairs = -1;
  ActState() = default;
  ActState(const ActState&) = delete;
  ActState& operator=(const ActState&) = delete;
  ~ActState() {
    for (const TensorRef* t : {&column, &sink_o, &sink_lse, &rest_o, &rest_lse})
      if (t->data) backend->free(*t);
    for (const IndexBuffer* ib : {&list_offsets[0], &list_offsets[1], &list_indices[0], &list_indices[1]})
      if (ib->present()) backend->free_indices(*ib);
  }
};

// "all", or a comma list of heads and ranges ("0-3,7"); throws InputError naming the field.
std::vector<bool> parse_heads(const std::string& spec, int heads) {
  std::vector<bool> on(size_t(heads), spec == "all");
  if (spec == "all") return on;
  auto bad = [&](const std::string& why) {
    throw InputError("act.heads = '" + spec + "': " + why);
  };
  std::stringstream ss(spec);
  std::string item;
  int count = 0;
  while (std::getline(ss, item, ',')) {
    const size_t dash = item.find('-');
    int lo = 0, hi = 0;
    try {
      size_t pos = 0;
      lo = std::stoi(item.substr(0, dash), &pos);
      if (pos != (dash == std::string::npos ? item.size() : dash)) bad("not a head list");
      hi = lo;
      if (dash != std::string::npos) {
        const std::string rest = item.substr(dash + 1);
        hi = std::stoi(rest, &pos);
        if (pos != rest.size()) bad("not a head list");
      }
    } catch (const std::logic_error&) {
      bad("expected \"all\" or heads like \"0-3,7\"");
    }
    if (lo < 0 || hi < lo) bad("a range must be lo-hi with 0 <= lo <= hi");
    if (hi >= heads)
      bad("head " + std::to_string(hi) + " does not exist (the problem has " +
          std::to_string(heads) + " query heads)");
    for (int h = lo; h <= hi; ++h) on[size_t(h)] = true;
    ++count;
  }
  if (count == 0) bad("expected \"all\" or heads like \"0-3,7\"");
  return on;
}

// Key j is in the (b, h) sink list (sinks = true), or, for heads with sinks, is not.
MaskFn sink_keys_mask(const ActState* st, int q_heads, bool sinks) {
  auto list = [st, q_heads](int b, int h) -> const std::vector<int64_t>& {
    return st->sinks[size_t(b * q_heads + h)];
  };
  return make_mask_fn(
      sinks ? "act_sinks" : "act_non_sinks",
      [list, sinks](int b, int h, int64_t, int64_t j) {
        const auto& s = list(b, h);
        if (s.empty()) return false;
        return std::binary_search(s.begin(), s.end(), j) == sinks;
      },
      [list, sinks](int b, int h, int64_t, int64_t, int64_t k0, int64_t k1) {
        const auto& s = list(b, h);
        if (s.empty()) return BlockClass::empty;
        const auto n = std::lower_bound(s.begin(), s.end(), k1) - std::lower_bound(s.begin(), s.end(), k0);
        const auto in = sinks ? n : (k1 - k0) - n;
        return in == 0 ? BlockClass::empty : (in == k1 - k0 ? BlockClass::full : BlockClass::partial);
      });
}

class Act final : public DenseSdpaVariant {
 public:
  explicit Act(ParamSet p) : DenseSdpaVariant(std::move(p)) {
    info_.name = "act";
    info_.fidelity = {Fidelity::faithful, "training-free calibration of the reference code, on one layer's heads"};
    info_.family = "modified";
    info_.paper = "Unveiling and Harnessing Hidden Attention Sinks: Training-Free Attention "
                  "Calibration (ACT), Yu et al., ICML 2024, arXiv 2406.15765";
    info_.summary = "post-softmax calibration: columns with mean attention > alpha (not the "
                    "first) are scaled by beta, their mass redistributed to the rest of the row";
    info_.params = {
        {"alpha", ParamType::number, 0.1, "sink threshold on the column score c_j; in (0, 1)"},
        {"beta", ParamType::number, 0.4, "scale of the sink columns; in [0, 1]"},
        {"heads", ParamType::string, std::string("all"),
         "calibrated query heads: \"all\" or a list like \"0-3,7\" (ACT searches them per "
         "model; its Llama-2 script calibrates heads 0-3)"},
    };
    info_.modes = {Mode::prefill};
  }

  const VariantInfo& info() const override { return info_; }

  AttnShape shape(const Problem& p) const override {
    const double a = params_.number("alpha"), be = params_.number("beta");
    if (!(a > 0 && a < 1)) throw InputError("act.alpha = " + std::to_string(a) + ": must be in (0, 1)");
    if (!(be >= 0 && be <= 1)) throw InputError("act.beta = " + std::to_string(be) + ": must be in [0, 1]");
    AttnShape s = shape_from_problem(p);
    parse_heads(params_.string("heads"), s.q_heads);
    return s;
  }

  Support supports(const AttnShape& s, const Backend& b) const override {
    const Support sd = DenseSdpaVariant::supports(s, b);
    if (!sd.ok) return sd;
    AttnProbsArgs a;
    a.op = ProbsOp::column_mass;
    Inputs probe;
    probe.shape = s;
    a.sdpa = args(probe, nullptr);
    const Support cm = b.supports_attention_probs(a);
    if (!cm.ok) return cm;
    // The sink and non-sink passes: op 1 under ACT's key-set predicates. The sets exist only
    // after the column pass; the probe asks with empty sets under the same names, so a backend
    // answers as it will for the run (one without mask predicates refuses here, not mid-run).
    ActState probe_sets;
    probe_sets.sinks.assign(size_t(s.batch) * s.q_heads, {});
    for (bool sinks : {true, false}) {
      SdpaArgs pass = a.sdpa;
      pass.mask.extra = sink_keys_mask(&probe_sets, s.q_heads, sinks);
      const Support sp = b.supports_sdpa(pass);
      if (sp.ok) continue;
      // Or op 2 over the key lists.
      if (!b.supports_sparse_prefill(list_pass_probe(s)).ok) return sp;
    }
    return b.supports_lse_blend(LseBlendArgs{});
  }

  Cost cost(const AttnShape& s, const Plan* plan) const override {
    Cost c = DenseSdpaVariant::cost(s, plan);
    const auto* st = plan ? static_cast<const ActState*>(plan->state.get()) : nullptr;
    // The column pass recomputes Q·Kᵀ over the tiles the backend visits (no P·V).
    const double column = st && st->column_pairs >= 0 ? st->column_pairs : s.allowed_pairs();
    c.estimation = 2.0 * s.batch * s.q_heads * column * s.head_dim;
    c.executed += c.estimation;
    // The sink pass: the tiles holding sinks, known once a run found them.
    // Asked of the backend here rather than in run(), which is timed.
    if (st && st->have_sinks)
      for (bool sinks : {true, false}) {
        SdpaArgs pass;
        pass.shape = s;
        pass.mask = mask(s);
        pass.mask.extra = sink_keys_mask(st, s.q_heads, sinks);
        const std::optional<double> pairs = st->backend->sdpa_executed_pairs(pass);
        c.executed += dense_flops(s, pairs ? *pairs : s.allowed_pairs());
      }
    c.bytes_min = dense_bytes_min(s);
    return c;
  }

  // Op 2 over one key-index list per (batch, query head), all rows one group.
  static SparsePrefillArgs list_pass_probe(const AttnShape& s) {
    SparsePrefillArgs sp;
    sp.shape = s;
    sp.layout = SparseLayout::key_indices;
    sp.indices.q_group = std::max<int64_t>(1, s.q_len);
    sp.indices.n_groups = 1;
    sp.indices.list_heads = s.q_heads;
    return sp;
  }

  Plan plan(const Inputs& in, Backend& b) override {
    const AttnShape& s = in.shape;
    auto st = std::make_shared<ActState>();
    st->backend = &b;
    {
      ActState probe_sets;
      probe_sets.sinks.assign(size_t(s.batch) * s.q_heads, {});
      SdpaArgs pass = args(in, nullptr);
      pass.mask.extra = sink_keys_mask(&probe_sets, s.q_heads, true);
      st->passes_by_lists = !b.supports_sdpa(pass).ok;
    }
    if (st->passes_by_lists)
      for (int k = 0; k < 2; ++k) {
        st->list_offsets[k] = b.alloc_indices(int64_t(s.batch) * s.q_heads + 1);
        st->list_indices[k] = b.alloc_indices(int64_t(s.batch) * s.q_heads * s.kv_len);
      }
    st->column = b.alloc({s.batch, s.q_heads, 1, s.kv_len}, DType::f32);
    st->sink_o = b.alloc({s.batch, s.q_heads, s.q_len, s.v_dim}, s.dtype);
    st->sink_lse = b.alloc({s.batch, s.q_heads, s.q_len, 1}, DType::f32);
    st->rest_o = b.alloc({s.batch, s.q_heads, s.q_len, s.v_dim}, s.dtype);
    st->rest_lse = b.alloc({s.batch, s.q_heads, s.q_len, 1}, DType::f32);
    st->sinks.assign(size_t(s.batch) * s.q_heads, {});
    Plan p;
    const SdpaArgs a = args(in, nullptr);
    p.run_pairs = run_pairs(b, a, s);
    AttnProbsArgs cm;
    cm.op = ProbsOp::column_mass;
    cm.sdpa = a;
    st->column_pairs = b.attention_probs_executed_pairs(cm).value_or(-1.0);
    p.state = st;
    p.selection_na_reason = "ACT recalibrates the softmax on purpose and selects no keys "
                            "(docs/variants.md §25): its deviation from dense is the output error";
    return p;
  }

  // Rows that see key j: all rows, or (causal, bottom-right aligned) those at qpos >= j.
  static int64_t rows_seeing(const AttnShape& s, int64_t j) {
    return s.causal ? s.q_len - std::max<int64_t>(0, j - s.q_offset()) : s.q_len;
  }

  void run(const Inputs& in, const Plan& plan, Outputs& out, Backend& b) override {
    auto* st = static_cast<ActState*>(plan.state.get());
    if (!st) throw std::logic_error("act: run() before plan()");
    const AttnShape& s = in.shape;
    const double alpha = params_.number("alpha");
    const float beta = float(params_.number("beta"));
    const std::vector<bool> calibrated = parse_heads(params_.string("heads"), s.q_heads);

    // 1. Dense O and LSE.
    const SdpaArgs a = args(in, &out);
    b.sdpa(a);
    // 2. Column mass Σ_t A[t, j], then the sink sets.
    AttnProbsArgs cm;
    cm.op = ProbsOp::column_mass;
    cm.sdpa = a;
    cm.column = st->column;
    b.attention_probs(cm);
    const HostTensor col = b.download(st->column);
    for (int bb = 0; bb < s.batch; ++bb)
      for (int h = 0; h < s.q_heads; ++h) {
        auto& list = st->sinks[size_t(bb * s.q_heads + h)];
        list.clear();
        if (!calibrated[size_t(h)]) continue;
        const float* cr = col.row(bb, h, 0);
        for (int64_t j = 1; j < s.kv_len; ++j) {
          const int64_t n = rows_seeing(s, j);
          if (n > 0 && double(cr[j]) / double(n) > alpha) list.push_back(j);
        }
      }
    st->have_sinks = true;
    // 3. The sink keys and the other keys apart (heads without sinks: every tile empty).
    if (st->passes_by_lists) {
      for (int k = 0; k < 2; ++k) {
        const bool sink_pass = k == 0;
        std::vector<int32_t> off = {0}, idx;
        for (const auto& list : st->sinks) {
          if (sink_pass) {
            for (int64_t j : list) idx.push_back(int32_t(j));
          } else if (!list.empty()) {
            size_t t = 0;
            for (int64_t j = 0; j < s.kv_len; ++j) {
              if (t < list.size() && list[t] == j) {
                ++t;
                continue;
              }
              idx.push_back(int32_t(j));
            }
          }
          off.push_back(int32_t(idx.size()));
        }
        b.upload_index_buffer(off, st->list_offsets[k]);
        b.upload_index_buffer(idx, st->list_indices[k]);
        SparsePrefillArgs sp = list_pass_probe(s);
        sp.q = a.q;
        sp.k = a.k;
        sp.v = a.v;
        sp.scale = a.scale;
        sp.indices.offsets = st->list_offsets[k].data;
        sp.indices.indices = st->list_indices[k].data;
        sp.indices.on_device = st->list_offsets[k].on_device;
        sp.o = sink_pass ? st->sink_o : st->rest_o;
        sp.lse = sink_pass ? st->sink_lse : st->rest_lse;
        b.sparse_prefill(sp);
      }
    } else {
      SdpaArgs sa = a;
      sa.o = st->sink_o;
      sa.lse = st->sink_lse;
      sa.mask.extra = sink_keys_mask(st, s.q_heads, true);
      b.sdpa(sa);
      SdpaArgs ra = a;
      ra.o = st->rest_o;
      ra.lse = st->rest_lse;
      ra.mask.extra = sink_keys_mask(st, s.q_heads, false);
      b.sdpa(ra);
    }
    // 4. Combine by the two parts' LSE. Heads without sinks keep the dense rows: their sink
    //    pass sees no key (LSE −inf), which the blend leaves unchanged.
    LseBlendArgs blend;
    blend.o = out.o;
    blend.o_s = st->sink_o;
    blend.lse_s = st->sink_lse;
    blend.o_n = st->rest_o;
    blend.lse_n = st->rest_lse;
    blend.beta = beta;
    b.lse_blend(blend);
  }

  // Float64 from the definition, given the sink set the run found for (b, h): dense
  // probabilities of the row, sink columns times β, the rest times (1 - β·m)/(1 - m).
  void reference_row(const Inputs& in, const Plan& plan, int b, int h, int64_t i, double* o,
                     double* lse) const override {
    const auto* st = static_cast<const ActState*>(plan.state.get());
    if (!st || !st->have_sinks) throw std::logic_error("act: reference_row before run()");
    const AttnShape& s = in.shape;
    std::vector<double> p;
    std::vector<double> dense(size_t(s.v_dim));
    const SdpaArgs a = args(in, nullptr);
    ab::sdpa_reference_row(in.host->q, in.host->k, in.host->v, s, a.mask, a.effective_scale(),
                            a.kv_head_of(h), b, h, i, dense.data(), lse, &p);
    const auto& sinks = st->sinks[size_t(b * s.q_heads + h)];
    double m = 0;
    for (int64_t j : sinks) m += p[size_t(j)];
    const double beta = params_.number("beta");
    const bool apply = !sinks.empty() && m > 0 && m < 1;
    const double f = apply ? (1 - beta * m) / (1 - m) : 1.0;
    for (int c = 0; c < s.v_dim; ++c) o[c] = 0;
    for (int64_t j = 0; j < s.kv_len; ++j) {
      if (p[size_t(j)] == 0) continue;
      const bool sink = apply && std::binary_search(sinks.begin(), sinks.end(), j);
      const double w = p[size_t(j)] * (apply ? (sink ? beta : f) : 1.0);
      const float* vr = in.host->v.row(b, a.kv_head_of(h), j);
      for (int c = 0; c < s.v_dim; ++c) o[c] += w * vr[c];
    }
  }

 private:
  VariantInfo info_;
};

}  // namespace

std::unique_ptr<Variant> make_act(const ParamSet& p) { return std::make_unique<Act>(p); }

}  // namespace ab
