#include "variants/linear_attention_base.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>

#include "variants/decode_steps.hpp"
#include "variants/dense_sdpa_base.hpp"
#include "reference/attention_reference.hpp"

namespace ab {

namespace {

constexpr const char* kNoSelection =
    "linear attention selects no keys and its weights are not a softmax distribution: recall "
    "is undefined (docs/variants.md §0); the output error against dense softmax is reported instead";

// The decode state of every query head, owned by the plan and freed with it: `in` the state
// of the prefix (built by plan()), `out` and `next` the steps' ping-pong buffers.
struct DecodeState {
  Backend* backend = nullptr;
  LinearState in, out, next;
  DecodeState() = default;
  DecodeState(const DecodeState&) = delete;
  DecodeState& operator=(const DecodeState&) = delete;
  ~DecodeState() {
    for (const TensorRef* t : {&in.kv, &in.ksum, &in.vsum, &out.kv, &out.ksum, &out.vsum,
                               &next.kv, &next.ksum, &next.vsum})
      if (t->data) backend->free(*t);
  }
};

LinearState alloc_state(Backend& b, const AttnShape& s) {
  LinearState st;
  st.kv = b.alloc({s.batch, s.q_heads, s.head_dim, s.v_dim}, DType::f32);
  st.ksum = b.alloc({s.batch, s.q_heads, 1, s.head_dim}, DType::f32);
  st.vsum = b.alloc({s.batch, s.q_heads, 1, s.v_dim}, DType::f32);
  return st;
}

}  // namespace

FeatureMap LinearAttentionVariant::feature_map_of(const std::string& n) {
  if (n == "identity") return FeatureMap::identity;
  if (n == "elu") return FeatureMap::elu;
  if (n == "elu_plus_one") return FeatureMap::elu_plus_one;
  if (n == "relu") return FeatureMap::relu;
  if (n == "silu") return FeatureMap::silu;
  throw std::invalid_argument("unknown feature map '" + n + "'");
}

OutputNorm LinearAttentionVariant::norm_of(const std::string& n) {
  if (n == "none") return OutputNorm::none;
  if (n == "rms") return OutputNorm::rms;
  if (n == "layer") return OutputNorm::layer;
  throw std::invalid_argument("unknown output norm '" + n + "'");
}

LinearAttnArgs LinearAttentionVariant::args(const Inputs& in, Outputs* out) const {
  LinearAttnArgs a = options(in.shape, slopes_);
  a.shape = in.shape;
  a.q = in.q;
  a.k = in.k;
  a.v = in.v;
  if (out) a.o = out->o;
  return a;
}

Support LinearAttentionVariant::supports(const AttnShape& s, const Backend& b) const {
  Inputs probe;
  probe.shape = s;
  LinearAttnArgs a = args(probe, nullptr);
  // Decode runs the step with a state in and a state out (plan() builds it); the states are
  // backend tensors that do not exist yet, so the backend is asked about the shape and options,
  // and the op's rule for states (core/ops_linear.hpp: the quadratic algorithm takes none) is
  // applied here.
  const Support op = b.supports_linear_attention(a);
  if (op.ok && s.mode == Mode::decode && a.algorithm == LinearAlgorithm::quadratic)
    return Support::no(b.name() + " linear attention: the quadratic algorithm keeps no state (decode needs the chunked one)");
  return op;
}

double LinearAttentionVariant::linear_flops(const LinearAttnArgs& a, bool state_in) {
  const AttnShape& s = a.shape;
  const double d = s.head_dim, dv = s.v_dim, B = a.block;
  const double nq = double(s.q_len), nkv = double(s.kv_len);
  const double prefix = state_in ? 0.0 : double(s.q_offset());
  double per_head = 0;
  if (a.algorithm == LinearAlgorithm::quadratic) {
    // Row tiles of 4B, each against every key up to its last row's position (the last key
    // tile is cut there): 2·rows·keys·(d + dv).
    const int64_t off = s.q_offset(), rb = 4 * int64_t(a.block);
    for (int64_t i0 = 0; i0 < s.q_len; i0 += rb) {
      const double nb = double(std::min<int64_t>(rb, s.q_len - i0));
      const double keys = s.causal ? double(off + i0) + nb : nkv;
      per_head += 2.0 * nb * keys * (d + dv);
    }
  } else if (s.causal) {
    // intra: full B×B blocks over the rows (masked product computed whole);
    // inter: Q̂·S and Q̂·z per row; update: K̂ᵀV and Σ K̂ per key entering the state.
    const double full = std::floor(nq / B), rest = nq - full * B;
    per_head += 2.0 * (full * B * B + rest * rest) * (d + dv);
    per_head += 2.0 * nq * d * (dv + 1);
    per_head += 2.0 * (prefix + nq) * d * (dv + 1);
  } else {
    per_head += 2.0 * (prefix + (nkv - double(s.q_offset()))) * d * (dv + 1);
    per_head += 2.0 * nq * d * (dv + 1);
  }
  return per_head * s.batch * s.q_heads;
}

Cost LinearAttentionVariant::cost(const AttnShape& s, const Plan* plan) const {
  (void)plan;
  Inputs probe;
  probe.shape = s;
  LinearAttnArgs a = args(probe, nullptr);
  const bool decode = s.mode == Mode::decode;
  Cost c;
  c.executed = linear_flops(a, decode);
  if (s.steps > 1) {  // S one-token steps, each with the state in
    a.shape.q_len = 1;
    a.shape.steps = 1;
    c.executed = double(s.steps) * linear_flops(a, true);
  }
  c.dense_equivalent = dense_flops(s, s.allowed_pairs());
  c.estimation = 0;
  const double e = dtype_bytes(s.dtype);
  const double q = double(s.batch) * s.q_heads * s.q_len * s.head_dim;
  const double o = double(s.batch) * s.q_heads * s.q_len * s.v_dim;
  // Prefill reads every key; a decode step reads only the new token(s) and the state.
  const double keys = decode ? double(s.q_len) : double(s.kv_len);
  const double kv = double(s.batch) * s.kv_heads * keys * (s.head_dim + s.v_dim);
  c.bytes_min = (q + kv + o) * e;
  if (decode)  // the state read and written, once per step
    c.bytes_min += 2.0 * 4.0 * double(s.steps) * s.batch * s.q_heads *
                   (double(s.head_dim) * s.v_dim + s.head_dim + s.v_dim);
  c.density = 1.0;
  return c;
}

Plan LinearAttentionVariant::plan(const Inputs& in, Backend& b) {
  Plan p;
  p.selection_na_reason = kNoSelection;
  if (in.shape.mode != Mode::decode) return p;
  auto st = std::make_shared<DecodeState>();
  st->backend = &b;
  st->in = alloc_state(b, in.shape);
  st->out = alloc_state(b, in.shape);
  if (in.shape.steps > 1) st->next = alloc_state(b, in.shape);
  LinearAttnArgs a = args(in, nullptr);
  a.phase = LinearAttnArgs::Phase::build_state;
  a.state_out = st->in;
  b.linear_attention(a);
  p.state = st;
  return p;
}

void LinearAttentionVariant::run(const Inputs& in, const Plan& plan, Outputs& out, Backend& b) {
  LinearAttnArgs a = args(in, &out);
  if (in.shape.mode == Mode::decode) {
    const auto* st = static_cast<const DecodeState*>(plan.state.get());
    if (!st) throw std::logic_error("linear attention decode: run() before plan()");
    a.state_in = st->in;
    a.state_out = st->out;
    if (in.shape.steps > 1) {
      // Multi-step decode (docs/decode.md): the recurrence one token at a time, the state
      // carried from step to step through two buffers (the prefix state stays untouched).
      StepRows rows(b, in, out);
      a.shape.q_len = 1;
      a.shape.steps = 1;
      a.q = rows.q();
      a.o = rows.o();
      // Op 4 writes no LSE: the step's lse stays NaN, so the case's rows do too (as in a
      // single-step decode), whatever a fresh tensor holds on this backend.
      b.poison(rows.lse());
      for (int64_t t = 0; t < in.shape.steps; ++t) {
        rows.load_query(t);
        a.q_position = step_position(in.shape, t);
        a.state_in = t == 0 ? st->in : (t % 2 ? st->out : st->next);
        a.state_out = t % 2 ? st->next : st->out;
        b.linear_attention(a);
        rows.store(t);
      }
      rows.finish();
      return;
    }
  }
  b.linear_attention(a);
}

void LinearAttentionVariant::reference_row(const Inputs& in, const Plan& plan, int b, int h,
                                           int64_t i, double* o, double* lse) const {
  (void)plan;
  const LinearAttnArgs a = args(in, nullptr);
  ab::linear_attention_reference_row(a, in.host->q, in.host->k, in.host->v, b, h, i, o);
  if (lse) *lse = std::numeric_limits<double>::quiet_NaN();  // no LSE in linear attention
}

}  // namespace ab
