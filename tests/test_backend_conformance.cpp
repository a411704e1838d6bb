// Backend conformance, in the manner of ggml's test-backend-ops: every op of the Backend
// interface (core/backend.hpp) on every backend this build and machine offer (cpu, fake, and
// cuda with a GPU), on fresh random inputs of odd shapes, compared with the CPU backend: the
// fake device must give the CPU's bits exactly (it runs the CPU's ops on host copies; compared
// with bt::AlignedCpu, the CPU's ops on 64-byte-aligned memory, as the fake's copies are), the
// CPU backend itself must agree to 1e-5 (its buffers' alignment moves last bits), cuda within
// its dtype's tolerance (tolerance_for). The core ops are also checked against
// the float64 references of src/reference/attention_reference.hpp.
//
// Table-driven: kCases holds one entry per op × argument set; an entry builds its inputs on a
// backend from the case's seeded generator (the same values on every backend), asks supports_*,
// runs the op and downloads what it wrote. Adding an op is adding entries here and its name to
// bt::op_names() (tests/backend_test_util.hpp); a member added to Backend without both fails
// "every Backend op has a conformance entry".
// Seeds from std::random_device, printed with INFO; ATTN_TEST_SEED=<n> replays.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "backend_test_util.hpp"
#include "reference/attention_reference.hpp"

namespace {

using namespace ab;
using bt::put;

// One op case run on one backend.
struct Run {
  Backend& be;
  std::mt19937 rng;
  DType dtype = DType::f32;                   // of the random inputs (rounded to it)
  std::map<std::string, HostTensor> in;       // host copies of the inputs, by name
  std::map<std::string, HostTensor> out;      // what the op wrote, downloaded
  std::map<std::string, std::vector<int32_t>> ints;
  std::map<std::string, double> scalars;
  std::string unsupported;                    // supports_* said no: why
  std::vector<std::shared_ptr<void>> keep;    // host memory the args point at (head maps, items)

  Run(Backend& b, uint32_t seed) : be(b), rng(seed) {}
  TensorRef input(const std::string& name, const Shape4& s, float sd = 1.0f, float mean = 0.0f) {
    HostTensor h = bt::rounded(bt::random_tensor(s, rng, sd, mean), dtype);
    in[name] = h;
    return put(be, h, dtype);
  }
  TensorRef input_f32(const std::string& name, const Shape4& s, float sd = 1.0f) {
    HostTensor h = bt::random_tensor(s, rng, sd);
    in[name] = h;
    return put(be, h, DType::f32);
  }
  TensorRef output(const Shape4& s, DType t = DType::f32) { return bt::out_tensor(be, s, t); }
  void fetch(const std::string& name, const TensorRef& t) { out[name] = be.download(t); }
  void fetch_ints(const std::string& name, const IndexBuffer& b, int64_t n) { ints[name] = be.download_index_buffer(b, n); }
  bool supported(const Support& s) {
    if (!s.ok) unsupported = s.reason;
    return s.ok;
  }
  template <class T>
  T* hold(std::vector<T> v) {
    auto p = std::make_shared<std::vector<T>>(std::move(v));
    keep.push_back(p);
    return p->data();
  }
};

struct OpCase {
  std::string op;    // a name of bt::op_names()
  std::string args;  // what this argument set exercises
  std::function<void(Run&)> run;
  std::function<void(const Run&)> ref64 = nullptr;  // float64 check of the CPU's result
  // The CPU op's own last bits vary from run to run (its kernel keeps scratch in heap vectors
  // whose alignment its vector loops peel to): the fake device is then held to 1e-6, not bits.
  bool cpu_bits_vary = false;
  // The GPU computes in fp32 from the inputs the CPU sees (rounded to the case's dtype) and
  // stores fp32: its error is that of fp32 sums in another order, so the fp32 bound applies
  // whatever the input type (bf16/fp16 storage of an output would not).
  bool fp32_math = false;
  // (Positional initialisers reach up to here.) A GPU backend's check against the CPU's run
  // where the dtype's default (tolerance_for) does not fit: a tolerance derived for the op (relative to max(1, |cpu|), as compare()), or a
  // check of its own (per-element bounds, tile-walk counts).
  double gpu_tol = 0;
  std::function<void(const Run& cpu, const Run& gpu)> gpu_check = nullptr;
};

AttnShape shape_of(int B, int Hq, int Hkv, int d, int dv, int64_t nq, int64_t nkv, bool causal) {
  AttnShape s;
  s.batch = B;
  s.q_heads = Hq;
  s.kv_heads = Hkv;
  s.head_dim = d;
  s.v_dim = dv;
  s.q_len = nq;
  s.kv_len = nkv;
  s.causal = causal;
  return s;
}

// The unit roundoff of round-to-nearest into t: 2^-8 (bf16, 8 significant bits), 2^-11
// (fp16), 2^-24 (fp32).
double unit_roundoff(DType t) {
  return t == DType::bf16 ? std::ldexp(1.0, -8) : t == DType::f16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -24);
}

// Random CSR lists: `lists` lists of ascending distinct values < n, list l empty when l % 7 == 3.
void random_lists(std::mt19937& rng, int64_t lists, int64_t n, double keep, std::vector<int32_t>& offsets,
                  std::vector<int32_t>& values) {
  std::bernoulli_distribution pick(keep);
  offsets = {0};
  values.clear();
  for (int64_t l = 0; l < lists; ++l) {
    if (l % 7 != 3)
      for (int64_t j = 0; j < n; ++j)
        if (pick(rng)) values.push_back(int32_t(j));
    offsets.push_back(int32_t(values.size()));
  }
}

// The float64 check of op 1: sampled rows of o and lse against sdpa_transformed_reference_row.
void check_sdpa_rows(const Run& r, const SdpaArgs& a, double tol) {
  const AttnShape& s = a.shape;
  const HostTensor& o = r.out.at("o");
  const HostTensor& lse = r.out.at("lse");
  std::vector<double> want(size_t(s.v_dim));
  double err = 0, lerr = 0;
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < s.q_heads; ++h)
      for (int64_t i : {int64_t(0), s.q_len / 2, s.q_len - 1}) {
        double wl = 0;
        sdpa_transformed_reference_row(a, r.in.at("q"), r.in.at("k"), r.in.at("v"), b, h, i, want.data(), &wl);
        for (int c = 0; c < s.v_dim; ++c) err = std::max(err, std::fabs(o.row(b, h, i)[c] - want[size_t(c)]));
        const double gl = lse.row(b, h, i)[0];
        if (!(std::isinf(wl) && std::isinf(gl) && (wl < 0) == (gl < 0)))
          lerr = std::max(lerr, std::fabs(gl - wl) / std::max(1.0, std::fabs(wl)));
      }
  INFO("max |o - o64| " << err << ", lse " << lerr);
  CHECK(err <= tol);
  CHECK(lerr <= tol);
}

// ---- The table ------------------------------------------------------------------------------
SdpaArgs sdpa_args(Run& r, const AttnShape& s) {
  SdpaArgs a;
  a.shape = s;
  a.q = r.input("q", {s.batch, s.q_heads, s.q_len, s.head_dim});
  a.k = r.input("k", {s.batch, s.kv_heads, s.kv_len, s.head_dim});
  a.v = r.input("v", {s.batch, s.kv_heads, s.kv_len, s.v_dim}, 1.0f, 0.5f);
  a.o = r.output({s.batch, s.q_heads, s.q_len, s.v_dim}, s.dtype);
  a.lse = r.output({s.batch, s.q_heads, s.q_len, 1});
  a.mask.causal = s.causal;
  return a;
}

