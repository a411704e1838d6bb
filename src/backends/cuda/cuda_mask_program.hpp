#pragma once
// A Mask (core/mask.hpp) as the program the CUDA kernels evaluate (kernels/cuda/common/
// mask_program.hpp): the predicate's program ANDed with the structured part. Host code, also
// used by the tests that check the programs against the mask library on the CPU.
#include <vector>

#include "core/mask.hpp"
#include "cuda/common/mask_program.hpp"

namespace ab::cuda_ops {

static_assert(int(MaskInstr::Op::causal) == cuda::kMaskCausal && int(MaskInstr::Op::window) == cuda::kMaskWindow &&
              int(MaskInstr::Op::sinks) == cuda::kMaskSinks &&
              int(MaskInstr::Op::block_diagonal) == cuda::kMaskBlockDiagonal &&
              int(MaskInstr::Op::blockrank) == cuda::kMaskBlockRank &&
              int(MaskInstr::Op::mixformer) == cuda::kMaskMixFormer && int(MaskInstr::Op::all_of) == cuda::kMaskAllOf &&
              int(MaskInstr::Op::any_of) == cuda::kMaskAnyOf,
              "kernels/cuda/common/mask_program.hpp mirrors core/mask.hpp's MaskInstr::Op");

// The whole mask as one program: the predicate's, ANDed with the structured part (causal;
// sliding window OR sinks). False when it does not fit.
inline bool mask_program_of(const Mask& m, cuda::MaskProgram& out) {
  std::vector<MaskInstr> prog = m.extra ? m.extra->program : std::vector<MaskInstr>{};
  if (m.extra && prog.empty()) return false;
  int parts = m.extra ? 1 : 0;
  if (m.causal) {
    prog.push_back({MaskInstr::Op::causal, 0, 0});
    ++parts;
  }
  if (m.window > 0) {
    prog.push_back({MaskInstr::Op::window, m.window, 0});
    if (m.sinks > 0) {
      prog.push_back({MaskInstr::Op::sinks, m.sinks, 0});
      prog.push_back({MaskInstr::Op::any_of, 2, 0});
    }
    ++parts;
  }
  if (parts > 1) prog.push_back({MaskInstr::Op::all_of, parts, 0});
  if (prog.empty() || prog.size() > size_t(cuda::kMaskProgramMax)) return false;
  out.n = int(prog.size());
  for (size_t i = 0; i < prog.size(); ++i) {
    out.op[i] = int32_t(prog[i].op);
    out.a[i] = prog[i].a;
    out.b[i] = prog[i].b;
  }
  return true;
}

}  // namespace ab::cuda_ops
