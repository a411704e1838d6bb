// Routing and launches of op 1's companions on the GPU (cuda_probs_ops.hpp); the kernels are
// kernels/cuda/elementwise (gate, scaling, blend) and kernels/cuda/probs (the probability
// ops). docs/gpu.md, "Op 1's companions".
#include "backends/cuda/cuda_probs_ops.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/elementwise/elementwise.hpp"
#include "cuda/probs/probs.hpp"

namespace ab::cuda_ops {
namespace {

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(e) + " (" +
                             cudaGetErrorString(e) + ")");
}

void require(const Support& s) {
  if (!s.ok) throw std::runtime_error(s.reason);
}

bool ew_type(DType t, cuda::EwType* out) {
  switch (t) {
    case DType::f32: *out = cuda::EwType::f32; return true;
    case DType::bf16: *out = cuda::EwType::bf16; return true;
    case DType::f16: *out = cuda::EwType::f16; return true;
  }
  return false;
}

// A tensor that is there must be the cuda backend's (variants ask supports() before any tensor
// exists: absent ones pass, the run functions refuse them).
Support device_tensor(const std::string& op, const TensorRef& t, const char* name) {
  if (t.data && !t.on_device) return Support::no(op + ": " + name + " must be allocated by the cuda backend");
  return Support::yes();
}

Support need_data(const std::string& op, const TensorRef& t, const char* name) {
  if (!t.data && t.numel() > 0) return Support::no(op + ": " + name + " is not allocated");
  return Support::yes();
}

#define AB_TRY(expr)             \
  do {                           \
    const Support s_ = (expr);   \
    if (!s_.ok) return s_;       \
  } while (0)

// ---- output gate ----------------------------------------------------------------------------
Support gate_route(const OutputGateArgs& a, bool run) {
  const std::string op = "cuda output_gate";
  const Shape4 so = a.o.shape, sg = a.gate.shape;
  if (sg[0] != so[0] || sg[1] != so[1] || sg[2] != so[2] || (sg[3] != 1 && sg[3] != so[3]))
    return Support::no(op + ": gate must be (B, Hq, Nq, 1) or (B, Hq, Nq, Dv)");
  AB_TRY(device_tensor(op, a.o, "o"));
  AB_TRY(device_tensor(op, a.gate, "gate"));
  if (a.o.data && a.gate.data && a.o.dtype != a.gate.dtype)
    return Support::no(op + ": o and gate must have one dtype");
  if (run) {
    AB_TRY(need_data(op, a.o, "o"));
    AB_TRY(need_data(op, a.gate, "gate"));
  }
  return Support::yes();
}

// ---- scale_heads ----------------------------------------------------------------------------
Support scale_route(const ScaleHeadsArgs& a, bool run) {
  const std::string op = "cuda scale_heads";
  if (a.x.shape != a.out.shape) return Support::no(op + ": x and out must have one shape");
  if (a.x.shape[1] > cuda::kScaleHeadsMax)
    return Support::no(op + ": " + std::to_string(a.x.shape[1]) + " heads; the kernel takes at most " +
                       std::to_string(cuda::kScaleHeadsMax) + " factors by value");
  AB_TRY(device_tensor(op, a.x, "x"));
  AB_TRY(device_tensor(op, a.out, "out"));
  if (a.x.data && a.out.data && a.x.dtype != a.out.dtype) return Support::no(op + ": x and out must have one dtype");
  if (run) {
    AB_TRY(need_data(op, a.x, "x"));
    AB_TRY(need_data(op, a.out, "out"));
    if (!a.factor && a.x.numel() > 0) return Support::no(op + ": factor must be set");
  }
  return Support::yes();
}