std::vector<OpCase> make_cases() {
  std::vector<OpCase> cases;
  // ---- op 1: sdpa --------------------------------------------------------------------------
  struct SdpaSet {
    std::string name;
    AttnShape s;
    std::function<void(SdpaArgs&, Run&)> tweak;
  };
  const std::vector<SdpaSet> sdpa_sets = {
      {"causal GQA 3, N=129, D=40", shape_of(2, 6, 2, 40, 40, 129, 129, true), nullptr},
      {"dense, Nq=37 < Nkv=129, D=24, Dv=40", shape_of(1, 3, 1, 24, 40, 37, 129, false), nullptr},
      {"window 32 + 4 sinks, scale 0.3", shape_of(1, 6, 2, 24, 24, 129, 129, true),
       [](SdpaArgs& a, Run&) {
         a.mask.window = 32;
         a.mask.sinks = 4;
         a.scale = 0.3f;
       }},
      {"sigmoid, normalised, bias -1", shape_of(1, 6, 2, 24, 24, 37, 37, true),
       [](SdpaArgs& a, Run&) {
         a.transform = ScoreTransform::sigmoid;
         a.transform_bias = -1.0f;
         a.transform_normalize = true;
       }},
      {"relu", shape_of(2, 3, 3, 24, 24, 37, 37, false), [](SdpaArgs& a, Run&) { a.transform = ScoreTransform::relu; }},
      {"softcap 2", shape_of(1, 6, 2, 40, 40, 37, 129, true),
       [](SdpaArgs& a, Run&) {
         a.transform = ScoreTransform::softcap;
         a.softcap = 2.0f;
       }},
      {"head map", shape_of(1, 6, 2, 24, 24, 37, 37, true),
       [](SdpaArgs& a, Run& r) { a.head_map = r.hold(std::vector<int>{1, 0, 1, 0, 0, 1}); }},
      {"decode, 1 row of 129 keys", shape_of(2, 6, 2, 40, 40, 1, 129, true), nullptr},
  };
  for (const SdpaSet& set : sdpa_sets) {
    auto build = [set](Run& r) {
      SdpaArgs a = sdpa_args(r, set.s);
      if (set.tweak) set.tweak(a, r);
      if (!r.supported(r.be.supports_sdpa(a))) return;
      r.be.sdpa(a);
      r.fetch("o", a.o);
      r.fetch("lse", a.lse);
    };
    cases.push_back({"sdpa", set.name, build, [set](const Run& r) {
                       std::vector<int> map = {1, 0, 1, 0, 0, 1};
                       SdpaArgs a;
                       a.shape = set.s;
                       a.mask.causal = set.s.causal;
                       Run tmp(r.be, 0);
                       if (set.tweak) set.tweak(a, tmp);
                       if (a.head_map) a.head_map = map.data();
                       check_sdpa_rows(r, a, 2e-4 * 8);
                     }});
  }
  // bf16 inputs: the type a GPU runs (the CPU rounds inputs; bf16 products where it has them).
  cases.push_back({"sdpa", "bf16, causal GQA 3, N=129, D=40",
                   [](Run& r) {
                     r.dtype = DType::bf16;
                     AttnShape s = shape_of(1, 6, 2, 40, 40, 129, 129, true);
                     s.dtype = DType::bf16;
                     SdpaArgs a = sdpa_args(r, s);
                     if (!r.supported(r.be.supports_sdpa(a))) return;
                     r.be.sdpa(a);
                     r.fetch("o", a.o);
                     r.fetch("lse", a.lse);
                   },
                   [](const Run& r) {
                     SdpaArgs a;
                     a.shape = shape_of(1, 6, 2, 40, 40, 129, 129, true);
                     a.mask.causal = true;
                     check_sdpa_rows(r, a, tolerance_for(DType::bf16, false).max_abs);
                   }});

  // ---- op 1's companions ------------------------------------------------------------------------
  for (bool elementwise : {false, true})
    cases.push_back({"output_gate", elementwise ? "elementwise gate" : "headwise gate", [elementwise](Run& r) {
                       OutputGateArgs a;
                       a.o = r.input("o", {2, 3, 37, 24});
                       a.gate = r.input("gate", {2, 3, 37, elementwise ? 24 : 1});
                       if (!r.supported(r.be.supports_output_gate(a))) return;
                       r.be.output_gate(a);
                       r.fetch("o", a.o);
                     }});
  for (ProbsOp op : {ProbsOp::materialize, ProbsOp::column_mass, ProbsOp::apply})
    cases.push_back({"attention_probs",
                     op == ProbsOp::materialize ? "materialize P, causal GQA 3"
                     : op == ProbsOp::column_mass ? "column mass from sdpa's LSE"
                                                  : "apply a batch-shared P",
                     [op](Run& r) {
                       const AttnShape s = shape_of(2, 6, 2, 24, 24, 37, 45, true);
                       AttnProbsArgs a;
                       a.op = op;
                       a.sdpa = sdpa_args(r, s);
                       if (op == ProbsOp::column_mass) {
                         // The rows' LSE comes from op 1 on the same backend (CUDA: no kernel
                         // for this fp32, d = 24 shape, and no probability ops either).
                         if (!r.supported(r.be.supports_sdpa(a.sdpa))) return;
                         r.be.sdpa(a.sdpa);
                         a.column = r.output({2, 6, 1, 45});
                       } else if (op == ProbsOp::materialize) {
                         a.probs = r.output({2, 6, 37, 45});
                       } else {
                         a.probs = r.input_f32("probs", {1, 6, 37, 45}, 0.1f);
                       }
                       if (!r.supported(r.be.supports_attention_probs(a))) return;
                       r.be.attention_probs(a);
                       if (op == ProbsOp::column_mass) r.fetch("column", a.column);
                       if (op == ProbsOp::materialize) r.fetch("probs", a.probs);
                       if (op == ProbsOp::apply) r.fetch("o", a.sdpa.o);
                     }});

  // Per-head scaling: a separate output, then in place (x and out one tensor).
  for (bool in_place : {false, true})
    cases.push_back({"scale_heads", in_place ? "in place, 3 heads" : "into out, 5 heads, a zero factor",
                     [in_place](Run& r) {
                       const int H = in_place ? 3 : 5;
                       ScaleHeadsArgs a;
                       a.x = r.input("x", {2, H, 37, 24});
                       a.out = in_place ? a.x : r.output({2, H, 37, 24});
                       std::vector<float> f = {0.5f, -1.75f, 3.1f, 0.0f, 1e-3f};
                       f.resize(size_t(H));
                       a.factor = r.hold(f);
                       if (!r.supported(r.be.supports_scale_heads(a))) return;
                       r.be.scale_heads(a);
                       r.fetch("out", a.out);
                     },
                     [](const Run& r) {
                       const std::vector<float> f = {0.5f, -1.75f, 3.1f, 0.0f, 1e-3f};
                       const HostTensor& x = r.in.at("x");
                       const HostTensor& o = r.out.at("out");
                       const int64_t H = x.shape[1], slice = x.shape[2] * x.shape[3];
                       double err = 0;
                       for (int64_t e = 0; e < x.numel(); ++e) {
                         const double want = double(x.data[size_t(e)]) * f[size_t((e / slice) % H)];
                         err = std::max(err, std::fabs(o.data[size_t(e)] - want) / std::max(1.0, std::fabs(want)));
                       }
                       CHECK(err <= 1e-6);
                     }});
  // LSE blend: rows with −inf on either side keep o; o may alias o_n.
  for (bool alias : {false, true})
    cases.push_back({"lse_blend", alias ? "o aliases o_n, beta 1" : "beta 0.6, rows without sinks or with only sinks",
                     [alias](Run& r) {
                       const Shape4 os{2, 3, 37, 40}, ls{2, 3, 37, 1};
                       HostTensor l_s = bt::random_tensor(ls, r.rng, 2.0f), l_n = bt::random_tensor(ls, r.rng, 2.0f);
                       const float ninf = -std::numeric_limits<float>::infinity();
                       for (size_t i = 0; i < l_s.data.size(); i += 7) l_s.data[i] = ninf;
                       for (size_t i = 3; i < l_n.data.size(); i += 11) l_n.data[i] = ninf;
                       r.in["lse_s"] = l_s;
                       r.in["lse_n"] = l_n;
                       LseBlendArgs a;
                       a.o_s = r.input("o_s", os);
                       a.o_n = r.input("o_n", os, 1.0f, 0.5f);
                       a.o = alias ? a.o_n : r.input("o", os);
                       a.lse_s = put(r.be, l_s);
                       a.lse_n = put(r.be, l_n);
                       a.beta = alias ? 1.0f : 0.6f;
                       r.scalars["beta"] = a.beta;
                       if (!r.supported(r.be.supports_lse_blend(a))) return;
                       r.be.lse_blend(a);
                       r.fetch("o", a.o);
                     },
                     [](const Run& r) {
                       const HostTensor& os = r.in.at("o_s");
                       const HostTensor& on = r.in.at("o_n");
                       const HostTensor& o0 = r.in.count("o") ? r.in.at("o") : on;
                       const HostTensor& ls = r.in.at("lse_s");
                       const HostTensor& ln = r.in.at("lse_n");
                       const HostTensor& got = r.out.at("o");
                       const double beta = r.scalars.at("beta");
                       const int64_t dv = os.shape[3];
                       double err = 0;
                       int blended = 0;
                       for (size_t row = 0; row < ls.data.size(); ++row) {
                         const bool both = std::isfinite(ls.data[row]) && std::isfinite(ln.data[row]);
                         blended += both;
                         const double m = both ? 1.0 / (1.0 + std::exp(double(ln.data[row]) - ls.data[row])) : 0;
                         for (int64_t c = 0; c < dv; ++c) {
                           const size_t e = row * size_t(dv) + size_t(c);
                           const double want = both ? beta * m * os.data[e] + (1 - beta * m) * on.data[e] : o0.data[e];
                           err = std::max(err, std::fabs(got.data[e] - want));
                         }
                       }
                       CHECK(blended > 0);
                       CHECK(blended < int(ls.data.size()));
                       CHECK(err <= 1e-5);
                     }});
  // The tiles op 1 and attention_probs visit: at least the allowed pairs, at most all of them.
  struct PairsSet {
    std::string name;
    AttnShape s;
    std::function<void(SdpaArgs&)> tweak;
  };
  const std::vector<PairsSet> pairs_sets = {
      {"causal, N=301", shape_of(1, 6, 2, 40, 40, 301, 301, true), nullptr},
      {"dense, Nq=37 < Nkv=129", shape_of(2, 3, 1, 24, 40, 37, 129, false), nullptr},
      {"causal Nq=37 < Nkv=301, window 64 + 4 sinks", shape_of(1, 6, 2, 24, 24, 37, 301, true),
       [](SdpaArgs& a) {
         a.mask.window = 64;
         a.mask.sinks = 4;
       }},
      {"sigmoid, causal, N=129", shape_of(1, 3, 3, 24, 24, 129, 129, true),
       [](SdpaArgs& a) { a.transform = ScoreTransform::sigmoid; }},
      {"decode row, 301 keys", shape_of(1, 6, 2, 40, 40, 1, 301, true), nullptr},
      {"causal Nq=100 < Nkv=1000, window 64 + 4 sinks", shape_of(1, 6, 2, 128, 128, 100, 1000, true),
       [](SdpaArgs& a) {
         a.mask.window = 64;
         a.mask.sinks = 4;
       }},
  };
  // Allowed (query, key) pairs per head of a's shape and mask (bottom-right aligned).
  auto allowed_pairs = [](const SdpaArgs& a) {
    double n = 0;
    const int64_t off = a.shape.kv_len - a.shape.q_len;
    for (int64_t i = 0; i < a.shape.q_len; ++i)
      for (int64_t j = 0; j < a.shape.kv_len; ++j) n += a.mask.allows(0, 0, i + off, j);
    return n;
  };
  for (const PairsSet& set : pairs_sets) {
    auto args = [set] {
      SdpaArgs a;
      a.shape = set.s;
      a.mask.causal = set.s.causal;
      if (set.tweak) set.tweak(a);
      return a;
    };
    cases.push_back({"sdpa_executed_pairs", set.name,
                     [args](Run& r) {
                       const std::optional<double> p = r.be.sdpa_executed_pairs(args());
                       if (!p) {
                         r.unsupported = r.be.name() + " does not count executed pairs";
                         return;
                       }
                       r.scalars["pairs"] = *p;
                     },
                     [args, allowed_pairs](const Run& r) {
                       const SdpaArgs a = args();
                       const double p = r.scalars.at("pairs");
                       INFO("pairs " << p << ", allowed " << allowed_pairs(a));
                       CHECK(p >= allowed_pairs(a));
                       CHECK(p <= double(a.shape.q_len) * double(a.shape.kv_len));
                     }});
    if (set.name.rfind("sigmoid", 0) == 0) continue;  // attention_probs: softmax only
    // Another backend tiles differently: its own count within the same bounds, materialize
    // allowed two passes over its tiles (row statistics, then P).
    auto gpu_check = [args, allowed_pairs](const Run& cpu, const Run& gpu) {
      (void)cpu;
      const SdpaArgs a = args();
      const double all = double(a.shape.q_len) * double(a.shape.kv_len);
      for (const char* n : {"column_mass", "materialize"}) {
        INFO(n << " on " << gpu.be.name());
        REQUIRE(gpu.scalars.count(n));
        CHECK(gpu.scalars.at(n) >= (std::string(n) == "materialize" ? 2 : 1) * allowed_pairs(a));
        CHECK(gpu.scalars.at(n) <= (std::string(n) == "materialize" ? 2 : 1) * all);
      }
    };
    cases.push_back({"attention_probs_executed_pairs", set.name + ": column mass and materialize",
                     [args](Run& r) {
                       for (ProbsOp op : {ProbsOp::column_mass, ProbsOp::materialize}) {
                         AttnProbsArgs a;
                         a.op = op;
                         a.sdpa = args();
                         const std::optional<double> p = r.be.attention_probs_executed_pairs(a);
                         if (!p) {
                           r.unsupported = r.be.name() + " does not count attention_probs' executed pairs";
                           return;
                         }
                         r.scalars[op == ProbsOp::column_mass ? "column_mass" : "materialize"] = *p;
                       }
                     },
                     [args, allowed_pairs](const Run& r) {
                       const SdpaArgs a = args();
                       for (const char* n : {"column_mass", "materialize"}) {
                         INFO(n);
                         CHECK(r.scalars.at(n) >= allowed_pairs(a));
                         CHECK(r.scalars.at(n) <= double(a.shape.q_len) * double(a.shape.kv_len));
                       }
                     },
                     false, false, 0, gpu_check});
  }

  // ---- op 1's companions in the GPU's types (bf16, fp16) and shapes (d 64, 128) --------------
  // The tolerances follow from one rounding to the storage type: u = 2^-8 (bf16) or 2^-11 (fp16),
  // the unit roundoff of round-to-nearest. The CPU computes in fp32 from the same rounded inputs
  // and keeps fp32 results; a GPU result rounded once to T is within u·|x| of it, plus the fp32
  // arithmetic's own differences (approximate exp2/rcp ~1e-7 relative).
  for (DType dt : {DType::bf16, DType::f16}) {
    const std::string tn = std::string(dtype_name(dt)) + ", ";
    const double u = unit_roundoff(dt);
    struct GateSet {
      std::string name;
      Shape4 o;
      bool elementwise;
    };
    for (const GateSet& set : {GateSet{"headwise, Nq=7, Dv=64", {2, 3, 7, 64}, false},
                               GateSet{"elementwise, Nq=100, Dv=128", {1, 5, 100, 128}, true},
                               GateSet{"elementwise, Nq=1, Dv=40", {2, 3, 1, 40}, true}}) {
      OpCase c{"output_gate", tn + set.name, [set, dt](Run& r) {
                 r.dtype = dt;
                 OutputGateArgs a;
                 a.o = r.input("o", set.o);
                 a.gate = r.input("gate", {set.o[0], set.o[1], set.o[2], set.elementwise ? set.o[3] : 1}, 2.0f);
                 if (!r.supported(r.be.supports_output_gate(a))) return;
                 r.be.output_gate(a);
                 r.fetch("o", a.o);
               }};
      c.gpu_tol = u + 1e-6;
      cases.push_back(c);
    }
    for (bool in_place : {false, true}) {
      OpCase c{"scale_heads", tn + (in_place ? "in place, 3 heads, N=7, D=128" : "into out, 5 heads, N=1000, D=64"),
               [in_place, dt](Run& r) {
                 r.dtype = dt;
                 const Shape4 sh = in_place ? Shape4{1, 3, 7, 128} : Shape4{2, 5, 1000, 64};
                 ScaleHeadsArgs a;
                 a.x = r.input("x", sh);
                 a.out = in_place ? a.x : r.output(sh, dt);
                 std::vector<float> f = {0.5f, -1.75f, 3.1f, 0.0f, 1e-3f};
                 f.resize(size_t(sh[1]));
                 a.factor = r.hold(f);
                 if (!r.supported(r.be.supports_scale_heads(a))) return;
                 r.be.scale_heads(a);
                 r.fetch("out", a.out);
               }};
      c.gpu_tol = u + 1e-6;
      cases.push_back(c);
    }
    for (bool big : {false, true}) {
      OpCase c{"lse_blend", tn + (big ? "N=1000, Dv=128, o aliases o_n" : "N=37, Dv=40"), [big, dt](Run& r) {
                 r.dtype = dt;
                 const Shape4 os = big ? Shape4{1, 4, 1000, 128} : Shape4{2, 3, 37, 40};
                 const Shape4 ls{os[0], os[1], os[2], 1};
                 HostTensor l_s = bt::random_tensor(ls, r.rng, 2.0f), l_n = bt::random_tensor(ls, r.rng, 2.0f);
                 const float ninf = -std::numeric_limits<float>::infinity();
                 for (size_t i = 0; i < l_s.data.size(); i += 7) l_s.data[i] = ninf;
                 for (size_t i = 3; i < l_n.data.size(); i += 11) l_n.data[i] = ninf;
                 r.in["lse_s"] = l_s;
                 r.in["lse_n"] = l_n;
                 LseBlendArgs a;
                 a.o_s = r.input("o_s", os);
                 a.o_n = r.input("o_n", os, 1.0f, 0.5f);
                 a.o = big ? a.o_n : r.input("o", os);
                 a.lse_s = put(r.be, l_s);
                 a.lse_n = put(r.be, l_n);
                 a.beta = 0.4f;
                 if (!r.supported(r.be.supports_lse_blend(a))) return;
                 r.be.lse_blend(a);
                 r.fetch("o", a.o);
               }};
      c.gpu_tol = u + 1e-5;
      cases.push_back(c);
    }
    // The probability ops on odd shapes: N 1, 7, 100, 1000; Nq < Nkv; GQA; causal, dense,
    // window + sinks (causal and two-sided).
    struct ProbsSet {
      std::string name;
      AttnShape s;
      int64_t window, sinks;
    };
    const std::vector<ProbsSet> probs_sets = {
        {"N=1, GQA 3, d 64", shape_of(2, 6, 2, 64, 64, 1, 1, true), 0, 0},
        {"causal N=7, d 128", shape_of(1, 3, 3, 128, 128, 7, 7, true), 0, 0},
        {"dense N=100, GQA 2, d 64", shape_of(2, 4, 2, 64, 64, 100, 100, false), 0, 0},
        {"causal Nq=100 < Nkv=1000, window 64 + 4 sinks, GQA 3, d 128", shape_of(1, 6, 2, 128, 128, 100, 1000, true), 64, 4},
        {"causal N=1000, GQA 4, d 64", shape_of(1, 4, 1, 64, 64, 1000, 1000, true), 0, 0},
        {"two-sided window 16 + 2 sinks, Nq=7 < Nkv=100, d 64", shape_of(2, 2, 1, 64, 64, 7, 100, false), 16, 2},
    };
    for (const ProbsSet& set : probs_sets)
      for (ProbsOp op : {ProbsOp::column_mass, ProbsOp::materialize, ProbsOp::apply}) {
        const char* opn = op == ProbsOp::column_mass ? "column mass: " : op == ProbsOp::materialize ? "materialize: " : "apply: ";
        OpCase c{"attention_probs", tn + opn + set.name, [set, op, dt](Run& r) {
                   r.dtype = dt;
                   AttnShape s = set.s;
                   s.dtype = dt;
                   AttnProbsArgs a;
                   a.op = op;
                   a.sdpa = sdpa_args(r, s);
                   a.sdpa.mask.window = set.window;
                   a.sdpa.mask.sinks = set.sinks;
                   if (op == ProbsOp::column_mass) {
                     // The rows' LSE from op 1 on the same backend, as ACT takes it.
                     if (!r.supported(r.be.supports_sdpa(a.sdpa))) return;
                     r.be.sdpa(a.sdpa);
                     a.column = r.output({s.batch, s.q_heads, 1, s.kv_len});
                   } else if (op == ProbsOp::materialize) {
                     a.probs = r.output({s.batch, s.q_heads, s.q_len, s.kv_len});
                   } else {
                     // P of batch 1 shared by every batch entry where B > 1 and the mask is
                     // dense, otherwise one per batch entry; zero where the mask hides a key
                     // (the op's contract: it skips the key tiles the mask leaves empty).
                     const int64_t pb = s.batch > 1 && set.window == 0 ? 1 : s.batch;
                     HostTensor p = bt::random_tensor({pb, s.q_heads, s.q_len, s.kv_len}, r.rng, 0.1f);
                     const int64_t off = s.kv_len - s.q_len;
                     for (int64_t b = 0; b < pb; ++b)
                       for (int h = 0; h < s.q_heads; ++h)
                         for (int64_t i = 0; i < s.q_len; ++i)
                           for (int64_t j = 0; j < s.kv_len; ++j)
                             if (!a.sdpa.mask.allows(int(b), h, i + off, j)) p.row(b, h, i)[j] = 0.f;
                     r.in["probs"] = p;
                     a.probs = put(r.be, p);
                   }
                   if (!r.supported(r.be.supports_attention_probs(a))) return;
                   r.be.attention_probs(a);
                   if (op == ProbsOp::column_mass) r.fetch("column", a.column);
                   if (op == ProbsOp::materialize) r.fetch("probs", a.probs);
                   if (op == ProbsOp::apply) r.fetch("o", a.sdpa.o);
                 }};
        if (op == ProbsOp::apply) {
          // o = Σ_j p_j v_j with P rounded to T for the tensor cores: |Δo| ≤ u·Σ_j |p_j||v_j|,
          // plus the output's rounding u·|o| and the fp32 sums (1e-6 of Σ |p||v|); 1.1x margin.
          c.gpu_check = [u](const Run& cpu, const Run& gpu) {
            const HostTensor& p = cpu.in.at("probs");
            const HostTensor& v = cpu.in.at("v");
            const HostTensor& want = cpu.out.at("o");
            const HostTensor& got = gpu.out.at("o");
            REQUIRE(got.shape == want.shape);
            const int64_t B = want.shape[0], H = want.shape[1], N = want.shape[2], dv = want.shape[3];
            const int64_t nkv = p.shape[3], group = H / v.shape[1];
            int64_t bad = 0;
            double worst = 0;
            for (int64_t b = 0; b < B; ++b)
              for (int64_t h = 0; h < H; ++h)
                for (int64_t i = 0; i < N; ++i) {
                  const float* pr = p.row(p.shape[0] == 1 ? 0 : b, h, i);
                  for (int64_t c2 = 0; c2 < dv; ++c2) {
                    double mag = 0;
                    for (int64_t j = 0; j < nkv; ++j) mag += std::fabs(pr[j]) * std::fabs(v.row(b, h / group, j)[c2]);
                    const double w = want.row(b, h, i)[c2], g = got.row(b, h, i)[c2];
                    const double bound = 1.1 * u * (mag + std::fabs(w)) + 1e-6 * mag + 1e-7;
                    worst = std::max(worst, std::fabs(g - w) / bound);
                    bad += !(std::fabs(g - w) <= bound);
                  }
                }
            INFO("apply: worst |o - o_cpu| / bound " << worst);
            CHECK(bad == 0);
          };
        } else {
          // Scores in fp32 from the same rounded inputs: the dot products' order differs by
          // at most γ_D·Σ|q_c k_c| (D·2^-24·0.64·D·scale ≈ 5e-5 at D = 128), moving p by that
          // relative amount; the other backend's LSE (column mass) by as much again.
          c.gpu_tol = 2e-4;
        }
        cases.push_back(c);
      }
  }

  // ---- op 2: sparse prefill --------------------------------------------------------------------
  // Key-block lists into the state, then key-index lists continuing it (state_in aliases
  // state_out) and finalising; the executed-pairs count of both.
  for (bool causal : {true, false})
    cases.push_back({"sparse_prefill", std::string("block lists then index lists, resumed state, ") + (causal ? "causal" : "dense"),
                     [causal](Run& r) {
                       const AttnShape s = shape_of(2, 6, 2, 24, 40, 129, 129, causal);
                       SparsePrefillArgs a;
                       a.shape = s;
                       a.q = r.input("q", {2, 6, 129, 24}, 2.0f);
                       a.k = r.input("k", {2, 2, 129, 24});
                       a.v = r.input("v", {2, 2, 129, 40}, 1.0f, 0.5f);
                       a.layout = SparseLayout::key_blocks;
                       a.blocks.q_block = 16;
                       a.blocks.k_block = 32;
                       a.blocks.list_heads = 6;
                       std::vector<int32_t> off, val;
                       random_lists(r.rng, 2 * 6 * 9, 5, 0.5, off, val);
                       const IndexLists bl = r.be.upload_indices(off, val);
                       a.blocks.offsets = bl.offsets;
                       a.blocks.blocks = bl.indices;
                       a.blocks.on_device = bl.on_device;
                       a.state_out.m = r.output({2, 6, 129, 1});
                       a.state_out.l = r.output({2, 6, 129, 1});
                       a.state_out.acc = r.output({2, 6, 129, 40});
                       a.finalize = false;
                       if (!r.supported(r.be.supports_sparse_prefill(a))) return;
                       r.be.sparse_prefill(a);
                       {
                         SparsePrefillArgs host = a;  // the plan's host copies of the lists
                         host.blocks.offsets = off.data();
                         host.blocks.blocks = val.data();
                         host.blocks.on_device = false;
                         r.scalars["pairs(blocks)"] = r.be.sparse_prefill_executed_pairs(host).value_or(-1);
                       }
                       r.fetch("m", a.state_out.m);
                       r.fetch("l", a.state_out.l);
                       r.fetch("acc", a.state_out.acc);
                       SparsePrefillArgs b = a;
                       b.layout = SparseLayout::key_indices;
                       b.blocks = {};
                       b.indices.q_group = 8;
                       b.indices.n_groups = 17;
                       b.indices.list_heads = 1;
                       std::vector<int32_t> ioff = {0}, ival;
                       std::uniform_int_distribution<int> key(0, 128);
                       for (int l = 0; l < 2 * 17; ++l) {
                         std::vector<int32_t> keys(size_t(l % 5 == 2 ? 0 : 1 + l % 9));
                         for (int32_t& j : keys) j = key(r.rng);
                         std::sort(keys.begin(), keys.end());  // repeats allowed
                         ival.insert(ival.end(), keys.begin(), keys.end());
                         ioff.push_back(int32_t(ival.size()));
                       }
                       const IndexLists il = r.be.upload_indices(ioff, ival);
                       b.indices.offsets = il.offsets;
                       b.indices.indices = il.indices;
                       b.indices.on_device = il.on_device;
                       b.state_in = a.state_out;
                       b.finalize = true;
                       b.o = r.output({2, 6, 129, 40});
                       b.lse = r.output({2, 6, 129, 1});
                       if (!r.supported(r.be.supports_sparse_prefill(b))) return;
                       r.be.sparse_prefill(b);
                       {
                         SparsePrefillArgs host = b;
                         host.indices.offsets = ioff.data();
                         host.indices.indices = ival.data();
                         host.indices.on_device = false;
                         r.scalars["pairs(indices)"] = r.be.sparse_prefill_executed_pairs(host).value_or(-1);
                       }
                       r.fetch("o", b.o);
                       r.fetch("lse", b.lse);
                       r.fetch("m'", b.state_out.m);
                       r.fetch("acc'", b.state_out.acc);
                     }});
  cases.push_back({"sparse_prefill_executed_pairs", "explicit query rows, lists in backend memory", [](Run& r) {
                     const AttnShape s = shape_of(1, 3, 1, 24, 24, 37, 37, true);
                     SparsePrefillArgs a;
                     a.shape = s;
                     a.layout = SparseLayout::key_indices;
                     a.indices.list_heads = 3;
                     a.indices.n_groups = 2;
                     const std::vector<int32_t> qoff = {0, 3, 5, 5, 9, 10, 12}, rows = {0, 5, 36, 2, 3, 1, 7, 8, 9, 4, 10, 11};
                     const std::vector<int32_t> koff = {0, 2, 4, 4, 7, 8, 10}, keys = {0, 1, 3, 30, 0, 2, 2, 5, 1, 9};
                     const IndexLists q = r.be.upload_indices(qoff, rows), k = r.be.upload_indices(koff, keys);
                     a.indices.q_offsets = q.offsets;
                     a.indices.q_rows = q.indices;
                     a.indices.offsets = k.offsets;
                     a.indices.indices = k.indices;
                     a.indices.on_device = q.on_device;
                     const std::optional<double> pairs = r.be.sparse_prefill_executed_pairs(a);
                     if (!pairs) {
                       r.unsupported = r.be.name() + " does not count executed pairs";
                       return;
                     }
                     r.scalars["pairs"] = *pairs;
                   }});

  // ---- op 3: gather decode ------------------------------------------------------------------------
  cases.push_back({"gather_decode", "GQA 3, 3 rows, 129 keys, one empty list",
                   [](Run& r) {
                     const AttnShape s = shape_of(2, 6, 2, 24, 40, 3, 129, false);
                     GatherDecodeArgs a;
                     a.shape = s;
                     a.q = r.input("q", {2, 6, 3, 24}, 2.0f);
                     a.k = r.input("k", {2, 2, 129, 24});
                     a.v = r.input("v", {2, 2, 129, 40}, 1.0f, 0.5f);
                     a.o = r.output({2, 6, 3, 40});
                     a.lse = r.output({2, 6, 3, 1});
                     std::vector<int32_t> off = {0}, idx;
                     for (int l = 0; l < 4; ++l) {
                       for (int j = 0; j < 129 && l != 2; ++j)
                         if ((j * 7 + l * 3) % 5 == 0) idx.push_back(j);
                       off.push_back(int32_t(idx.size()));
                     }
                     r.ints["lists"] = idx;
                     r.ints["offsets"] = off;
                     a.lists = r.be.upload_indices(off, idx);
                     if (!r.supported(r.be.supports_gather_decode(a))) return;
                     r.be.gather_decode(a);
                     r.fetch("o", a.o);
                     r.fetch("lse", a.lse);
                   },
                   [](const Run& r) {
                     const AttnShape s = shape_of(2, 6, 2, 24, 40, 3, 129, false);
                     const auto& off = r.ints.at("offsets");
                     const auto& idx = r.ints.at("lists");
                     std::vector<double> want(40);
                     double err = 0;
                     for (int b = 0; b < 2; ++b)
                       for (int h = 0; h < 6; ++h)
                         for (int64_t i = 0; i < 3; ++i) {
                           const int kh = h / 3;
                           const int l = b * 2 + kh;
                           std::vector<int64_t> keys(idx.begin() + off[size_t(l)], idx.begin() + off[size_t(l) + 1]);
                           double wl = 0;
                           gather_reference_row(r.in.at("q"), r.in.at("k"), r.in.at("v"), s, 1.0 / std::sqrt(24.0), kh, b, h,
                                                i, keys, want.data(), &wl);
                           for (int c = 0; c < 40; ++c) err = std::max(err, std::fabs(r.out.at("o").row(b, h, i)[c] - want[size_t(c)]));
                           const double gl = r.out.at("lse").row(b, h, i)[0];
                           if (std::isinf(wl)) CHECK(std::isinf(gl));
                           else err = std::max(err, std::fabs(gl - wl));
                         }
                     CHECK(err <= 1e-4);
                   }});

  // ---- op 4: linear attention -----------------------------------------------------------------------
  struct LinSet {
    std::string name;
    bool causal;
    FeatureMap fm;
    LinearNormalizer norm;
    OutputNorm onorm;
    LinearAlgorithm alg;
    bool decay;
  };
  const std::vector<LinSet> lin_sets = {
      {"chunked causal, elu+1, denominator, decay", true, FeatureMap::elu_plus_one, LinearNormalizer::denominator,
       OutputNorm::none, LinearAlgorithm::chunked, true},
      {"quadratic causal, relu, none, rms norm", true, FeatureMap::relu, LinearNormalizer::none, OutputNorm::rms,
       LinearAlgorithm::quadratic, false},
      {"chunked dense, elu+1, mala, layer norm", false, FeatureMap::elu_plus_one, LinearNormalizer::mala,
       OutputNorm::layer, LinearAlgorithm::chunked, false},
  };
  for (const LinSet& set : lin_sets) {
    auto args = [set](Run& r) {
      const AttnShape s = shape_of(1, 6, 2, 24, 40, 37, 129, set.causal);
      LinearAttnArgs a;
      a.shape = s;
      a.q = r.input("q", {1, 6, 37, 24}, 0.5f);
      a.k = r.input("k", {1, 2, 129, 24}, 0.5f);
      a.v = r.input("v", {1, 2, 129, 40});
      a.o = r.output({1, 6, 37, 40});
      a.feature_map = set.fm;
      a.normalizer = set.norm;
      a.norm = set.onorm;
      a.algorithm = set.alg;
      a.block = 16;
      if (set.decay) a.slopes = r.hold(alibi_slopes(6));
      return a;
    };
    cases.push_back({"linear_attention", set.name,
                     [args](Run& r) {
                       LinearAttnArgs a = args(r);
                       if (!r.supported(r.be.supports_linear_attention(a))) return;
                       r.be.linear_attention(a);
                       r.fetch("o", a.o);
                     },
                     [args](const Run& r) {
                       Run tmp(r.be, 0);
                       std::vector<float> slopes = alibi_slopes(6);
                       LinearAttnArgs a = args(tmp);
                       if (a.slopes) a.slopes = slopes.data();
                       std::vector<double> want(40);
                       double err = 0, scale = 0;
                       for (int h = 0; h < 6; ++h)
                         for (int64_t i : {0, 17, 36}) {
                           linear_attention_reference_row(a, r.in.at("q"), r.in.at("k"), r.in.at("v"), 0, h, i, want.data());
                           for (int c = 0; c < 40; ++c) {
                             err = std::max(err, std::fabs(r.out.at("o").row(0, h, i)[c] - want[size_t(c)]));
                             scale = std::max(scale, std::fabs(want[size_t(c)]));
                           }
                         }
                       INFO("max |o - o64| " << err << ", scale " << scale);
                       CHECK(err <= 1e-4 * std::max(1.0, scale));
                     }});
  }
  cases.push_back({"linear_attention", "decode: build_state, then attend from state_in into state_out", [](Run& r) {
                     AttnShape s = shape_of(1, 6, 2, 24, 40, 3, 129, true);
                     LinearAttnArgs a;
                     a.shape = s;
                     a.q = r.input("q", {1, 6, 3, 24}, 0.5f);
                     a.k = r.input("k", {1, 2, 129, 24}, 0.5f);
                     a.v = r.input("v", {1, 2, 129, 40});
                     a.o = r.output({1, 6, 3, 40});
                     a.feature_map = FeatureMap::elu_plus_one;
                     a.normalizer = LinearNormalizer::denominator;
                     a.slopes = r.hold(alibi_slopes(6));
                     a.block = 16;
                     LinearState st{r.output({1, 6, 24, 40}), r.output({1, 6, 1, 24}), r.output({1, 6, 1, 40})};
                     LinearState st2{r.output({1, 6, 24, 40}), r.output({1, 6, 1, 24}), r.output({1, 6, 1, 40})};
                     LinearAttnArgs build = a;
                     build.phase = LinearAttnArgs::Phase::build_state;
                     build.state_out = st;
                     if (!r.supported(r.be.supports_linear_attention(build))) return;
                     r.be.linear_attention(build);
                     a.state_in = st;
                     a.state_out = st2;
                     if (!r.supported(r.be.supports_linear_attention(a))) return;
                     r.be.linear_attention(a);
                     r.fetch("o", a.o);
                     r.fetch("kv", st.kv);
                     r.fetch("ksum", st.ksum);
                     r.fetch("vsum'", st2.vsum);
                     r.fetch("kv'", st2.kv);
                   }});

  // ---- op 4 in the GPU's types: bf16 and f16 inputs, d and dv in {64, 128} ----------------------------
  // The CUDA kernel's tolerance: it rounds φ(q), φ(k) to the input type for the tensor cores
  // (the scores go into ·V as a rounded part plus its residue; the state and every sum stay
  // fp32) and the output to the input type, so each term carries a few unit roundoffs u and
  // the error is a few u times the row's scale (tolerance_for's GPU bound, 4x in compare). The inputs are
  // scaled so that every output is O(1) (a decayed or normalised sum, or an output norm): an
  // unnormalised sum over N keys grows as √N, its rounding error with it.
  struct GpuLin {
    std::string name;
    int B, Hq, Hkv, d, dv;
    int64_t nq, nkv;
    bool causal;
    FeatureMap fm;
    LinearNormalizer nz;
    OutputNorm on;
    NormScope scope;
    bool decay;
    LinearAlgorithm alg;
    float qk_sd, qk_mean;
  };
  using FM = FeatureMap;
  using LN = LinearNormalizer;
  using ON = OutputNorm;
  using NS = NormScope;
  const std::vector<GpuLin> gpu_lin = {
      {"lightning: identity, decay, none, N=4099, d=dv=128, GQA 4:2", 1, 4, 2, 128, 128, 4099, 4099, true, FM::identity,
       LN::none, ON::none, NS::head, true, LinearAlgorithm::chunked, 0.1f, 0.f},
      {"lightning TNL: silu, decay, layer norm over heads, N=1000, d=64, dv=128", 2, 6, 3, 64, 128, 1000, 1000, true,
       FM::silu, LN::none, ON::layer, NS::heads, true, LinearAlgorithm::chunked, 0.5f, 0.f},
      {"lightning-1 quadratic: relu, decay, rms per head, N=1000, d=dv=64", 1, 4, 4, 64, 64, 1000, 1000, true, FM::relu,
       LN::none, ON::rms, NS::head, true, LinearAlgorithm::quadratic, 0.5f, 0.f},
      {"linear: elu+1, denominator, causal, N=65, d=dv=64, GQA 3", 2, 3, 1, 64, 64, 65, 65, true, FM::elu_plus_one,
       LN::denominator, ON::none, NS::head, false, LinearAlgorithm::chunked, 0.5f, 0.f},
      {"linear: relu, denominator, non-causal, Nq=63 < Nkv=1000, d=128, dv=64", 1, 4, 2, 128, 64, 63, 1000, false,
       FM::relu, LN::denominator, ON::none, NS::head, false, LinearAlgorithm::chunked, 0.5f, 0.5f},
      {"transnormer: elu, rms over heads, causal, N=4099, d=dv=128", 1, 4, 4, 128, 128, 4099, 4099, true, FM::elu,
       LN::none, ON::rms, NS::heads, false, LinearAlgorithm::chunked, 0.5f, 0.f},
      {"transnormer: identity, layer norm per head, non-causal, N=1", 1, 3, 1, 64, 64, 1, 1, false, FM::identity,
       LN::none, ON::layer, NS::head, false, LinearAlgorithm::chunked, 0.5f, 0.f},
      {"mala: elu+1, non-causal, N=1000, d=dv=128", 1, 4, 4, 128, 128, 1000, 1000, false, FM::elu_plus_one, LN::mala,
       ON::none, NS::head, false, LinearAlgorithm::chunked, 0.5f, 0.f},
      {"mala: elu+1, causal, N=63, d=64, dv=128, GQA 2", 2, 4, 2, 64, 128, 63, 63, true, FM::elu_plus_one, LN::mala,
       ON::none, NS::head, false, LinearAlgorithm::chunked, 0.5f, 0.f},
      {"identity, decay, none, causal, N=1", 1, 2, 1, 128, 64, 1, 1, true, FM::identity, LN::none, ON::none, NS::head,
       true, LinearAlgorithm::chunked, 0.5f, 0.f},
  };
  for (DType dt : {DType::bf16, DType::f16})
    for (const GpuLin& set : gpu_lin)
      cases.push_back({"linear_attention", std::string(dtype_name(dt)) + ", " + set.name, [set, dt](Run& r) {
                         r.dtype = dt;
                         AttnShape s = shape_of(set.B, set.Hq, set.Hkv, set.d, set.dv, set.nq, set.nkv, set.causal);
                         s.dtype = dt;
                         LinearAttnArgs a;
                         a.shape = s;
                         a.q = r.input("q", {s.batch, s.q_heads, s.q_len, s.head_dim}, set.qk_sd, set.qk_mean);
                         a.k = r.input("k", {s.batch, s.kv_heads, s.kv_len, s.head_dim}, set.qk_sd, set.qk_mean);
                         a.v = r.input("v", {s.batch, s.kv_heads, s.kv_len, s.v_dim});
                         a.o = r.output({s.batch, s.q_heads, s.q_len, s.v_dim}, dt);
                         a.feature_map = set.fm;
                         a.normalizer = set.nz;
                         a.norm = set.on;
                         a.norm_scope = set.scope;
                         a.algorithm = set.alg;
                         if (set.decay) a.slopes = r.hold(alibi_slopes(s.q_heads));
                         if (!r.supported(r.be.supports_linear_attention(a))) return;
                         r.be.linear_attention(a);
                         r.fetch("o", a.o);
                       }});

  // Decode in the GPU's types: build_state over the prefix [0, P), then attend from state_in
  // into state_out (the variants' plan() and run()); or attend reading the prefix from k, v.
  // q_position set: a step of a multi-step decode (the keys after its rows are not read).
  struct GpuDecode {
    std::string name;
    int Hq, Hkv, d, dv;
    int64_t nq, nkv, q_position;
    FeatureMap fm;
    LinearNormalizer nz;
    OutputNorm on;
    NormScope scope;
    bool decay, from_state;
    float qk_sd;
  };
  const std::vector<GpuDecode> gpu_dec = {
      {"lightning: 1 row after 4098 keys, decay, layer norm over heads, d=dv=128", 4, 2, 128, 128, 1, 4099, -1,
       FM::identity, LN::none, ON::layer, NS::heads, true, true, 0.1f},
      {"linear: 16 rows after 984 keys, elu+1, denominator, d=dv=64, GQA 3", 6, 2, 64, 64, 16, 1000, -1, FM::elu_plus_one,
       LN::denominator, ON::none, NS::head, false, true, 0.5f},
      {"mala: 3 rows at position 500 of 1000, d=128, dv=64", 4, 4, 128, 64, 3, 1000, 500, FM::elu_plus_one, LN::mala,
       ON::none, NS::head, false, true, 0.5f},
      {"transnormer: 5 rows after 60 keys read from k, v, elu, rms over heads, d=64, dv=128", 4, 2, 64, 128, 5, 65, -1,
       FM::elu, LN::none, ON::rms, NS::heads, false, false, 0.5f},
  };
  for (DType dt : {DType::bf16, DType::f16})
    for (const GpuDecode& set : gpu_dec)
      cases.push_back({"linear_attention", std::string(dtype_name(dt)) + ", decode: " + set.name, [set, dt](Run& r) {
                         r.dtype = dt;
                         AttnShape s = shape_of(2, set.Hq, set.Hkv, set.d, set.dv, set.nq, set.nkv, true);
                         s.dtype = dt;
                         LinearAttnArgs a;
                         a.shape = s;
                         a.q = r.input("q", {s.batch, s.q_heads, s.q_len, s.head_dim}, set.qk_sd);
                         a.k = r.input("k", {s.batch, s.kv_heads, s.kv_len, s.head_dim}, set.qk_sd);
                         a.v = r.input("v", {s.batch, s.kv_heads, s.kv_len, s.v_dim});
                         a.o = r.output({s.batch, s.q_heads, s.q_len, s.v_dim}, dt);
                         a.feature_map = set.fm;
                         a.normalizer = set.nz;
                         a.norm = set.on;
                         a.norm_scope = set.scope;
                         a.q_position = set.q_position;
                         if (set.decay) a.slopes = r.hold(alibi_slopes(s.q_heads));
                         auto state = [&] {
                           return LinearState{r.output({s.batch, s.q_heads, s.head_dim, s.v_dim}),
                                              r.output({s.batch, s.q_heads, 1, s.head_dim}),
                                              r.output({s.batch, s.q_heads, 1, s.v_dim})};
                         };
                         const LinearState st = state(), st2 = state();
                         if (set.from_state) {
                           LinearAttnArgs build = a;
                           build.phase = LinearAttnArgs::Phase::build_state;
                           build.state_out = st;
                           if (!r.supported(r.be.supports_linear_attention(build))) return;
                           r.be.linear_attention(build);
                           a.state_in = st;
                           r.fetch("kv", st.kv);
                           r.fetch("ksum", st.ksum);
                           r.fetch("vsum", st.vsum);
                         }
                         a.state_out = st2;
                         if (!r.supported(r.be.supports_linear_attention(a))) return;
                         r.be.linear_attention(a);
                         r.fetch("o", a.o);
                         r.fetch("kv'", st2.kv);
                         r.fetch("ksum'", st2.ksum);
                         r.fetch("vsum'", st2.vsum);
                       }});

  // ---- index lists and buffers -----------------------------------------------------------------------
  cases.push_back({"upload_indices", "CSR lists read back through gather_decode's keys", [](Run& r) {
                     // The lists' contents are only visible to ops: decode_scores gathers by them.
                     DecodeScoresArgs a;
                     a.shape = shape_of(1, 3, 1, 24, 24, 1, 37, false);
                     a.q = r.input("q", {1, 3, 1, 24});
                     a.k = r.input("k", {1, 1, 37, 24});
                     const IndexLists l = r.be.upload_indices({0, 4, 4, 7}, {36, 0, 5, 5, 1, 2, 3});
                     r.scalars["lists"] = double(l.lists);
                     r.scalars["total"] = double(l.total);
                     a.key_lists = l;
                     std::vector<DecodeScoreItem> items = {{0, 0, 0, 0, 4, 0, 1}, {0, 0, 0, 4, 3, 12, 1}};
                     a.items = r.hold(items);
                     a.n_items = 2;
                     a.out = r.output({1, 1, 1, 21});
                     if (!r.supported(r.be.supports_decode_scores(a))) return;
                     r.be.decode_scores(a);
                     r.fetch("out", a.out);
                   }});
  for (const char* op : {"alloc_indices", "upload_index_buffer", "download_index_buffer", "free_indices"})
    cases.push_back({op, "round trip of int32 bit patterns, a short upload, a freed buffer", [](Run& r) {
                       const std::vector<int32_t> v = {5, -3, 0, 1 << 30, 7, -1, int32_t(0x7fc00001), int32_t(0xff800000)};
                       IndexBuffer b = r.be.alloc_indices(int64_t(v.size()));
                       r.be.upload_index_buffer(v, b);
                       r.fetch_ints("all", b, int64_t(v.size()));
                       r.be.upload_index_buffer({11, 12}, b);
                       r.fetch_ints("after a short upload", b, int64_t(v.size()));
                       r.fetch_ints("first 3", b, 3);
                       IndexBuffer c = r.be.alloc_indices(0);
                       r.scalars["empty size"] = double(c.size);
                       r.be.free_indices(b);
                       IndexBuffer d = bt::put_indices(r.be, {9, 8, 7});
                       r.fetch_ints("another", d, 3);
                     }});

  // ---- memory ------------------------------------------------------------------------------------
  for (const char* op : {"alloc", "upload", "download", "poison", "free", "view_host"})
    cases.push_back({op, "f32 and bf16 tensors: upload rounds, poison is NaN, views read the host", [](Run& r) {
                       const HostTensor h = bt::random_tensor({2, 3, 37, 24}, r.rng);
                       for (DType t : {DType::f32, DType::bf16}) {
                         const std::string n = std::string(dtype_name(t));
                         TensorRef d = r.be.alloc(h.shape, t);
                         r.be.upload(bt::rounded(h, t), d);
                         r.fetch(n, d);
                         TensorRef p = r.be.alloc({1, 1, 5, 3}, t);
                         r.be.poison(p);
                         const HostTensor got = r.be.download(p);
                         bool all_nan = true;
                         for (float x : got.data) all_nan &= std::isnan(x);
                         CHECK(all_nan);
                         r.be.free(p);
                         const HostTensor hr = bt::rounded(h, t);  // host inputs are rounded
                         if (auto view = r.be.view_host(hr, t)) r.fetch("view " + n, *view);
                         else r.fetch("view " + n, put(r.be, hr, t));
                       }
                     }});

  // ---- selection and estimation (core/ops_select.hpp) ---------------------------------------
  cases.push_back({"pool", "heads: groups of 3 over GQA, strided rows, mean and max", [](Run& r) {
                     const TensorRef x = r.input("x", {2, 2, 37, 24});
                     for (Reduce how : {Reduce::mean, Reduce::max})
                       for (int64_t stride : {1, 4}) {
                         PoolArgs a;
                         a.axis = PoolAxis::heads;
                         a.how = how;
                         a.group = 3;
                         a.row_stride = stride;
                         a.in = x;
                         a.out = r.output({2, 2, (37 + stride - 1) / stride, 24});
                         if (!r.supported(r.be.supports_pool(a))) return;
                         r.be.pool(a);
                         r.fetch("out " + std::to_string(int(how)) + "/" + std::to_string(stride), a.out);
                       }
                   }});
  cases.push_back({"pool", "rows: blocks, segments, f64 sum, sqrt(len), sum, normalized_sum", [](Run& r) {
                     const TensorRef x = r.input("x", {2, 3, 37, 24});
                     const TensorRef xp = r.input("x+", {2, 3, 37, 24}, 1.0f, 1.5f);
                     for (int mode = 0; mode < 6; ++mode) {
                       PoolArgs a;
                       a.axis = PoolAxis::rows;
                       a.in = mode == 5 ? xp : x;
                       int64_t S = 0;
                       if (mode >= 3) {
                         a.bounds = bt::put_indices(r.be, {2, 3, 11, 29, 37});
                         S = 4;
                       } else {
                         a.block = 6;
                         a.rows_end = mode == 2 ? 0 : 26;
                         S = ((a.rows_end ? a.rows_end : 37) + 5) / 6;
                       }
                       a.how = mode == 1 ? Reduce::max : mode == 4 ? Reduce::sum : mode == 5 ? Reduce::normalized_sum : Reduce::mean;
                       if (mode == 5) a.col_limits = bt::put_indices(r.be, {24, 7, 1, 13});
                       a.f64_sum = mode == 2;
                       a.sqrt_len = mode == 0 || mode == 3;
                       a.out = r.output({2, 3, S, 24});
                       if (!r.supported(r.be.supports_pool(a))) return;
                       r.be.pool(a);
                       r.fetch("out " + std::to_string(mode), a.out);
                     }
                   }});
  cases.push_back({"pool", "window contrast", [](Run& r) {
                     PoolArgs a;
                     a.axis = PoolAxis::window_contrast;
                     a.block = 3;
                     a.in = r.input("x", {1, 2, 37, 24});
                     a.out = r.output({1, 2, 37, 1});
                     if (!r.supported(r.be.supports_pool(a))) return;
                     r.be.pool(a);
                     r.fetch("out", a.out);
                   }});
  for (bool row_stab : {true, false})
    cases.push_back({"project", std::string("favor, ") + (row_stab ? "row" : "slice") + " stabiliser", [row_stab](Run& r) {
                       ProjectArgs a;
                       a.epilogue = ProjectEpilogue::favor;
                       a.x = r.input("x", {2, 3, 37, 24});
                       a.proj = r.input("proj", {1, 1, 40, 24});
                       a.out = r.output({2, 3, 37, 40});
                       a.xs = 1.0f / std::sqrt(std::sqrt(24.0f));
                       a.row_stab = row_stab;
                       if (!r.supported(r.be.supports_project(a))) return;
                       r.be.project(a);
                       r.fetch("out", a.out);
                     }});
  cases.push_back({"project", "sign codes, Gray order, F=5", [](Run& r) {
                     ProjectArgs a;
                     a.epilogue = ProjectEpilogue::sign_code;
                     a.x = r.input("x", {2, 3, 37, 24});
                     a.proj = r.input("proj", {1, 1, 24, 5});
                     std::vector<int32_t> gray(32);
                     for (int i = 0; i < 32; ++i) gray[size_t(i)] = i ^ (i >> 1);
                     a.code = bt::put_indices(r.be, gray);
                     a.codes = r.be.alloc_indices(2 * 3 * 37);
                     if (!r.supported(r.be.supports_project(a))) return;
                     r.be.project(a);
                     r.fetch_ints("codes", a.codes, 2 * 3 * 37);
                   }});
  cases.push_back({"scores", "probs_head_mean, causal offset, row range (CPU bits vary: heap scratch in cpu_select_ops)", [](Run& r) {
                     for (bool causal : {false, true}) {
                       ScoresArgs a;
                       a.epilogue = ScoresEpilogue::probs_head_mean;
                       a.q = r.input("q", {2, 6, 5, 24});
                       a.k = r.input("k", {2, 2, 41, 24});
                       a.scale = 0.37f;
                       a.n_keys = 39;
                       a.row_begin = 1;
                       a.row_end = 4;
                       a.causal = causal;
                       a.q_offset = 33;
                       a.head_group = 3;
                       a.out = r.output({2, 2, 3, 39});
                       if (!r.supported(r.be.supports_scores(a))) return;
                       r.be.scores(a);
                       r.fetch(causal ? "causal" : "dense", a.out);
                     }
                   }, nullptr, true});
  cases.push_back({"scores", "probs_block_pool, strided rows, max/mean pools", [](Run& r) {
                     const TensorRef q = r.input("q", {1, 4, 14, 24}), k = r.input("k", {1, 2, 43, 24});
                     for (Reduce kp : {Reduce::max, Reduce::mean})
                       for (Reduce rr : {Reduce::max, Reduce::mean}) {
                         ScoresArgs a;
                         a.epilogue = ScoresEpilogue::probs_block_pool;
                         a.q = q;
                         a.k = k;
                         a.scale = 0.41f;
                         a.causal = true;
                         a.positions = 41;
                         a.row_stride = 3;
                         a.q_offset = 2;
                         a.row_begin = 2;
                         a.key_block = 5;
                         a.key_pool = kp;
                         a.row_block = 7;
                         a.row_reduce = rr;
                         a.group_base = 1;
                         a.out = r.output({1, 4, 5, 9});
                         if (!r.supported(r.be.supports_scores(a))) return;
                         r.be.scores(a);
                         r.fetch("out " + std::to_string(int(kp)) + std::to_string(int(rr)), a.out);
                       }
                   }});
  cases.push_back({"scores", "raw, row range and key cut", [](Run& r) {
                     ScoresArgs a;
                     a.epilogue = ScoresEpilogue::raw;
                     a.q = r.input("q", {2, 6, 7, 24});
                     a.k = r.input("k", {2, 2, 37, 24});
                     a.scale = 0.8f;
                     a.row_begin = 2;
                     a.n_keys = 29;
                     a.out = r.output({2, 6, 5, 29});
                     if (!r.supported(r.be.supports_scores(a))) return;
                     r.be.scores(a);
                     r.fetch("out", a.out);
                   }});
  cases.push_back({"scores", "keys_reaching CSR lists", [](Run& r) {
                     ScoresArgs a;
                     a.epilogue = ScoresEpilogue::keys_reaching;
                     a.q = r.input("q", {2, 2, 11, 24});
                     a.k = r.input("k", {2, 1, 50, 24});
                     a.thr = r.input("thr", {2, 2, 11, 1}, 0.5f);
                     a.thr_offset = 0.3f;
                     a.scale = 0.35f;
                     a.row_group = 3;
                     a.row_stride = 4;
                     a.positions = 43;
                     a.key_begin = 5;
                     a.keys_per_group = 12;
                     a.lists.offsets = r.be.alloc_indices(17);
                     a.lists.entries = r.be.alloc_indices(16 * 50);
                     if (!r.supported(r.be.supports_scores(a))) return;
                     r.be.scores(a);
                     const std::vector<int32_t> off = r.be.download_index_buffer(a.lists.offsets, 17);
                     r.ints["offsets"] = off;
                     r.fetch_ints("entries", a.lists.entries, off.back());
                   }});
  for (int variant = 0; variant < 4; ++variant)
    cases.push_back({"select",
                     variant == 0   ? "top-k with rules"
                     : variant == 1 ? "top-k, forced ranges masked"
                     : variant == 2 ? "cumulative mass over a column map"
                                    : "top-k expanded to keys",
                     [variant](Run& r) {
                       HostTensor sc = bt::random_tensor({2, 1, 3, 13}, r.rng);
                       for (float& e : sc.data) e = std::fabs(e);
                       r.in["scores"] = sc;
                       const int64_t lists = 12;
                       std::vector<int32_t> rules;
                       for (int64_t l = 0; l < lists; ++l) {
                         const int32_t n_cand = int32_t(7 + l % 6), k = int32_t(l % 4);
                         rules.insert(rules.end(), {n_cand, k, int32_t(l % 3), int32_t(l % 3 + 1), n_cand - 2, n_cand, 0, int32_t(l % 2)});
                       }
                       SelectArgs a;
                       a.scores = put(r.be, sc);
                       a.batch = 2;
                       a.list_heads = 2;
                       a.n_per = 3;
                       a.rules = bt::put_indices(r.be, rules);
                       a.mask_forced = variant == 1;
                       if (variant == 2) {
                         std::vector<int32_t> cmap;
                         for (int j = 0; j < 20; ++j) cmap.push_back(int32_t((j * 7) % 13));
                         a.col_map = bt::put_indices(r.be, cmap);
                         a.rule = SelectRule::cumulative_mass;
                         a.gamma = 0.6;
                       }
                       if (variant == 3) {
                         a.expand_width = 13;
                         a.expand_n = 40;
                       }
                       a.lists.offsets = r.be.alloc_indices(lists + 1);
                       a.lists.entries = r.be.alloc_indices(lists * 40);
                       if (!r.supported(r.be.supports_select(a))) return;
                       r.be.select(a);
                       const std::vector<int32_t> off = r.be.download_index_buffer(a.lists.offsets, lists + 1);
                       r.ints["offsets"] = off;
                       r.fetch_ints("entries", a.lists.entries, off.back());
                     }});
  cases.push_back({"lse_merge", "row and scalar offsets, empty parts", [](Run& r) {
                     HostTensor l1 = bt::random_tensor({2, 3, 37, 1}, r.rng), l2 = bt::random_tensor({2, 3, 37, 1}, r.rng);
                     const float ninf = -std::numeric_limits<float>::infinity();
                     l1.data[3] = ninf;
                     l2.data[5] = ninf;
                     l1.data[8] = l2.data[8] = ninf;
                     LseMergeArgs a;
                     a.o = r.input("o", {2, 3, 37, 40});
                     a.o2 = r.input("o2", {2, 3, 37, 40});
                     a.lse = put(r.be, l1);
                     a.lse2 = put(r.be, l2);
                     a.row_offset = r.input("w", {1, 1, 37, 1});
                     a.offset = 0.25f;
                     if (!r.supported(r.be.supports_lse_merge(a))) return;
                     r.be.lse_merge(a);
                     r.fetch("o", a.o);
                     r.fetch("lse", a.lse);
                   }});

  // ---- int4 estimation (SALE §8) --------------------------------------------------------------
  // The values are the backend's opaque layout: what shows is the scales and the scan's lists.
  // quantize_int4: blocks of 5 rows (the last one short), a zero block (scale 0), a center.
  for (bool center : {false, true})
    cases.push_back({"quantize_int4", center ? "centered keys, block 5, N=37" : "block 5, N=37, an all-zero block",
                     [center](Run& r) {
                       HostTensor x = bt::random_tensor({2, 3, 37, 24}, r.rng);
                       std::fill(x.row(1, 2, 10), x.row(1, 2, 15), 0.0f);  // rows 10..14: block 2
                       r.in["x"] = x;
                       QuantizeInt4Args a;
                       a.x = put(r.be, x);
                       if (center) a.center = r.input("center", {2, 3, 1, 24}, 0.5f);
                       a.out = r.be.alloc_int4(x.shape, 5);
                       if (!r.supported(r.be.supports_quantize_int4(a))) return;
                       r.be.quantize_int4(a);
                       r.fetch("scales", a.out.scales);
                       r.be.free_int4(a.out);
                     },
                     [](const Run& r) {
                       const HostTensor& x = r.in.at("x");
                       const HostTensor* c = r.in.count("center") ? &r.in.at("center") : nullptr;
                       const HostTensor& sc = r.out.at("scales");
                       REQUIRE(sc.shape == Shape4{2, 3, 8, 1});
                       double err = 0;
                       for (int b = 0; b < 2; ++b)
                         for (int h = 0; h < 3; ++h)
                           for (int64_t blk = 0; blk < 8; ++blk) {
                             double mx = 0;
                             for (int64_t i = blk * 5; i < std::min<int64_t>(37, blk * 5 + 5); ++i)
                               for (int d = 0; d < 24; ++d)
                                 mx = std::max(mx, std::fabs(double(x.row(b, h, i)[d]) - (c ? c->row(b, h, 0)[d] : 0.0)));
                             err = std::max(err, std::fabs(sc.row(b, h, blk)[0] - mx / 7) / std::max(1e-30, mx / 7));
                             if (mx == 0) CHECK(sc.row(b, h, blk)[0] == 0.0f);
                           }
                       CHECK(err <= 1e-6);
                     }});
  // alloc_int4 / free_int4: tensors stay apart; one freed between two quantizations leaves the
  // others intact; a freed tensor's memory may be handed out again.
  for (const char* op : {"alloc_int4", "free_int4"})
    cases.push_back({op, "three tensors, one freed between quantizations, shapes of the scales", [](Run& r) {
                       const TensorRef x1 = r.input("x1", {1, 2, 19, 8}), x2 = r.input("x2", {1, 2, 19, 8}, 3.0f);
                       Int4Tensor a = r.be.alloc_int4({1, 2, 19, 8}, 4);
                       Int4Tensor b = r.be.alloc_int4({1, 2, 19, 8}, 7);
                       r.scalars["a blocks"] = double(a.scales.shape[2]);
                       r.scalars["b blocks"] = double(b.scales.shape[2]);
                       QuantizeInt4Args q;
                       q.x = x1;
                       q.out = a;
                       if (!r.supported(r.be.supports_quantize_int4(q))) return;
                       r.be.quantize_int4(q);
                       q.out = b;
                       r.be.quantize_int4(q);
                       r.be.free_int4(a);
                       Int4Tensor c = r.be.alloc_int4({1, 2, 19, 8}, 4);
                       q.x = x2;
                       q.out = c;
                       r.be.quantize_int4(q);
                       r.fetch("b scales", b.scales);
                       r.fetch("c scales", c.scales);
                       r.be.free_int4(b);
                       r.be.free_int4(c);
                     }});
  // int4_block_scan: SALE's scan with and without refresh, GQA 3, Nq = Nk = 45 (short last
  // blocks), key blocks of 4, segments of 3 blocks.
  for (bool refresh : {false, true})
    cases.push_back({"int4_block_scan", std::string("GQA 3, N=45, block_q 8, block_k 4, window 9, segment 3") +
                                            (refresh ? ", refresh" : ""),
                     [refresh](Run& r) {
                       const int64_t B = 2, Hq = 6, Hk = 2, N = 45, d = 24, bq = 8, bk = 4;
                       Int4BlockScanArgs a;
                       a.q = r.input("q", {B, Hq, N, d});
                       a.k = r.input("k", {B, Hk, N, d});
                       a.k_center = r.input("k_center", {B, Hk, 1, d}, 0.3f);
                       a.q4 = r.be.alloc_int4(a.q.shape, bq);
                       a.k4 = r.be.alloc_int4(a.k.shape, bk);
                       QuantizeInt4Args qa;
                       qa.x = a.q;
                       qa.out = a.q4;
                       if (!r.supported(r.be.supports_quantize_int4(qa))) return;
                       r.be.quantize_int4(qa);
                       qa.x = a.k;
                       qa.center = a.k_center;
                       qa.out = a.k4;
                       r.be.quantize_int4(qa);
                       a.scale = 1.0f / std::sqrt(float(d));
                       a.tau = 0.05f;
                       a.block_q = bq;
                       a.block_k = bk;
                       a.local_window = 9;
                       a.segment = 3;
                       a.refresh = refresh;
                       const int64_t lists = B * Hq * ((N + bq - 1) / bq);
                       a.lists.offsets = r.be.alloc_indices(lists + 1);
                       a.lists.entries = r.be.alloc_indices(lists * ((N + bk - 1) / bk + 1));
                       if (!r.supported(r.be.supports_int4_block_scan(a))) return;
                       r.be.int4_block_scan(a);
                       const std::vector<int32_t> off = r.be.download_index_buffer(a.lists.offsets, lists + 1);
                       r.ints["offsets"] = off;
                       r.fetch_ints("entries", a.lists.entries, off.back());
                       r.be.free_int4(a.q4);
                       r.be.free_int4(a.k4);
                     },
                     [](const Run& r) {
                       // Every list: block 0, the local blocks [max(1, lb0), lb1], ascending,
                       // and the scanned blocks only in [1, lb0); some list keeps one.
                       const std::vector<int32_t>& off = r.ints.at("offsets");
                       const std::vector<int32_t>& e = r.ints.at("entries");
                       const int64_t N = 45, bq = 8, bk = 4, window = 9, n_qb = (N + bq - 1) / bq;
                       int kept = 0;
                       for (size_t l = 0; l + 1 < off.size(); ++l) {
                         const int64_t qb = int64_t(l) % n_qb, r0 = qb * bq, nr = std::min(N, r0 + bq) - r0;
                         const int64_t lb1 = (r0 + nr - 1) / bk, lb0 = std::max<int64_t>(0, r0 - window) / bk;
                         const std::vector<int32_t> list(e.begin() + off[l], e.begin() + off[l + 1]);
                         INFO("list " << l);
                         REQUIRE(!list.empty());
                         CHECK(list[0] == 0);
                         CHECK(std::is_sorted(list.begin(), list.end()));
                         CHECK(std::adjacent_find(list.begin(), list.end()) == list.end());
                         for (int64_t kb = std::max<int64_t>(1, lb0); kb <= lb1; ++kb)
                           CHECK(std::count(list.begin(), list.end(), int32_t(kb)) == 1);
                         for (int32_t kb : list) {
                           CHECK(kb <= lb1);
                           kept += kb >= 1 && kb < lb0;
                         }
                       }
                       CHECK(kept > 0);
                     }});

  // ---- decode-time selection (core/ops_decode.hpp) ---------------------------------------------
  cases.push_back({"copy_rows", "rows along the sequence axis, into the middle", [](Run& r) {
                     CopyRowsArgs a;
                     a.src = r.input("src", {2, 3, 37, 24});
                     a.dst = r.input("dst", {2, 3, 9, 24});
                     a.src_row = 30;
                     a.dst_row = 2;
                     a.rows = 7;
                     if (!r.supported(r.be.supports_copy_rows(a))) return;
                     r.be.copy_rows(a);
                     r.fetch("dst", a.dst);
                   }});
  cases.push_back({"block_mean_keys", "blocks of 7 from offset 3 at row 1", [](Run& r) {
                     BlockMeanKeysArgs a;
                     a.k = r.input("k", {2, 3, 41, 24});
                     a.out = r.input("out", {2, 3, 7, 24});
                     a.offset = 3;
                     a.block = 7;
                     a.blocks = 5;
                     a.out_row = 1;
                     if (!r.supported(r.be.supports_block_mean_keys(a))) return;
                     r.be.block_mean_keys(a);
                     r.fetch("out", a.out);
                   }});
  for (int bits : {2, 4, 8, 16})
    cases.push_back({"fake_quantize", std::to_string(bits) + " bits, a zero row, in place when 8", [bits](Run& r) {
                       HostTensor x = bt::random_tensor({2, 3, 37, 24}, r.rng);
                       std::fill(x.row(1, 2, 5), x.row(1, 2, 5) + 24, 0.0f);
                       FakeQuantizeArgs a;
                       a.x = put(r.be, x);
                       a.out = bits == 8 ? a.x : r.output({2, 3, 37, 24});
                       a.bits = bits;
                       if (!r.supported(r.be.supports_fake_quantize(a))) return;
                       r.be.fake_quantize(a);
                       r.fetch("out", a.out);
                     }});
  using E = DecodeScoreEpilogue;
  for (E ep : {E::raw, E::probs, E::probs_head_sum, E::probs_head_max, E::soft_vote, E::head_max, E::probs_output_l1})
    for (bool by_index : {false, true})
      cases.push_back({"decode_scores", "epilogue " + std::to_string(int(ep)) + (by_index ? ", gathered keys" : ", key ranges"),
                       [ep, by_index](Run& r) {
                         DecodeScoresArgs a;
                         a.shape = shape_of(2, 6, 2, 24, 40, 5, 57, false);
                         a.q = r.input("q", {2, 6, 5, 24});
                         a.k = r.input("k", {2, 2, 57, 24});
                         a.v = r.input("v", {2, 2, 57, 40});
                         a.scale = 0.29f;
                         a.epilogue = ep;
                         a.rows = (int(ep) % 2) ? DecodeQueryRows::group_mean : DecodeQueryRows::group;
                         const std::vector<int32_t> gathered = {3, 50, 7, 7, 22, 56, 0, 31, 12, 40, 9};
                         if (by_index) a.key_lists = r.be.upload_indices({0, int32_t(gathered.size())}, gathered);
                         std::vector<DecodeScoreItem> items = {{1, 0, 4, 2, 9, 0, 1}, {1, 1, 2, 0, 11, 0, 1}, {0, 1, 0, 5, 6, 0, 2}};
                         int64_t total = 0;
                         for (size_t i = 0; i < items.size(); ++i) {
                           if (ep == E::soft_vote && i == 1) {
                             items[1].n = items[0].n;
                             items[1].k0 = items[0].k0;
                             items[1].out = items[0].out;
                             continue;
                           }
                           items[i].out = total;
                           total += a.item_size(items[i]);
                         }
                         a.items = r.hold(items);
                         a.n_items = int64_t(items.size());
                         a.out = r.output({1, 1, 1, total});
                         if (!r.supported(r.be.supports_decode_scores(a))) return;
                         r.be.decode_scores(a);
                         r.fetch("out", a.out);
                       }});

  // ---- selection ops on attention-typed inputs (bf16, fp16), shapes that cross the GPU
  // kernels' tiles (32 rows × 64 keys, 32-dim chunks: D = 40, rows and keys past one tile) ----
  for (DType dt : {DType::bf16, DType::f16}) {
    const std::string tn = std::string(dtype_name(dt)) + ": ";
    cases.push_back({"pool", tn + "heads mean/max of GQA keys, strided rows; rows mean in double (SALE's k̄)", [dt](Run& r) {
                       r.dtype = dt;
                       const TensorRef x = r.input("x", {2, 2, 75, 40});
                       for (int mode = 0; mode < 3; ++mode) {
                         PoolArgs a;
                         a.in = x;
                         if (mode < 2) {
                           a.axis = PoolAxis::heads;
                           a.how = mode == 0 ? Reduce::mean : Reduce::max;
                           a.group = 3;
                           a.row_stride = mode == 0 ? 1 : 4;
                           a.out = r.output({2, 2, (75 + a.row_stride - 1) / a.row_stride, 40});
                         } else {
                           a.axis = PoolAxis::rows;
                           a.block = 75;
                           a.f64_sum = true;
                           a.out = r.output({2, 2, 1, 40});
                         }
                         if (!r.supported(r.be.supports_pool(a))) return;
                         r.be.pool(a);
                         r.fetch("out " + std::to_string(mode), a.out);
                       }
                     }, nullptr, false, true});
    cases.push_back({"scores", tn + "probs_head_mean, 70 rows × 150 keys, causal", [dt](Run& r) {
                       r.dtype = dt;
                       ScoresArgs a;
                       a.epilogue = ScoresEpilogue::probs_head_mean;
                       a.q = r.input("q", {1, 6, 75, 40});
                       a.k = r.input("k", {1, 2, 151, 40});
                       a.scale = 0.19f;
                       a.n_keys = 150;
                       a.row_begin = 3;
                       a.row_end = 73;
                       a.causal = true;
                       a.q_offset = 76;
                       a.head_group = 3;
                       a.out = r.output({1, 2, 70, 150});
                       if (!r.supported(r.be.supports_scores(a))) return;
                       r.be.scores(a);
                       r.fetch("out", a.out);
                     }, nullptr, true, true});
    for (int64_t kb : {5, 70})
      cases.push_back({"scores", tn + "probs_block_pool, groups of 70 rows, key blocks of " + std::to_string(kb), [dt, kb](Run& r) {
                         r.dtype = dt;
                         const TensorRef q = r.input("q", {1, 3, 150, 40}), k = r.input("k", {1, 1, 160, 40});
                         for (Reduce kp : {Reduce::max, Reduce::mean})
                           for (Reduce rr : {Reduce::max, Reduce::mean}) {
                             ScoresArgs a;
                             a.epilogue = ScoresEpilogue::probs_block_pool;
                             a.q = q;
                             a.k = k;
                             a.scale = 0.2f;
                             a.causal = true;
                             a.q_offset = 10;
                             a.key_block = kb;
                             a.key_pool = kp;
                             a.row_block = 70;
                             a.row_reduce = rr;
                             a.out = r.output({1, 3, 3, (160 + kb - 1) / kb});
                             if (!r.supported(r.be.supports_scores(a))) return;
                             r.be.scores(a);
                             r.fetch("out " + std::to_string(int(kp)) + std::to_string(int(rr)), a.out);
                           }
                       }, nullptr, false, true});
    cases.push_back({"scores", tn + "raw, 70 rows × 150 keys", [dt](Run& r) {
                       r.dtype = dt;
                       ScoresArgs a;
                       a.epilogue = ScoresEpilogue::raw;
                       a.q = r.input("q", {1, 4, 75, 40});
                       a.k = r.input("k", {1, 2, 151, 40});
                       a.scale = 0.3f;
                       a.row_begin = 5;
                       a.n_keys = 150;
                       a.out = r.output({1, 4, 70, 150});
                       if (!r.supported(r.be.supports_scores(a))) return;
                       r.be.scores(a);
                       r.fetch("out", a.out);
                     }, nullptr, false, true});
    cases.push_back({"scores", tn + "keys_reaching, groups of 40 rows, 150 keys (a flip of a key at its threshold shows as a list difference)", [dt](Run& r) {
                       r.dtype = dt;
                       ScoresArgs a;
                       a.epilogue = ScoresEpilogue::keys_reaching;
                       a.q = r.input("q", {1, 2, 83, 40});
                       a.k = r.input("k", {1, 1, 150, 40});
                       a.thr = r.input_f32("thr", {1, 2, 83, 1}, 0.5f);
                       a.thr_offset = 0.9f;
                       a.scale = 0.2f;
                       a.row_group = 40;
                       a.positions = 83;
                       a.key_begin = 3;
                       a.keys_per_group = 70;
                       a.lists.offsets = r.be.alloc_indices(7);
                       a.lists.entries = r.be.alloc_indices(6 * 150);
                       if (!r.supported(r.be.supports_scores(a))) return;
                       r.be.scores(a);
                       const std::vector<int32_t> off = r.be.download_index_buffer(a.lists.offsets, 7);
                       r.ints["offsets"] = off;
                       r.fetch_ints("entries", a.lists.entries, off.back());
                     }, nullptr, false, true});
    cases.push_back({"scores", tn + "raw_normalized_sum, groups of 35 rows, column limits", [dt](Run& r) {
                       r.dtype = dt;
                       ScoresArgs a;
                       a.epilogue = ScoresEpilogue::raw_normalized_sum;
                       a.q = r.input("q", {1, 2, 75, 40}, 0.5f, 1.0f);  // positive scores: t_r > 0
                       a.k = r.input("k", {1, 1, 130, 40}, 0.5f, 1.0f);
                       a.scale = 0.05f;
                       a.row_begin = 2;
                       a.row_end = 72;
                       a.row_group = 35;
                       a.col_limits = bt::put_indices(r.be, {130, 67});
                       a.out = r.output({1, 2, 2, 130});
                       if (!r.supported(r.be.supports_scores(a))) return;
                       r.be.scores(a);
                       r.fetch("out", a.out);
                     }, nullptr, false, true});
    for (bool row_stab : {true, false})
      cases.push_back({"project", tn + "favor, F = 70, " + (row_stab ? "row" : "slice") + " stabiliser", [dt, row_stab](Run& r) {
                         r.dtype = dt;
                         ProjectArgs a;
                         a.epilogue = ProjectEpilogue::favor;
                         a.x = r.input("x", {1, 3, 45, 40});
                         a.proj = r.input_f32("proj", {1, 1, 70, 40});
                         a.out = r.output({1, 3, 45, 70});
                         a.xs = 1.0f / std::sqrt(std::sqrt(40.0f));
                         a.row_stab = row_stab;
                         if (!r.supported(r.be.supports_project(a))) return;
                         r.be.project(a);
                         r.fetch("out", a.out);
                       }, nullptr, false, true});
    cases.push_back({"project", tn + "sign codes, F=7, 45 rows", [dt](Run& r) {
                       r.dtype = dt;
                       ProjectArgs a;
                       a.epilogue = ProjectEpilogue::sign_code;
                       a.x = r.input("x", {2, 3, 45, 40});
                       a.proj = r.input_f32("proj", {1, 1, 40, 7});
                       std::vector<int32_t> gray(128);
                       for (int i = 0; i < 128; ++i) gray[size_t(i)] = i ^ (i >> 1);
                       a.code = bt::put_indices(r.be, gray);
                       a.codes = r.be.alloc_indices(2 * 3 * 45);
                       if (!r.supported(r.be.supports_project(a))) return;
                       r.be.project(a);
                       r.fetch_ints("codes", a.codes, 2 * 3 * 45);
                     }, nullptr, false, true});
    cases.push_back({"quantize_int4", tn + "keys centered, block 6, N=37, D=40", [dt](Run& r) {
                       r.dtype = dt;
                       QuantizeInt4Args a;
                       a.x = r.input("x", {2, 3, 37, 40});
                       a.center = r.input_f32("center", {2, 3, 1, 40}, 0.5f);
                       a.out = r.be.alloc_int4(a.x.shape, 6);
                       if (!r.supported(r.be.supports_quantize_int4(a))) return;
                       r.be.quantize_int4(a);
                       r.fetch("scales", a.out.scales);
                     }, nullptr, false, true});
    cases.push_back({"int4_block_scan", tn + "GQA 3, N=150, block_q 40, block_k 8, window 20, refresh segments of 2", [dt](Run& r) {
                       r.dtype = dt;
                       const int64_t B = 1, Hq = 3, Hk = 1, N = 150, d = 40, bq = 40, bk = 8;
                       Int4BlockScanArgs a;
                       a.q = r.input("q", {B, Hq, N, d});
                       a.k = r.input("k", {B, Hk, N, d});
                       a.q4 = r.be.alloc_int4(a.q.shape, bq);
                       a.k4 = r.be.alloc_int4(a.k.shape, bk);
                       QuantizeInt4Args qa;
                       qa.x = a.q;
                       qa.out = a.q4;
                       if (!r.supported(r.be.supports_quantize_int4(qa))) return;
                       r.be.quantize_int4(qa);
                       qa.x = a.k;
                       qa.out = a.k4;
                       r.be.quantize_int4(qa);
                       a.scale = 1.0f / std::sqrt(float(d));
                       a.tau = 0.02f;
                       a.block_q = bq;
                       a.block_k = bk;
                       a.local_window = 20;
                       a.segment = 2;
                       a.refresh = true;
                       const int64_t lists = B * Hq * ((N + bq - 1) / bq);
                       a.lists.offsets = r.be.alloc_indices(lists + 1);
                       a.lists.entries = r.be.alloc_indices(lists * ((N + bk - 1) / bk + 1));
                       if (!r.supported(r.be.supports_int4_block_scan(a))) return;
                       r.be.int4_block_scan(a);
                       const std::vector<int32_t> off = r.be.download_index_buffer(a.lists.offsets, lists + 1);
                       r.ints["offsets"] = off;
                       r.fetch_ints("entries", a.lists.entries, off.back());
                     }, nullptr, false, true});
    cases.push_back({"lse_merge", tn + "o in the input type (stored rounded on a GPU)", [dt](Run& r) {
                       r.dtype = dt;
                       HostTensor l1 = bt::random_tensor({1, 3, 37, 1}, r.rng), l2 = bt::random_tensor({1, 3, 37, 1}, r.rng);
                       l2.data[4] = -std::numeric_limits<float>::infinity();
                       LseMergeArgs a;
                       a.o = r.input("o", {1, 3, 37, 40});
                       a.o2 = r.input("o2", {1, 3, 37, 40});
                       a.lse = put(r.be, l1);
                       a.lse2 = put(r.be, l2);
                       a.offset = -0.5f;
                       if (!r.supported(r.be.supports_lse_merge(a))) return;
                       r.be.lse_merge(a);
                       r.fetch("o", a.o);
                       r.fetch("lse", a.lse);
                     }});
    cases.push_back({"copy_rows", tn + "rows of a bf16/fp16 tensor", [dt](Run& r) {
                       r.dtype = dt;
                       CopyRowsArgs a;
                       a.src = r.input("src", {2, 3, 37, 40});
                       a.dst = r.input("dst", {2, 3, 9, 40});
                       a.src_row = 1;
                       a.dst_row = 0;
                       a.rows = 9;
                       if (!r.supported(r.be.supports_copy_rows(a))) return;
                       r.be.copy_rows(a);
                       r.fetch("dst", a.dst);
                     }, nullptr, false, true});
    cases.push_back({"block_mean_keys", tn + "blocks of 9 of a bf16/fp16 cache into fp32", [dt](Run& r) {
                       r.dtype = dt;
                       BlockMeanKeysArgs a;
                       a.k = r.input("k", {2, 3, 75, 40});
                       a.out = r.output({2, 3, 8, 40});
                       a.offset = 2;
                       a.block = 9;
                       a.blocks = 8;
                       if (!r.supported(r.be.supports_block_mean_keys(a))) return;
                       r.be.block_mean_keys(a);
                       r.fetch("out", a.out);
                     }, nullptr, false, true});
    cases.push_back({"fake_quantize", tn + "6 bits of bf16/fp16 keys into fp32", [dt](Run& r) {
                       r.dtype = dt;
                       FakeQuantizeArgs a;
                       a.x = r.input("x", {2, 3, 37, 40});
                       a.out = r.output({2, 3, 37, 40});
                       a.bits = 6;
                       if (!r.supported(r.be.supports_fake_quantize(a))) return;
                       r.be.fake_quantize(a);
                       r.fetch("out", a.out);
                     }, nullptr, false, true});
    for (E ep : {E::raw, E::probs, E::probs_head_sum, E::probs_head_max, E::soft_vote, E::head_max, E::probs_output_l1})
      cases.push_back({"decode_scores", tn + "epilogue " + std::to_string(int(ep)) + ", 36 query rows, 150 keys, gathered",
                       [dt, ep](Run& r) {
                         r.dtype = dt;
                         DecodeScoresArgs a;
                         a.shape = shape_of(1, 6, 2, 40, 40, 12, 200, false);
                         a.q = r.input("q", {1, 6, 12, 40});
                         a.k = r.input("k", {1, 2, 200, 40});
                         a.v = r.input("v", {1, 2, 200, 40});
                         a.scale = 0.15f;
                         a.epilogue = ep;
                         a.rows = (int(ep) % 2) ? DecodeQueryRows::group_mean : DecodeQueryRows::group;
                         std::vector<int32_t> gathered;
                         for (int j = 0; j < 150; ++j) gathered.push_back(int32_t((j * 37) % 200));
                         a.key_lists = r.be.upload_indices({0, int32_t(gathered.size())}, gathered);
                         std::vector<DecodeScoreItem> items = {{0, 1, 0, 0, 150, 0, 12}, {0, 0, 3, 10, 70, 0, 5}};
                         int64_t total = 0;
                         for (auto& it : items) {
                           it.out = total;
                           total += a.item_size(it);
                         }
                         a.items = r.hold(items);
                         a.n_items = 2;
                         a.out = r.output({1, 1, 1, total});
                         if (!r.supported(r.be.supports_decode_scores(a))) return;
                         r.be.decode_scores(a);
                         r.fetch("out", a.out);
                       }, nullptr, true, true});  // the CPU's bits vary with its buffers' alignment
  }
  // select over thousands of candidates with many ties (scores on a coarse grid): the lists
  // must equal the CPU's exactly, ties going to the lower index.
  for (int variant = 0; variant < 2; ++variant)
    cases.push_back({"select", variant == 0 ? "top-k of 3001 candidates with ties, forced ranges" : "cumulative mass of 3001 candidates with ties",
                     [variant](Run& r) {
                       HostTensor sc = bt::random_tensor({1, 2, 1, 3001}, r.rng);
                       for (float& e : sc.data) e = std::round(std::fabs(e) * 8.0f) / 8.0f;  // ≈ 25 distinct values
                       r.in["scores"] = sc;
                       SelectArgs a;
                       a.scores = put(r.be, sc);
                       a.batch = 1;
                       a.list_heads = 4;
                       a.n_per = 1;
                       std::vector<int32_t> rules;
                       for (int l = 0; l < 4; ++l) {
                         const int32_t rule[] = {3001 - 500 * l, 37 + 400 * l, 10, 20 + l, 2990 - 500 * l, 3005 - 500 * l, 0, 3};
                         rules.insert(rules.end(), std::begin(rule), std::end(rule));
                       }
                       a.rules = bt::put_indices(r.be, rules);
                       if (variant == 1) {
                         a.rule = SelectRule::cumulative_mass;
                         a.gamma = 0.7;
                       }
                       a.lists.offsets = r.be.alloc_indices(5);
                       a.lists.entries = r.be.alloc_indices(4 * 3010);
                       if (!r.supported(r.be.supports_select(a))) return;
                       r.be.select(a);
                       const std::vector<int32_t> off = r.be.download_index_buffer(a.lists.offsets, 5);
                       r.ints["offsets"] = off;
                       r.fetch_ints("entries", a.lists.entries, off.back());
                     }});
  return cases;
}

