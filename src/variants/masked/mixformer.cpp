// MixFormer's asymmetric mixed attention.
// "MixFormer: End-to-End Tracking with Iterative Mixed Attention", Cui et al., CVPR 2022,
// arXiv 2203.11082 (MCG-NJU/MixFormer mixformer_vit/mixformer.py Attention.forward).
// docs/variants.md §23.
//
// Tokens are [templates; search]. Template queries attend to template keys only; search
// queries attend to every key. Non-causal (vision). As the paper's Attention.forward does, it
// runs as two dense (unmasked) SDPA calls — templates × templates, and search × all — so the
// cost is 4·(N_t² + N_s·(N_t + N_s))·d per head against 4·(N_t + N_s)²·d (docs/variants.md §23
// (e)). One call under the two-block mask computes the same, but at MixViT's N = 452 every
// 256 × 256 tile of the flash kernel mixes template and search rows, so nothing was skipped
// and the per-element mask made it 0.75x of dense (suites/mixformer.yaml on 2 cores). The
// template rows and keys are gathered into and out of contiguous buffers by the backend's
// copy_rows op (O(N·d) copies); the mask stays the definition (reference, selection).
#include <algorithm>
#include <memory>

#include "core/errors.hpp"
#include "core/mask_library.hpp"
#include "variants/dense_sdpa_base.hpp"

namespace ab {
namespace {

class MixFormer final : public DenseSdpaVariant {
 public:
  explicit MixFormer(ParamSet p) : DenseSdpaVariant(std::move(p)) {
    info_.name = "mixformer";
    info_.fidelity = {Fidelity::faithful, "the reference code's two dense SDPA calls"};
    info_.family = "masked";
    info_.paper = "MixFormer: End-to-End Tracking with Iterative Mixed Attention, Cui et al., "
                  "CVPR 2022, arXiv 2203.11082";
    info_.summary = "asymmetric mixed attention: template tokens see templates only, search "
                    "tokens see all (non-causal)";
    info_.params = {
        {"templates", ParamType::integer, int64_t{128},
         "template tokens N_t at the start (MixViT: 2 templates x 64 patches = 128); >= 1"},
        {"search", ParamType::integer, int64_t{0},
         "search tokens N_s (MixViT: 324); 0 = N - templates; N_t + N_s must equal N"},
    };
    info_.modes = {Mode::prefill};
  }

  const VariantInfo& info() const override { return info_; }

  AttnShape shape(const Problem& p) const override {
    const int64_t t = params_.integer("templates"), srch = params_.integer("search");
    if (t < 1) throw InputError("mixformer.templates = " + std::to_string(t) + ": must be >= 1");
    if (srch < 0) throw InputError("mixformer.search = " + std::to_string(srch) + ": must be >= 0");
    if (p.causal)
      throw InputError("mixformer: problem.causal = true: mixed attention is non-causal (vision "
                       "tokens); set problem.causal: false");
    if (t >= p.kv_len)
      throw InputError("mixformer.templates = " + std::to_string(t) + ": must be below N = " +
                       std::to_string(p.kv_len) + " (at least one search token)");
    if (srch > 0 && t + srch != p.kv_len)
      throw InputError("mixformer.search = " + std::to_string(srch) + ": templates + search = " +
                       std::to_string(t + srch) + " must equal N = " + std::to_string(p.kv_len));
    return shape_from_problem(p);
  }

  Mask mask(const AttnShape& s) const override {
    return to_mask(generate_mixformer(params_.integer("templates")), s.causal);
  }

  Cost cost(const AttnShape& s, const Plan* plan) const override {
    Cost c = DenseSdpaVariant::cost(s, plan);
    const double t = double(params_.integer("templates")), n = double(s.kv_len);
    c.executed = dense_flops(s, t * t + (n - t) * n);  // two unmasked calls
    const double dense_pairs = s.allowed_pairs();
    c.density = dense_pairs > 0 ? allowed_pairs(mask(s), s) / dense_pairs : 1.0;
    return c;
  }

  // The two calls' shapes: templates × templates, search × all.
  AttnShape template_shape(const AttnShape& s) const {
    AttnShape t = s;
    t.q_len = t.kv_len = params_.integer("templates");
    t.causal = false;
    return t;
  }
  AttnShape search_shape(const AttnShape& s) const {
    AttnShape t = s;
    t.q_len = s.kv_len - params_.integer("templates");
    t.causal = false;
    return t;
  }

