// Gated attention: a sigmoid gate on the SDPA output, headwise or elementwise (position G1).
// "Gated Attention for Large Language Models: Non-linearity, Sparsity, and Attention-Sink-Free",
// Qiu et al. (Qwen team), arXiv 2505.06708 (qiuzh20/gated_attention modeling_qwen3.py).
// docs/variants.md §5.
//
// Y' = SDPA(Q, K, V) ⊙ σ(G), G the gate logits (B, Hq, Nq, 1) headwise or (B, Hq, Nq, Dv)
// elementwise. In the model G = X·W_g comes from the same hidden state as Q/K/V; here it is
// an input tensor: generated from the case's seed (i.i.d. N(0, 1) logits, so σ(G) spreads
// over (0, 1) around 0.5), or read from `gate_file` (.npy, or the tensor "gate" of a
// .safetensors file) holding exactly that shape. The projection producing G is outside the
// attention op, so its 2·N·D·H FLOPs are not counted; the gate itself costs Nq·Dv multiplies.
#include <cmath>
#include <memory>

#include "core/random.hpp"
#include "core/errors.hpp"
#include "variants/dense_sdpa_base.hpp"

namespace ab {
namespace {

class Gated final : public DenseSdpaVariant {
 public:
  explicit Gated(ParamSet p) : DenseSdpaVariant(std::move(p)) {
    info_.name = "gated";
    info_.fidelity = {Fidelity::stand_in, "random gate logits in place of the trained gate projection"};
    info_.family = "modified";
    info_.paper = "Gated Attention for Large Language Models, Qiu et al. (Qwen), "
                  "arXiv 2505.06708";
    info_.summary = "SDPA output times a sigmoid gate σ(G) (G1), headwise or elementwise; the "
                    "gate logits are an input tensor";
    info_.params = {
        {"gate", ParamType::string, std::string("elementwise"),
         "elementwise (G of shape B,Hq,Nq,Dv) or headwise (B,Hq,Nq,1)",
         {"elementwise", "headwise"}},
        {"gate_file", ParamType::string, std::string(""),
         "gate logits from a file: .npy, or the tensor 'gate' of a .safetensors file, of "
         "shape [B, Hq, Nq, Dv or 1]; \"\" = generated from the seed, N(0, 1)"},
    };
    info_.modes = {Mode::prefill, Mode::decode};
  }

  const VariantInfo& info() const override { return info_; }

  Shape4 gate_shape(const AttnShape& s) const {
    const bool elementwise = params_.string("gate") == "elementwise";
    return {s.batch, s.q_heads, s.q_len, elementwise ? s.v_dim : 1};
  }

  // A trained gate from `gate_file`, read by the workload layer before prepare_inputs().
  std::vector<ExtraInputFile> extra_input_files(const AttnShape& s) const override {
    const std::string path = params_.string("gate_file");
    if (path.empty()) return {};
    ExtraInputFile f;
    f.name = "gate";
    f.path = path;
    f.tensor = "gate";
    f.shape = gate_shape(s);
    f.field = "gated.gate_file";
    f.shape_note = "gate = " + params_.string("gate");
    return {f};
  }

  // Without a file: seeded N(0, 1) logits.
  void prepare_inputs(const AttnShape& s, HostInputs& in, uint64_t seed) const override {
    if (in.extra.count("gate")) return;  // from gate_file
    HostTensor g(gate_shape(s));
    SeededRandom rng(mix_seed(seed, 0x6a7e));
    for (float& x : g.data) x = round_to(s.dtype, float(rng.normal()));
    in.extra["gate"] = std::move(g);
  }

  Support supports(const AttnShape& s, const Backend& b) const override {
    const Support sdpa = DenseSdpaVariant::supports(s, b);
    if (!sdpa.ok) return sdpa;
    OutputGateArgs g;
    g.o.shape = {s.batch, s.q_heads, s.q_len, s.v_dim};
    g.gate.shape = gate_shape(s);
    return b.supports_output_gate(g);
  }

  Cost cost(const AttnShape& s, const Plan* plan) const override {
    Cost c = DenseSdpaVariant::cost(s, plan);
    const double rows = double(s.batch) * s.q_heads * s.q_len;
    c.executed += rows * s.v_dim;  // the gate's multiplies (σ not counted, like exp)
    const Shape4 g = gate_shape(s);
    c.bytes_min += double(numel(g)) * dtype_bytes(s.dtype);
    return c;
  }

  Plan plan(const Inputs& in, Backend& b) override {
    Plan p;
    p.run_pairs = run_pairs(b, args(in, nullptr), in.shape);
    p.selection_na_reason = "the sigmoid gate rescales the output and selects no keys: recall "
                            "n/a; the output error against dense attention is reported";
    return p;
  }

  void run(const Inputs& in, const Plan& plan, Outputs& out, Backend& b) override {
    DenseSdpaVariant::run(in, plan, out, b);  // one call per step in multi-step decode
    OutputGateArgs g;
    g.o = out.o;
    g.gate = in.extra.at("gate");
    b.output_gate(g);
  }

  void reference_row(const Inputs& in, const Plan& plan, int b, int h, int64_t i, double* o,
                     double* lse) const override {
    DenseSdpaVariant::reference_row(in, plan, b, h, i, o, lse);
    const HostTensor& g = in.host->extra.at("gate");
    const float* gr = g.row(b, h, i);
    for (int c = 0; c < in.shape.v_dim; ++c)
      o[c] *= 1.0 / (1.0 + std::exp(-double(g.shape[3] == 1 ? gr[0] : gr[c])));
  }

 private:
  VariantInfo info_;
};

}  // namespace

std::unique_ptr<Variant> make_gated(const ParamSet& p) { return std::make_unique<Gated>(p); }

}  // namespace ab