const std::vector<OpCase>& cases() {
  static const std::vector<OpCase> c = make_cases();
  return c;
}

// The seed of case `index` (the same inputs on every backend).
uint32_t case_seed(uint32_t seed, size_t index) { return seed ^ uint32_t(0x9e3779b9u * (index + 1)); }

// Within `tol` of the CPU's value, relative to max(1, |cpu|); NaN and ±inf must match.
bool close_to_cpu(float got, float cpu, double tol) {
  if (std::isnan(cpu) || std::isinf(cpu)) return std::memcmp(&got, &cpu, 4) == 0 || (std::isnan(got) && std::isnan(cpu));
  return std::fabs(double(got) - cpu) <= tol * std::max(1.0, std::fabs(double(cpu)));
}

void compare(const Run& cpu, const Run& other, bool exact, double tol) {
  CHECK(cpu.out.size() == other.out.size());
  CHECK(cpu.ints.size() == other.ints.size());
  for (const auto& [name, want] : cpu.out) {
    INFO("output " << name);
    auto it = other.out.find(name);
    REQUIRE(it != other.out.end());
    CHECK(it->second.shape == want.shape);
    if (exact) {
      size_t where = 0;
      const bool same = bt::bit_equal(it->second.data, want.data, &where);
      INFO("first difference at " << where << ": " << (where < it->second.data.size() ? it->second.data[where] : NAN)
                                  << " vs cpu " << (where < want.data.size() ? want.data[where] : NAN));
      CHECK(same);
    } else {
      int64_t bad = 0;
      for (size_t i = 0; i < want.data.size() && i < it->second.data.size(); ++i)
        bad += !close_to_cpu(it->second.data[i], want.data[i], tol);
      INFO(bad << " elements outside " << tol);
      CHECK(bad == 0);
    }
  }
  for (const auto& [name, want] : cpu.ints) {
    INFO("index output " << name);
    auto it = other.ints.find(name);
    REQUIRE(it != other.ints.end());
    CHECK(it->second == want);
  }
  for (const auto& [name, want] : cpu.scalars) {
    INFO("scalar " << name);
    auto it = other.scalars.find(name);
    REQUIRE(it != other.scalars.end());
    if (exact) CHECK(it->second == want);
    else CHECK(std::fabs(it->second - want) <= tol * std::max(1.0, std::fabs(want)));
  }
}

}  // namespace