// ---- lse_blend ------------------------------------------------------------------------------
Support blend_route(const LseBlendArgs& a, bool run) {
  const std::string op = "cuda lse_blend";
  const Shape4 so = a.o.shape;
  const bool probe = !run && !a.o.data;  // ACT asks with empty arguments
  if (!probe) {
    for (const TensorRef* t : {&a.o_s, &a.o_n})
      if (t->shape != so) return Support::no(op + ": o_s and o_n must have o's shape");
    for (const TensorRef* t : {&a.lse_s, &a.lse_n})
      if (t->numel() != so[0] * so[1] * so[2]) return Support::no(op + ": lse_s and lse_n must be (B, H, N, 1)");
  }
  AB_TRY(device_tensor(op, a.o, "o"));
  AB_TRY(device_tensor(op, a.o_s, "o_s"));
  AB_TRY(device_tensor(op, a.o_n, "o_n"));
  AB_TRY(device_tensor(op, a.lse_s, "lse_s"));
  AB_TRY(device_tensor(op, a.lse_n, "lse_n"));
  for (const TensorRef* t : {&a.o_s, &a.o_n})
    if (a.o.data && t->data && t->dtype != a.o.dtype) return Support::no(op + ": o, o_s and o_n must have one dtype");
  for (const TensorRef* t : {&a.lse_s, &a.lse_n})
    if (t->data && t->dtype != DType::f32) return Support::no(op + ": lse_s and lse_n must be fp32");
  if (run) {
    AB_TRY(need_data(op, a.o, "o"));
    AB_TRY(need_data(op, a.o_s, "o_s"));
    AB_TRY(need_data(op, a.o_n, "o_n"));
    AB_TRY(need_data(op, a.lse_s, "lse_s"));
    AB_TRY(need_data(op, a.lse_n, "lse_n"));
  }
  return Support::yes();
}

// ---- attention probabilities ----------------------------------------------------------------
cuda::ProbsKind kind_of(ProbsOp op) {
  switch (op) {
    case ProbsOp::column_mass: return cuda::ProbsKind::column_mass;
    case ProbsOp::materialize: return cuda::ProbsKind::materialize;
    case ProbsOp::apply: return cuda::ProbsKind::apply;
  }
  return cuda::ProbsKind::column_mass;
}

const char* op_name(ProbsOp op) {
  return op == ProbsOp::column_mass ? "column_mass" : op == ProbsOp::materialize ? "materialize" : "apply";
}

cuda::MaskDesc mask_desc(const Mask& m, const AttnShape& s) {
  cuda::MaskDesc d;
  d.causal = m.causal ? 1 : 0;
  d.window = m.window > 0 ? m.window : 0;
  d.sinks = m.window > 0 ? std::max<int64_t>(0, m.sinks) : 0;
  d.kv_len = s.kv_len;
  return d;
}

// The arguments' structure (shape, mask, head map, transform), read by both the route and the
// executed-pairs count.
Support probs_structure(const AttnProbsArgs& pa, const std::string& op) {
  const SdpaArgs& a = pa.sdpa;
  const AttnShape& s = a.shape;
  if (a.transform != ScoreTransform::softmax) return Support::no(op + ": softmax only (as the CPU's)");
  if (a.mask.extra)
    return Support::no(op + ": mask predicate '" + a.mask.extra->name +
                       "' has no CUDA implementation (causal, window and sinks only)");
  if (s.batch < 0 || s.q_len < 0 || s.kv_len < 0 || s.q_heads <= 0 || s.kv_heads <= 0 || s.q_len > s.kv_len)
    return Support::no(op + ": bad shape (q_len must not exceed kv_len)");
  if (s.q_heads % s.kv_heads != 0) return Support::no(op + ": q_heads must be a multiple of kv_heads");
  if (a.head_map)
    for (int h = 0; h < s.q_heads; ++h)
      if (a.head_map[h] != h / s.group()) return Support::no(op + ": only the head map h -> h / group has a kernel");
  return Support::yes();
}

struct ProbsRoute {
  Support support;
  cuda::ProbsLaunchFn fn = nullptr;
};

