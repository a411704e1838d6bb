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
  CopyRowsArgs a;
  a.src = in.q;
  a.dst = q_;
  op_ = b_.supports_copy_rows(a).ok;
  if (!op_) {
    q_all_ = b_.download(in.q);
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
  if (op_) {
    CopyRowsArgs a;
    a.src = in_.q;
    a.dst = q_;
    a.src_row = t;
    b_.copy_rows(a);
    return;
  }
  const int64_t rows = int64_t(s_.batch) * s_.q_heads, d = s_.head_dim;
  HostTensor q({s_.batch, s_.q_heads, 1, s_.head_dim});
  for (int64_t r = 0; r < rows; ++r) std::copy_n(q_all_.ptr() + (r * s_.q_len + t) * d, d, q.ptr() + r * d);
  b_.upload(q, q_);
}

void StepRows::store(int64_t t) {
  if (op_) {
    CopyRowsArgs a;
    a.src = o_;
    a.dst = out_.o;
    a.dst_row = t;
    b_.copy_rows(a);
    if (out_.lse.data) {
      a.src = lse_;
      a.dst = out_.lse;
      b_.copy_rows(a);
    }
    return;
  }
  const int64_t rows = int64_t(s_.batch) * s_.q_heads, dv = s_.v_dim;
  const HostTensor ho = b_.download(o_), hl = b_.download(lse_);
  for (int64_t r = 0; r < rows; ++r) {
    std::copy_n(ho.ptr() + r * dv, dv, o_rows_.ptr() + (r * s_.q_len + t) * dv);
    if (out_.lse.data) lse_rows_.ptr()[r * s_.q_len + t] = hl.ptr()[r];
  }
}

void StepRows::finish() {
  if (op_) return;
  b_.upload(o_rows_, out_.o);
  if (out_.lse.data) b_.upload(lse_rows_, out_.lse);
}

}  // namespace ab