TEST_CASE("backend conformance: every op on every backend equals the CPU's (fake: bit for bit)") {
  const uint32_t seed = bt::test_seed();
  INFO("seed " << seed);
  std::vector<std::string> skipped;
  const std::vector<std::string> names = bt::backend_names(&skipped);
  for (const std::string& s : skipped) MESSAGE("backend conformance: skipped " << s);
  // The reference: the CPU's ops on 64-byte-aligned memory (bt::AlignedCpu says why).
  bt::AlignedCpu ref_be;
  std::vector<std::unique_ptr<Backend>> backends;
  for (const std::string& n : names) backends.push_back(bt::make_named(n));
  std::map<std::string, std::map<std::string, int>> supported;  // op -> backend -> cases run
  for (size_t ci = 0; ci < cases().size(); ++ci) {
    const OpCase& c = cases()[ci];
    INFO("op " << c.op << " [" << c.args << "]");
    Run ref(ref_be, case_seed(seed, ci));
    c.run(ref);
    REQUIRE_MESSAGE(ref.unsupported.empty(), "the CPU refuses a conformance case: " << ref.unsupported);
    if (c.ref64) c.ref64(ref);
    for (auto& bep : backends) {
      Backend& be = *bep;
      INFO("backend " << be.name());
      Run r(be, case_seed(seed, ci));
      c.run(r);
      if (be.name() == "fake") {
        // The fake device answers what the CPU answers for its own memory, with its bits.
        REQUIRE_MESSAGE(r.unsupported.empty(), r.unsupported);
        compare(ref, r, !c.cpu_bits_vary, 1e-6);
      } else if (be.name() == "cpu") {
        // The CPU itself, on its own (16-byte aligned) buffers: the last bits may move.
        REQUIRE_MESSAGE(r.unsupported.empty(), r.unsupported);
        compare(ref, r, false, 1e-5);
      } else if (r.unsupported.empty()) {
        if (c.gpu_check) c.gpu_check(ref, r);
        else
          compare(ref, r, false,
                  c.gpu_tol > 0 ? c.gpu_tol : tolerance_for(c.fp32_math ? DType::f32 : r.dtype, true).max_abs * 4);
      }
      if (r.unsupported.empty()) supported[c.op][be.name()]++;
      be.release_all();
    }
    ref_be.release_all();
  }
  std::string table = "ops run per backend (argument sets):\n";
  for (const auto& [op, per] : supported) {
    table += "  " + op + ":";
    for (const std::string& n : names) table += " " + n + "=" + std::to_string(per.count(n) ? per.at(n) : 0);
    table += "\n";
  }
  MESSAGE(table);
}