ProbsRoute probs_route(const AttnProbsArgs& pa, bool run) {
  ProbsRoute r;
  const SdpaArgs& a = pa.sdpa;
  const AttnShape& s = a.shape;
  const std::string op = std::string("cuda attention_probs ") + op_name(pa.op);
  auto no = [&](const std::string& why) {
    r.support = Support::no(op + ": " + why);
    return r;
  };
  r.support = probs_structure(pa, op);
  if (!r.support.ok) return r;
  if (s.dtype != DType::bf16 && s.dtype != DType::f16)
    return no("dtype " + std::string(dtype_name(s.dtype)) + " has no CUDA kernel (bf16, f16)");
  if (!(std::isfinite(a.effective_scale()))) return no("the scale must be finite");
  if (s.batch > 65535 || s.q_heads > 65535) return no("batch or q_heads exceeds the grid limit (65535)");
  if ((s.q_len + cuda::kProbsBlockM - 1) / cuda::kProbsBlockM >= (int64_t(1) << 31))
    return no("q_len exceeds the grid limit");
  // The tensors the op reads and writes: there, of this backend, of the right type and shape.
  struct Want {
    const TensorRef* t;
    const char* name;
    Shape4 shape;
    DType dtype;
  };
  std::vector<Want> want;
  const int64_t B = s.batch, Hq = s.q_heads, Hkv = s.kv_heads;
  if (pa.op != ProbsOp::apply) {
    want.push_back({&a.q, "q", {B, Hq, s.q_len, s.head_dim}, s.dtype});
    want.push_back({&a.k, "k", {B, Hkv, s.kv_len, s.head_dim}, s.dtype});
  }
  if (pa.op == ProbsOp::column_mass) {
    want.push_back({&a.lse, "lse (the rows' LSE from sdpa)", {B, Hq, s.q_len, 1}, DType::f32});
    want.push_back({&pa.column, "column", {B, Hq, 1, s.kv_len}, DType::f32});
  } else if (pa.op == ProbsOp::materialize) {
    want.push_back({&pa.probs, "probs", {B, Hq, s.q_len, s.kv_len}, DType::f32});
  } else {
    const int64_t pb = pa.probs.shape[0];
    if (pa.probs.data && pb != 1 && pb != B) return no("probs must have batch 1 or B");
    want.push_back({&pa.probs, "probs", {pa.probs.data ? pb : 1, Hq, s.q_len, s.kv_len}, DType::f32});
    want.push_back({&a.v, "v", {B, Hkv, s.kv_len, s.v_dim}, s.dtype});
    want.push_back({&a.o, "o", {B, Hq, s.q_len, s.v_dim}, s.dtype});
  }
  for (const Want& w : want) {
    if (!w.t->data) {
      // lse may be absent at the variants' supports() probe; the run needs every tensor.
      if (run && ab::numel(w.shape) > 0) return no(std::string(w.name) + " is not allocated");
      continue;
    }
    if (!w.t->on_device) return no(std::string(w.name) + " must be allocated by the cuda backend");
    if (w.t->dtype != w.dtype) return no(std::string(w.name) + " must be " + std::string(dtype_name(w.dtype)));
    if (w.t->shape != w.shape) return no(std::string(w.name) + " has the wrong shape");
  }
  std::string why;
  r.fn = cuda::probs_select(kind_of(pa.op), s.dtype == DType::f16 ? cuda::ElemType::f16 : cuda::ElemType::bf16,
                            s.head_dim, s.v_dim, &why);
  if (!r.fn) r.support = Support::no(why);
  return r;
}

}  // namespace

Support route_output_gate(const OutputGateArgs& a) { return gate_route(a, false); }

