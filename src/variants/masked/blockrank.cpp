// BlockRank's structured attention for in-context ranking.
// "Scalable In-context Ranking with Generative Models" (BlockRank), arXiv 2510.05396
// (nilesh2797/BlockRank blockrank_std_attention.py). docs/variants.md §19.
//
// The prompt is `documents` + 2 equal blocks: instruction, documents, query. The instruction
// is causal within itself; each document sees the instruction fully and itself causally; the
// query sees everything before it fully and itself causally. Block length L = floor(N / M)
// with M = documents + 2, the query block taking the rest, N - (M-1)·L (the paper left-pads
// each block to max_block_length; equal blocks keep every position a real token).
// Dense softmax SDPA under that mask; the tiled CPU kernel skips the empty document×document
// tiles, so the cost grows linearly in the number of documents (docs/variants.md §19 (e)).
#include <memory>

#include "core/errors.hpp"
#include "core/mask_library.hpp"
#include "variants/dense_sdpa_base.hpp"

namespace ab {
namespace {

class BlockRank final : public DenseSdpaVariant {
 public:
  explicit BlockRank(ParamSet p) : DenseSdpaVariant(std::move(p)) {
    info_.name = "blockrank";
    info_.fidelity = {Fidelity::simplified, "equal-length blocks instead of the paper's left-padded blocks"};
    info_.family = "masked";
    info_.paper = "Scalable In-context Ranking with Generative Models (BlockRank), "
                  "arXiv 2510.05396";
    info_.summary = "instruction / document / query block mask: documents see the instruction "
                    "and themselves, the query sees all (causal within blocks)";
    info_.params = {
        {"documents", ParamType::integer, int64_t{30},
         "documents M-2 between the instruction and query blocks (30 in the MS MARCO "
         "config); block length = floor(N / (documents + 2)); >= 1"},
    };
    info_.modes = {Mode::prefill};
  }

  const VariantInfo& info() const override { return info_; }

  AttnShape shape(const Problem& p) const override {
    const int64_t docs = params_.integer("documents");
    if (docs < 1)
      throw InputError("blockrank.documents = " + std::to_string(docs) + ": must be >= 1");
    if (!p.causal)
      throw InputError("blockrank: problem.causal = false: the mask is causal within blocks and "
                       "its dense baseline is causal attention; set problem.causal: true");
    if (p.kv_len < docs + 2)
      throw InputError("blockrank.documents = " + std::to_string(docs) + ": must be at most "
                       "N - 2 = " + std::to_string(p.kv_len - 2) + " (every block needs a token)");
    return shape_from_problem(p);
  }

  Mask mask(const AttnShape& s) const override {
    const int64_t blocks = params_.integer("documents") + 2;
    return to_mask(generate_blockrank(blocks, s.kv_len / blocks), true);
  }

  Cost cost(const AttnShape& s, const Plan* plan) const override {
    Cost c = DenseSdpaVariant::cost(s, plan);
    const double dense_pairs = s.allowed_pairs();
    c.density = dense_pairs > 0 ? allowed_pairs(mask(s), s) / dense_pairs : 1.0;
    return c;
  }

 private:
  VariantInfo info_;
};

}  // namespace

std::unique_ptr<Variant> make_blockrank(const ParamSet& p) { return std::make_unique<BlockRank>(p); }

}  // namespace ab