TEST_CASE("backend conformance: every Backend op has a conformance entry") {
  // Backend's members: its op table (core/backend.hpp) and its base, DeviceServices.
  std::set<std::string> declared = bt::declared_backend_members(std::string(ATTN_SOURCE_DIR) + "/src/core/backend.hpp");
  for (const std::string& m : bt::declared_backend_members(std::string(ATTN_SOURCE_DIR) + "/src/core/device_services.hpp"))
    declared.insert(m);
  std::set<std::string> known(bt::op_names().begin(), bt::op_names().end());
  known.insert(bt::backend_non_op_members().begin(), bt::backend_non_op_members().end());
  CHECK(declared.size() > 20);
  for (const std::string& d : declared)
    CHECK_MESSAGE(known.count(d), "Backend::" << d << " (core/backend.hpp, core/device_services.hpp) is neither in bt::op_names() nor in "
                                                      "bt::backend_non_op_members() (tests/backend_test_util.hpp): add it "
                                                      "and its conformance entries");
  for (const std::string& n : known)
    CHECK_MESSAGE(declared.count(n), n << " is listed in tests/backend_test_util.hpp but Backend declares no such member");
  std::set<std::string> covered;
  for (const OpCase& c : cases()) {
    CHECK_MESSAGE(std::count(bt::op_names().begin(), bt::op_names().end(), c.op) == 1, "entry for unknown op " << c.op);
    covered.insert(c.op);
  }
  for (const std::string& n : bt::op_names()) CHECK_MESSAGE(covered.count(n), "op " << n << " has no conformance entry");
}

