// Routing of op 4 (linear attention) to kernels/cuda/linear_attention: the op's own rules
// (shared with the CPU backend: cpu::linear_attention_refusal), then what the kernel runs:
// bf16/fp16 q, k, v, o; d and dv in {64, 128}; fp32 states of the documented shapes.
// The quadratic algorithm (Lightning-1's tiled left product) runs as the chunked kernel: both
// compute the same sums (core/ops_linear.hpp), so the output is the same within rounding; the
// GPU has no separate O(N²) kernel (docs/gpu.md says so). The op's `block` is the CPU's
// tuning knob; the kernel's chunk is 64 rows whatever it says (the result does not depend on it).
#include "backends/cuda/cuda_linear_ops.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include "cpu/linear_attention.hpp"
#include "cuda/linear_attention/linear_attention.hpp"

namespace ab {
namespace {

bool has_state(const LinearState& st) { return st.kv.data != nullptr; }

cuda::LinFeature feature_of(FeatureMap f) {
  switch (f) {
    case FeatureMap::identity: return cuda::LinFeature::identity;
    case FeatureMap::elu: return cuda::LinFeature::elu;
    case FeatureMap::elu_plus_one: return cuda::LinFeature::elu_plus_one;
    case FeatureMap::relu: return cuda::LinFeature::relu;
    case FeatureMap::silu: return cuda::LinFeature::silu;
  }
  return cuda::LinFeature::identity;
}

cuda::LinNormalizer normalizer_of(LinearNormalizer n) {
  switch (n) {
    case LinearNormalizer::none: return cuda::LinNormalizer::none;
    case LinearNormalizer::denominator: return cuda::LinNormalizer::denominator;
    case LinearNormalizer::mala: return cuda::LinNormalizer::mala;
  }
  return cuda::LinNormalizer::none;
}

std::string tensor_refusal(const TensorRef& t, const Shape4& shape, DType dtype, const char* name) {
  if (!t.data) return "";
  if (!t.on_device) return std::string(name) + " must be allocated by the cuda backend";
  if (t.dtype != dtype)
    return std::string(name) + " must be " + std::string(dtype_name(dtype)) + ", not " + std::string(dtype_name(t.dtype));
  if (t.shape != shape) return std::string(name) + " does not have the documented shape (core/ops_linear.hpp)";
  return "";
}

std::string refusal(const LinearAttnArgs& a) {
  if (std::string why = cpu::linear_attention_refusal(a); !why.empty()) return why;
  const AttnShape& s = a.shape;
  if (s.dtype != DType::bf16 && s.dtype != DType::f16)
    return "dtype " + std::string(dtype_name(s.dtype)) + " has no kernel (bf16, f16)";
  if (std::string why = cuda::linear_refusal(s.head_dim, s.v_dim); !why.empty()) return why;
  if (s.batch > 65535 || s.q_heads > 65535) return "batch or q_heads exceeds the grid limit (65535)";
  if (a.slopes && s.q_heads > cuda::kLinearMaxHeads)
    return "a decay over more than " + std::to_string(cuda::kLinearMaxHeads) + " heads has no kernel (the slopes travel in the kernel parameters)";
  const bool build = a.phase == LinearAttnArgs::Phase::build_state;
  const std::pair<const TensorRef*, std::pair<Shape4, const char*>> io[] = {
      {&a.q, {{s.batch, s.q_heads, s.q_len, s.head_dim}, "q"}},
      {&a.k, {{s.batch, s.kv_heads, s.kv_len, s.head_dim}, "k"}},
      {&a.v, {{s.batch, s.kv_heads, s.kv_len, s.v_dim}, "v"}},
      {build ? nullptr : &a.o, {{s.batch, s.q_heads, s.q_len, s.v_dim}, "o"}}};
  for (const auto& [t, what] : io)
    if (t)
      if (std::string why = tensor_refusal(*t, what.first, s.dtype, what.second); !why.empty()) return why;
  for (const LinearState* st : {&a.state_in, &a.state_out}) {
    if (!has_state(*st)) continue;
    const char* which = st == &a.state_in ? "state_in" : "state_out";
    for (const auto& [t, shape, name] :
         {std::tuple{&st->kv, Shape4{s.batch, s.q_heads, s.head_dim, s.v_dim}, ".kv"},
          std::tuple{&st->ksum, Shape4{s.batch, s.q_heads, 1, s.head_dim}, ".ksum"},
          std::tuple{&st->vsum, Shape4{s.batch, s.q_heads, 1, s.v_dim}, ".vsum"}}) {
      if (!t->data) return std::string(which) + name + " is missing";
      if (std::string why = tensor_refusal(*t, shape, DType::f32, (std::string(which) + name).c_str()); !why.empty())
        return why;
    }
  }
  if (has_state(a.state_in) && has_state(a.state_out) &&
      (a.state_in.kv.data == a.state_out.kv.data || a.state_in.ksum.data == a.state_out.ksum.data ||
       a.state_in.vsum.data == a.state_out.vsum.data))
    return "state_out must not alias state_in (the value tiles of a head read state_in's ksum while others write)";
  return "";
}

}  // namespace

Support cuda_linear_support(const LinearAttnArgs& a) {
  const std::string why = refusal(a);
  return why.empty() ? Support::yes() : Support::no("cuda linear attention: " + why);
}

void cuda_linear_attention(const LinearAttnArgs& a, cudaStream_t stream,
                           const std::function<void*(size_t)>& workspace) {
  if (const std::string why = refusal(a); !why.empty()) throw std::runtime_error("cuda linear attention: " + why);
  const AttnShape& s = a.shape;
  const bool build = a.phase == LinearAttnArgs::Phase::build_state;
  if (build && !has_state(a.state_out)) throw std::runtime_error("cuda linear attention: build_state needs state_out");
  for (const TensorRef* t : {&a.q, &a.k, &a.v})
    if (!t->data && t->numel() > 0) throw std::runtime_error("cuda linear attention: q/k/v must be allocated by the cuda backend");
  if (!build && !a.o.data && a.o.numel() > 0) throw std::runtime_error("cuda linear attention: o must be allocated by the cuda backend");
  if (s.batch == 0 || (!build && s.q_len == 0 && !has_state(a.state_out))) return;

  cuda::LinearParams p;
  p.q = a.q.data;
  p.k = a.k.data;
  p.v = a.v.data;
  p.o = build ? nullptr : a.o.data;
  if (has_state(a.state_in)) {
    p.in_kv = static_cast<const float*>(a.state_in.kv.data);
    p.in_ksum = static_cast<const float*>(a.state_in.ksum.data);
    p.in_vsum = static_cast<const float*>(a.state_in.vsum.data);
  }
  if (has_state(a.state_out)) {
    p.out_kv = static_cast<float*>(a.state_out.kv.data);
    p.out_ksum = static_cast<float*>(a.state_out.ksum.data);
    p.out_vsum = static_cast<float*>(a.state_out.vsum.data);
  }
  p.batch = s.batch;
  p.q_heads = s.q_heads;
  p.kv_heads = s.kv_heads;
  p.head_dim = s.head_dim;
  p.v_dim = s.v_dim;
  p.q_len = build ? 0 : s.q_len;
  p.kv_len = s.kv_len;
  p.first = a.first_position();
  p.causal = s.causal;
  p.build_state = build;
  p.feature = feature_of(a.feature_map);
  p.normalizer = normalizer_of(a.normalizer);
  p.mala_scale = a.mala_scale > 0 ? a.mala_scale : 1.0f / std::sqrt(float(s.head_dim));
  p.eps = a.eps;
  p.decay = a.slopes != nullptr;
  if (a.slopes)
    for (int h = 0; h < s.q_heads; ++h) p.slopes[h] = a.slopes[h];
  p.elem = s.dtype == DType::f16 ? cuda::ElemType::f16 : cuda::ElemType::bf16;
  const bool norm = !build && a.norm != OutputNorm::none && s.q_len > 0;
  const int64_t rows = int64_t(s.batch) * s.q_heads * s.q_len;
  if (norm) p.o32 = static_cast<float*>(workspace(size_t(rows) * size_t(s.v_dim) * sizeof(float)));
  cudaError_t e = cuda::linear_attention_launch(p, stream);
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in linear attention launch: ") + cudaGetErrorName(e) + " (" +
                             cudaGetErrorString(e) + ")");
  if (!norm) return;
  cuda::LinearNormParams n;
  n.in = p.o32;
  n.out = a.o.data;
  n.width = s.v_dim;
  if (a.norm_scope == NormScope::head) {
    n.groups = rows;
    n.inner_count = 1;
    n.outer_stride = s.v_dim;
    n.segments = 1;
    n.seg_stride = 0;
  } else {  // all query heads of one (batch, position): TransNormer's NormAttention
    n.groups = int64_t(s.batch) * s.q_len;
    n.inner_count = s.q_len;
    n.outer_stride = int64_t(s.q_heads) * s.q_len * s.v_dim;
    n.segments = s.q_heads;
    n.seg_stride = s.q_len * int64_t(s.v_dim);
  }
  n.norm = a.norm == OutputNorm::rms ? cuda::LinOutputNorm::rms : cuda::LinOutputNorm::layer;
  n.eps = a.eps;
  n.elem = p.elem;
  e = cuda::linear_norm_launch(n, stream);
  if (e != cudaSuccess)
    throw std::runtime_error(std::string("CUDA error in linear attention norm launch: ") + cudaGetErrorName(e) + " (" +
                             cudaGetErrorString(e) + ")");
}

}  // namespace ab