void output_gate(const OutputGateArgs& a, cudaStream_t stream) {
  require(gate_route(a, true));
  cuda::OutputGateParams p;
  p.o = a.o.data;
  p.gate = a.gate.data;
  p.rows = a.o.shape[0] * a.o.shape[1] * a.o.shape[2];
  p.dv = a.o.shape[3];
  p.elementwise = a.gate.shape[3] != 1 || a.o.shape[3] == 1;
  if (!ew_type(a.o.dtype, &p.type)) throw std::runtime_error("cuda output_gate: unknown dtype");
  check(cuda::launch_output_gate(p, stream), "output_gate launch");
}

Support route_scale_heads(const ScaleHeadsArgs& a) { return scale_route(a, false); }

void scale_heads(const ScaleHeadsArgs& a, cudaStream_t stream) {
  require(scale_route(a, true));
  cuda::ScaleHeadsParams p;
  p.x = a.x.data;
  p.out = a.out.data;
  p.units = a.x.shape[0] * a.x.shape[1];
  p.slice = a.x.shape[2] * a.x.shape[3];
  p.heads = int(a.x.shape[1]);
  if (p.units * p.slice == 0) return;
  for (int h = 0; h < p.heads; ++h) p.factor[h] = a.factor[h];
  if (!ew_type(a.x.dtype, &p.type)) throw std::runtime_error("cuda scale_heads: unknown dtype");
  check(cuda::launch_scale_heads(p, stream), "scale_heads launch");
}

Support route_lse_blend(const LseBlendArgs& a) { return blend_route(a, false); }

void lse_blend(const LseBlendArgs& a, cudaStream_t stream) {
  require(blend_route(a, true));
  cuda::LseBlendParams p;
  p.o = a.o.data;
  p.o_s = a.o_s.data;
  p.o_n = a.o_n.data;
  p.lse_s = static_cast<const float*>(a.lse_s.data);
  p.lse_n = static_cast<const float*>(a.lse_n.data);
  p.rows = a.o.shape[0] * a.o.shape[1] * a.o.shape[2];
  p.dv = a.o.shape[3];
  p.beta = a.beta;
  if (!ew_type(a.o.dtype, &p.type)) throw std::runtime_error("cuda lse_blend: unknown dtype");
  check(cuda::launch_lse_blend(p, stream), "lse_blend launch");
}

Support route_attention_probs(const AttnProbsArgs& a) { return probs_route(a, false).support; }

void attention_probs(const AttnProbsArgs& pa, cudaStream_t stream) {
  const ProbsRoute r = probs_route(pa, true);
  require(r.support);
  const SdpaArgs& a = pa.sdpa;
  const AttnShape& s = a.shape;
  cuda::ProbsParams p;
  p.q = a.q.data;
  p.k = a.k.data;
  p.v = a.v.data;
  p.o = a.o.data;
  p.lse = static_cast<const float*>(a.lse.data);
  p.column = static_cast<float*>(pa.column.data);
  p.probs = static_cast<float*>(pa.probs.data);
  p.batch = s.batch;
  p.q_heads = s.q_heads;
  p.kv_heads = s.kv_heads;
  p.head_dim = s.head_dim;
  p.v_dim = s.v_dim;
  p.probs_batch = pa.op == ProbsOp::apply ? int(pa.probs.shape[0]) : s.batch;
  p.q_len = s.q_len;
  p.kv_len = s.kv_len;
  p.scale_log2 = a.effective_scale() * 1.4426950408889634f;
  p.mask = mask_desc(a.mask, s);
  p.elem = s.dtype == DType::f16 ? cuda::ElemType::f16 : cuda::ElemType::bf16;
  check(r.fn(p, stream), "attention_probs launch");
}

std::optional<double> attention_probs_executed_pairs(const AttnProbsArgs& a) {
  if (a.op == ProbsOp::apply) return std::nullopt;
  if (!probs_structure(a, "").ok) return std::nullopt;
  const AttnShape& s = a.sdpa.shape;
  return cuda::probs_executed_pairs(kind_of(a.op), mask_desc(a.sdpa.mask, s), s.q_len, s.kv_len);
}

}  // namespace ab::cuda_ops