// ---- The fake device's own guarantees --------------------------------------------------------
TEST_CASE("fake device: memory is not host-readable, host_f32 refuses it, foreign arguments are refused") {
  auto fake = make_fake_device_backend();
  auto cpu = make_cpu_backend();
  std::mt19937 rng(bt::test_seed());
  const HostTensor h = bt::random_tensor({1, 3, 37, 24}, rng);
  TensorRef t = put(*fake, h);
  CHECK(t.on_device);
  CHECK_THROWS_AS(t.host_f32(), std::logic_error);
  CHECK(!fake->view_host(h, DType::f32).has_value());
  // Upload rounds to the tensor's dtype (as CUDA's does); the values stay fp32 afterwards.
  TensorRef tb = fake->alloc(h.shape, DType::bf16);
  fake->upload(h, tb);
  CHECK(tb.bytes() == h.numel() * 2);
  CHECK(bt::bit_equal(fake->download(tb).data, bt::rounded(h, DType::bf16).data));
  // A host read of its address faults (in a child process).
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    signal(SIGSEGV, SIG_DFL);  // not doctest's crash report
    signal(SIGBUS, SIG_DFL);
    volatile float x = *static_cast<volatile float*>(t.data);
    (void)x;
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFSIGNALED(status));
  CHECK((WIFSIGNALED(status) && (WTERMSIG(status) == SIGSEGV || WTERMSIG(status) == SIGBUS)));
  // The CPU never marks its tensors as device memory.
  const TensorRef c = put(*cpu, h);
  CHECK_FALSE(c.on_device);
  CHECK(c.host_f32() != nullptr);
  CHECK_FALSE(cpu->view_host(h, DType::f32)->on_device);

  // Host tensors, another backend's lists and freed tensors are refused with the field named.
  const AttnShape s = shape_of(1, 3, 1, 24, 24, 2, 37, false);
  GatherDecodeArgs g;
  g.shape = s;
  g.q = put(*fake, bt::random_tensor({1, 3, 2, 24}, rng));
  g.k = put(*fake, bt::random_tensor({1, 1, 37, 24}, rng));
  g.v = put(*fake, bt::random_tensor({1, 1, 37, 24}, rng));
  g.o = fake->alloc({1, 3, 2, 24}, DType::f32);
  g.lse = fake->alloc({1, 3, 2, 1}, DType::f32);
  g.lists = fake->upload_indices({0, 3}, {1, 4, 9});
  CHECK(fake->supports_gather_decode(g).ok);
  GatherDecodeArgs foreign = g;
  foreign.lists = cpu->upload_indices({0, 3}, {1, 4, 9});
  Support sup = fake->supports_gather_decode(foreign);
  CHECK_FALSE(sup.ok);
  CHECK(sup.reason.find("lists") != std::string::npos);
  CHECK_THROWS(fake->gather_decode(foreign));
  GatherDecodeArgs host = g;
  host.k = c;
  sup = fake->supports_gather_decode(host);
  CHECK_FALSE(sup.ok);
  CHECK(sup.reason.find("k ") != std::string::npos);
  fake->free(g.v);
  sup = fake->supports_gather_decode(g);
  CHECK_FALSE(sup.ok);
  CHECK(sup.reason.find("v ") != std::string::npos);
  MESSAGE("fake device refusal, for example: " << sup.reason);
  // A tensor reaching past its allocation.
  CopyRowsArgs cr;
  cr.src = g.q;
  cr.dst = fake->alloc({1, 3, 2, 24}, DType::f32);
  cr.dst.shape[3] = 25;
  CHECK_FALSE(fake->supports_copy_rows(cr).ok);
  // The CPU backend refuses the fake device's tensors.
  SdpaArgs a;
  a.shape = shape_of(1, 3, 1, 24, 24, 2, 37, false);
  a.q = g.q;
  a.k = c;
  a.v = c;
  a.o = cpu->alloc({1, 3, 2, 24}, DType::f32);
  CHECK_FALSE(fake->supports_sdpa(a).ok);
  // int4 tensors: the CPU's (its opaque host handle) and freed ones are refused, by field.
  QuantizeInt4Args qa;
  qa.x = g.q;
  qa.out = fake->alloc_int4(g.q.shape, 4);
  CHECK(fake->supports_quantize_int4(qa).ok);
  fake->quantize_int4(qa);
  QuantizeInt4Args foreign4 = qa;
  foreign4.out = cpu->alloc_int4(g.q.shape, 4);
  sup = fake->supports_quantize_int4(foreign4);
  CHECK_FALSE(sup.ok);
  CHECK(sup.reason.find("out") != std::string::npos);
  CHECK_THROWS(fake->quantize_int4(foreign4));
  fake->free_int4(qa.out);
  sup = fake->supports_quantize_int4(qa);
  CHECK_FALSE(sup.ok);
  CHECK(sup.reason.find("no live int4 tensor") != std::string::npos);
  fake->release_all();
  CHECK_FALSE(fake->supports_gather_decode(g).ok);
}
