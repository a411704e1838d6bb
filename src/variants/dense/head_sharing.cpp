// The dense head-sharing family (docs/variants.md §1): MHA, GQA, MQA and Sparse Query Attention
// with its named configurations. One algorithm — dense SDPA where H_q query heads share
// H_kv key/value heads — so one file; the configurations differ only in head counts.
// SQA: "Sparse Query Attention", ReactiveAI, arXiv 2510.01817 (Table 3, 16 baseline heads).
#include <memory>

#include "core/errors.hpp"
#include "variants/dense_sdpa_base.hpp"

namespace ab {
namespace {

// How a configuration derives its head counts from the model's H (problem.heads) and params.
enum class Heads { all, quarter, half, one, param };

struct HeadConfig {
  const char* name;
  const char* summary;
  Heads q;   // query heads
  Heads kv;  // kv heads
  bool sqa;  // SQA rule: H_q < H
};

constexpr HeadConfig kConfigs[] = {
    {"mha", "multi-head attention: H query heads, H kv heads", Heads::all, Heads::all, false},
    {"gqa", "grouped-query attention: H query heads share kv_heads kv heads", Heads::all,
     Heads::param, false},
    {"mqa", "multi-query attention: H query heads share one kv head", Heads::all, Heads::one,
     false},
    {"sqa", "Sparse Query Attention: query_heads < H query heads, kv_heads kv heads",
     Heads::param, Heads::param, true},
    {"ssqa", "symmetric SQA: H/2 query heads, H/2 kv heads", Heads::half, Heads::half, true},
    {"xsqa", "extreme SQA: H/4 query heads, H/4 kv heads", Heads::quarter, Heads::quarter, true},
    {"xsmqa", "extreme SQA with one kv head: H/4 query heads, 1 kv head", Heads::quarter,
     Heads::one, true},
};

constexpr const char* kSqaPaper = "Sparse Query Attention (SQA), ReactiveAI, arXiv 2510.01817";
constexpr const char* kGqaPaper =
    "GQA: Training Generalized Multi-Query Transformer Models, Ainslie et al., EMNLP 2023";
constexpr const char* kMqaPaper = "Fast Transformer Decoding: One Write-Head is All You Need, "
                                  "Shazeer, arXiv 1911.02150";
constexpr const char* kMhaPaper = "Attention Is All You Need, Vaswani et al., NeurIPS 2017";

class HeadSharing final : public DenseSdpaVariant {
 public:
  HeadSharing(const HeadConfig& cfg, ParamSet p) : DenseSdpaVariant(std::move(p)), cfg_(cfg) {
    info_.name = cfg.name;
    info_.fidelity = {Fidelity::faithful, "dense SDPA with the paper's head counts; the attention op as published"};
    info_.family = "dense-head-sharing";
    info_.summary = cfg.summary;
    const std::string n = cfg.name;
    info_.paper = n == "mha" ? kMhaPaper : n == "gqa" ? kGqaPaper : n == "mqa" ? kMqaPaper : kSqaPaper;
    if (cfg.q == Heads::param)
      info_.params.push_back({"query_heads", ParamType::integer, int64_t{0},
                              "query heads H_q, 1 <= H_q < H; 0 = H/2 (the paper's SQA 8/16)"});
    if (cfg.kv == Heads::param)
      info_.params.push_back(
          {"kv_heads", ParamType::integer, int64_t{0},
           n == "gqa" ? "kv heads, dividing H; 0 = problem.kv_heads when below H, else H/4 "
                        "(the paper's GQA 16/4)"
                      : "kv heads, dividing H_q; 0 = H/4 (the paper's SQA 4/16)"});
    info_.modes = {Mode::prefill, Mode::decode};
  }

  const VariantInfo& info() const override { return info_; }

  AttnShape shape(const Problem& p) const override {
    AttnShape s = shape_from_problem(p);
    const int H = p.heads;
    auto derive = [&](Heads how, const char* param) -> int {
      switch (how) {
        case Heads::all: return H;
        case Heads::half: return H / 2;
        case Heads::quarter: return H / 4;
        case Heads::one: return 1;
        case Heads::param: {
          const int64_t v = params_.integer(param);
          if (v < 0)
            throw InputError(std::string(cfg_.name) + "." + param + " = " + std::to_string(v) +
                             ": must be >= 0 (0 = default)");
          if (v > 0) return static_cast<int>(v);
          if (std::string(param) == "query_heads") return H / 2;
          if (std::string(cfg_.name) == "gqa") return p.kv_heads < H ? p.kv_heads : H / 4;
          return H / 4;
        }
      }
      return H;
    };
    s.q_heads = derive(cfg_.q, "query_heads");
    s.kv_heads = derive(cfg_.kv, "kv_heads");
    const std::string n = cfg_.name;
    if (s.q_heads < 1 || s.kv_heads < 1)
      throw InputError(n + ": problem.heads = " + std::to_string(H) +
                       " is too small for this configuration (needs H_q >= 1 and H_kv >= 1; "
                       "H/4 must be at least 1)");
    if (cfg_.sqa && s.q_heads >= H)
      throw InputError(n + ".query_heads = " + std::to_string(s.q_heads) +
                       ": SQA needs fewer query heads than problem.heads = " + std::to_string(H));
    if (s.q_heads > H)
      throw InputError(n + ".query_heads = " + std::to_string(s.q_heads) +
                       ": must not exceed problem.heads = " + std::to_string(H));
    if (s.kv_heads > s.q_heads || s.q_heads % s.kv_heads != 0)
      throw InputError(n + ".kv_heads = " + std::to_string(s.kv_heads) +
                       ": must divide the query heads (" + std::to_string(s.q_heads) + ")");
    return s;
  }

 private:
  HeadConfig cfg_;
  VariantInfo info_;
};

template <int I>
std::unique_ptr<Variant> make_config(const ParamSet& p) {
  return std::make_unique<HeadSharing>(kConfigs[I], p);
}

}  // namespace

std::unique_ptr<Variant> make_mha(const ParamSet& p) { return make_config<0>(p); }
std::unique_ptr<Variant> make_gqa(const ParamSet& p) { return make_config<1>(p); }
std::unique_ptr<Variant> make_mqa(const ParamSet& p) { return make_config<2>(p); }
std::unique_ptr<Variant> make_sqa(const ParamSet& p) { return make_config<3>(p); }
std::unique_ptr<Variant> make_ssqa(const ParamSet& p) { return make_config<4>(p); }
std::unique_ptr<Variant> make_xsqa(const ParamSet& p) { return make_config<5>(p); }
std::unique_ptr<Variant> make_xsmqa(const ParamSet& p) { return make_config<6>(p); }

}  // namespace ab
