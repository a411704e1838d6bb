#pragma once
// CPU implementations of the decode-time selection ops (core/ops_decode.hpp), wrapping the
// kernels of kernels/cpu (selection.hpp, selection_decode.hpp). Each refusal
// function returns "" when the op can run, else the reason.
#include <string>

#include "core/ops_decode.hpp"

namespace ab::cpu_decode {

std::string copy_rows_refusal(const CopyRowsArgs& a);
void copy_rows(const CopyRowsArgs& a);

std::string block_mean_keys_refusal(const BlockMeanKeysArgs& a);
void block_mean_keys(const BlockMeanKeysArgs& a);

std::string fake_quantize_refusal(const FakeQuantizeArgs& a);
void fake_quantize(const FakeQuantizeArgs& a);

std::string decode_scores_refusal(const DecodeScoresArgs& a);
void decode_scores(const DecodeScoresArgs& a);

}  // namespace ab::cpu_decode
