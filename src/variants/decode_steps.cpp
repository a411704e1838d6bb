#include "variants/decode_steps.hpp"

#include <algorithm>
#include <memory>
#include <string>

namespace ab {

AttnShape step_shape(const AttnShape& s) {
  AttnShape x = s;
  x.q_len = 1;
  x.steps = 1;
  x.causal = false;
  return x;
}

Mask step_mask(const Mask& base, const AttnShape& s, int64_t t) {
  const int64_t pos = step_position(s, t);
  auto pred = std::make_shared<MaskPredicate>();
  pred->name = base.name() + "_at" + std::to_string(pos);
  pred->allows = [base, pos](int b, int h, int64_t, int64_t j) { return base.allows(b, h, pos, j); };
  pred->classify = [base, pos](int b, int h, int64_t, int64_t, int64_t k0, int64_t k1) {
    return base.classify(b, h, pos, pos + 1, k0, k1);
  };
  Mask m;
  m.extra = std::move(pred);
  return m;
}

StepRows::StepRows(Backend& b, const Inputs& in, Outputs& out) : b_(b), in_(in), out_(out), s_(in.shape) {
  q_ = b_.alloc({s_.batch, s_.q_heads, 1, s_.head_dim}, s_.dtype);
  o_ = b_.alloc({s_.batch, s_.q_heads, 1, s_.v_dim}, s_.dtype);
  lse_ = b_.alloc({s_.batch, s_.q_heads, 1, 1}, DType::f32);
  host_ = !in.q.on_device && !out.o.on_device && !q_.on_device;
  if (!host_) {
    o_rows_ = HostTensor(out.o.shape);
    lse_rows_ = HostTensor(out.lse.shape);
  }
}

StepRows::~StepRows() {
  b_.free(q_);
  b_.free(o_);
  b_.free(lse_);
}

void StepRows::load_query(int64_t t) {
  const int64_t rows = int64_t(s_.batch) * s_.q_heads, d = s_.head_dim;
  if (host_) {
    const float* src = in_.q.host_f32();
    float* dst = q_.host_f32();
    for (int64_t r = 0; r < rows; ++r) std::copy_n(src + (r * s_.q_len + t) * d, d, dst + r * d);
    return;
  }
  HostTensor q({s_.batch, s_.q_heads, 1, s_.head_dim});
  const float* src = in_.host->q.ptr();
  for (int64_t r = 0; r < rows; ++r) std::copy_n(src + (r * s_.q_len + t) * d, d, q.ptr() + r * d);
  b_.upload(q, q_);
}

void StepRows::store(int64_t t) {
  const int64_t rows = int64_t(s_.batch) * s_.q_heads, dv = s_.v_dim;
  const float* o;
  const float* lse;
  HostTensor ho, hl;
  float* out_o;
  float* out_l;
  if (host_) {
    o = o_.host_f32();
    lse = lse_.host_f32();
    out_o = out_.o.host_f32();
    out_l = out_.lse.host_f32();
  } else {
    ho = b_.download(o_);
    hl = b_.download(lse_);
    o = ho.ptr();
    lse = hl.ptr();
    out_o = o_rows_.ptr();
    out_l = lse_rows_.ptr();
  }
  for (int64_t r = 0; r < rows; ++r) {
    std::copy_n(o + r * dv, dv, out_o + (r * s_.q_len + t) * dv);
    if (out_.lse.data) out_l[r * s_.q_len + t] = lse[r];
  }
}

void StepRows::finish() {
  if (host_) return;
  b_.upload(o_rows_, out_.o);
  if (out_.lse.data) b_.upload(lse_rows_, out_.lse);
}

}  // namespace ab