  Support supports(const AttnShape& s, const Backend& b) const override {
    for (const AttnShape& sh : {template_shape(s), search_shape(s)}) {
      SdpaArgs a;
      a.shape = sh;
      const Support sup = b.supports_sdpa(a);
      if (!sup.ok) return sup;
    }
    CopyRowsArgs c;
    c.src.shape = {s.batch, s.q_heads, s.q_len, s.head_dim};
    c.dst.shape = {s.batch, s.q_heads, params_.integer("templates"), s.head_dim};
    c.rows = c.dst.shape[2];
    return b.supports_copy_rows(c);
  }

  // Buffers of the split, owned by the plan.
  struct Split {
    Backend* backend = nullptr;
    TensorRef qt, kt, vt, ot, lt, qs, os, ls;
    Split() = default;
    Split(const Split&) = delete;
    Split& operator=(const Split&) = delete;
    ~Split() {
      for (const TensorRef* x : {&qt, &kt, &vt, &ot, &lt, &qs, &os, &ls})
        if (x->data) backend->free(*x);
    }
  };

  Plan plan(const Inputs& in, Backend& b) override {
    Plan p = DenseSdpaVariant::plan(in, b);  // the selection: the keys the mask allows
    const AttnShape& s = in.shape;
    const AttnShape t = template_shape(s), r = search_shape(s);
    auto st = std::make_shared<Split>();
    st->backend = &b;
    st->qt = b.alloc({s.batch, s.q_heads, t.q_len, s.head_dim}, s.dtype);
    st->kt = b.alloc({s.batch, s.kv_heads, t.kv_len, s.head_dim}, s.dtype);
    st->vt = b.alloc({s.batch, s.kv_heads, t.kv_len, s.v_dim}, s.dtype);
    st->ot = b.alloc({s.batch, s.q_heads, t.q_len, s.v_dim}, s.dtype);
    st->lt = b.alloc({s.batch, s.q_heads, t.q_len, 1}, DType::f32);
    st->qs = b.alloc({s.batch, s.q_heads, r.q_len, s.head_dim}, s.dtype);
    st->os = b.alloc({s.batch, s.q_heads, r.q_len, s.v_dim}, s.dtype);
    st->ls = b.alloc({s.batch, s.q_heads, r.q_len, 1}, DType::f32);
    p.state = st;
    return p;
  }

  // Rows [r0, r0 + n) of every (batch, head) of a (B, H, N, C) tensor to or from a
  // (B, H, n, C) one.
  static void copy_rows(Backend& b, const TensorRef& big, const TensorRef& small, int64_t r0,
                        bool to_small) {
    CopyRowsArgs c;
    c.src = to_small ? big : small;
    c.dst = to_small ? small : big;
    c.src_row = to_small ? r0 : 0;
    c.dst_row = to_small ? 0 : r0;
    c.rows = small.shape[2];
    b.copy_rows(c);
  }

  void run(const Inputs& in, const Plan& plan, Outputs& out, Backend& b) override {
    const auto* st = static_cast<const Split*>(plan.state.get());
    if (!st) throw std::logic_error("mixformer: run() before plan()");
    const AttnShape& s = in.shape;
    const int64_t t = params_.integer("templates");
    copy_rows(b, in.q, st->qt, 0, true);
    copy_rows(b, in.q, st->qs, t, true);
    copy_rows(b, in.k, st->kt, 0, true);
    copy_rows(b, in.v, st->vt, 0, true);
    SdpaArgs a;  // O_mt = softmax(Q_mt K_mtᵀ/√d) V_mt
    a.shape = template_shape(s);
    a.q = st->qt;
    a.k = st->kt;
    a.v = st->vt;
    a.o = st->ot;
    a.lse = st->lt;
    a.scale = in.scale;
    b.sdpa(a);
    a.shape = search_shape(s);  // O_s = softmax(Q_s [K_mt; K_s]ᵀ/√d) [V_mt; V_s]
    a.q = st->qs;
    a.k = in.k;
    a.v = in.v;
    a.o = st->os;
    a.lse = st->ls;
    b.sdpa(a);
    copy_rows(b, out.o, st->ot, 0, false);
    copy_rows(b, out.lse, st->lt, 0, false);
    copy_rows(b, out.o, st->os, t, false);
    copy_rows(b, out.lse, st->ls, t, false);
  }

 private:
  VariantInfo info_;
};

}  // namespace

std::unique_ptr<Variant> make_mixformer(const ParamSet& p) { return std::make_unique<MixFormer>(p); }

}  // namespace ab
