// Token-gather decode: the split-KV decode kernel with key rows fetched through per-(batch,
// kv head) index lists (decode_kernel.cuh, GATHER = true). Instantiated apart from the dense
// decode so the two compile in parallel.
#include "cuda/decode/decode_kernel.cuh"

namespace ab::cuda {

DecodeLaunchFn gather_decode_select(ElemType elem, int head_dim) {
  using namespace decode_detail;
  const bool bf = elem == ElemType::bf16;
  if (head_dim == 64) return bf ? launch_decode<__nv_bfloat16, 64, true> : launch_decode<__half, 64, true>;
  return bf ? launch_decode<__nv_bfloat16, 128, true> : launch_decode<__half, 128, true>;
}

}  // namespace ab::cuda
