#pragma once
// Composable attention masks in the spirit of attention-gym's mask_mod functions: a mask is a
// small function of (batch, head, query position, key index) with a printable name that
// carries its parameters ("window1024_sink4"), composable with and_masks / or_masks. Every
// factory is named generate_<name> and comes with an exact block classifier,
// so kernels skip empty blocks and drop the element mask on full ones; compositions combine
// their parts' classes and scan the block only when that is ambiguous.
// Positions are absolute: query row i sits at i + (kv_len - q_len) (bottom-right aligned).
//
// A Mask (core/mask.hpp) carries a MaskFn as its `extra` predicate (to_mask); the structured
// fields causal/window/sinks remain the form every backend (CUDA included) understands.
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/mask.hpp"
#include "core/problem.hpp"

namespace ab {

using MaskFn = std::shared_ptr<const MaskPredicate>;
using MaskAllows = std::function<bool(int b, int h, int64_t qpos, int64_t j)>;
using MaskClassify =
    std::function<BlockClass(int b, int h, int64_t q0, int64_t q1, int64_t k0, int64_t k1)>;

// A mask from its parts; without a classifier, blocks are classified by scanning.
MaskFn make_mask_fn(std::string name, MaskAllows allows, MaskClassify classify = {});

// j <= qpos.                                                              name "causal"
MaskFn generate_causal();
// |qpos - j| < window (with generate_causal: the causal sliding window). name "window<W>"
MaskFn generate_sliding_window(int64_t window);
// j < sinks: the first tokens, visible to every query.                   name "sink<S>"
MaskFn generate_sinks(int64_t sinks);
// StreamingLLM's cache (arXiv 2309.17453): the sinks or the recent window; AND it with
// generate_causal() for the causal form.                          name "window<W>_sink<S>"
MaskFn generate_streaming(int64_t window, int64_t sinks);
// Non-overlapping diagonal blocks: qpos / block == j / block (TransNormer's DiagAttention,
// arXiv 2210.10340).                                               name "blockdiag<B>"
MaskFn generate_block_diagonal(int64_t block);
// BlockRank (arXiv 2510.05396): `blocks` equal blocks of `block_len` positions (the last
// may be shorter): block 0 (instruction) causal within itself; document blocks see block 0
// fully and themselves causally; the last (query) block sees every earlier block fully and
// itself causally.                                           name "blockrank_b<M>_len<L>"
MaskFn generate_blockrank(int64_t blocks, int64_t block_len);
// MixFormer's asymmetric mixed attention (CVPR 2022, arXiv 2203.11082): template positions [0, templates)
// see template keys only; search positions see every key.       name "mixformer_t<T>"
MaskFn generate_mixformer(int64_t templates);

// Pairs allowed by every part (names joined by "_"), by any part (joined by "_or_", bracketed
// when nested in an AND).
MaskFn and_masks(const std::vector<MaskFn>& parts);
MaskFn or_masks(const std::vector<MaskFn>& parts);
// The same mask under another name (e.g. a variant's short name for a composition).
MaskFn rename_mask(const MaskFn& m, std::string name);

// A Mask whose predicate is `fn` (and, optionally, causal): what SdpaArgs carries.
Mask to_mask(const MaskFn& fn, bool causal = false);

// The classes of all blocks of a mask at a block size, for one (batch, head): block (r, c)
// covers query rows [r·q_block, ...) (row indices, 0-based within q_len) and keys
// [c·k_block, ...). Reusable by the sparse and CUDA kernels (a block list from a mask).
struct BlockMap {
  int64_t q_block = 0, k_block = 0, q_blocks = 0, k_blocks = 0;
  std::vector<BlockClass> cls;  // q_blocks x k_blocks, row-major
  BlockClass at(int64_t r, int64_t c) const { return cls[size_t(r * k_blocks + c)]; }
  int64_t count(BlockClass c) const;
  // (query, key) pairs inside non-empty blocks: what a block-skipping kernel computes.
  double nonempty_pairs(const AttnShape& s) const;
};
BlockMap classify_blocks(const Mask& m, const AttnShape& s, int64_t q_block, int64_t k_block,
                         int b = 0, int h = 0);

// (query, key) pairs the mask allows for one (batch, head), exactly: full blocks counted
// whole, partial ones element by element.
double allowed_pairs(const Mask& m, const AttnShape& s, int b = 0, int h = 0);

}  // namespace ab
