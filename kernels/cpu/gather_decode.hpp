#pragma once
// CPU implementation of op 3, token/page-gather decode (docs/variants.md §26 S3), and its float64
// reference. Decode-time selection methods (TokenSelect, Recycled, Landmark, SpAtten,
// Kinetics, RetrievalAttention) all end in this op: the query rows of one kv group attend to
// the keys of that kv head's index list only.
#include <cstdint>
#include <vector>

#include "core/ops.hpp"
#include "core/tensor.hpp"

namespace ab::cpu {

// Op 3 on host fp32 tensors (shapes in core/ops.hpp GatherDecodeArgs):
//   q (B,Hq,Nq,D)  k (B,Hkv,Nkv,D)  v (B,Hkv,Nkv,Dv)  o (B,Hq,Nq,Dv)  lse (B,Hq,Nq,1) or null.
// Every query row of head h in batch b attends to the keys of list b*Hkv + h/(Hq/Hkv), each
// list entry once (a repeated index counts twice, as a gather would). An empty list gives
// O = 0 and LSE = -inf, the identity of the LSE merge.
// Work items are (batch, kv head, chunk of the list): the G·Nq rows of a kv group share one
// GEMM per gathered key tile, so each gathered key is read once per group (GQA-aware). Lists
// are split into chunks when B·Hkv items are too few to keep the threads busy, and the
// partial (m, ℓ, acc) merged by LSE. Throws std::invalid_argument on a bad shape, a list
// count other than B·Hkv, or an index outside [0, Nkv).
// chunk_keys > 0 forces that many keys per chunk (tests of the merge); 0 chooses.
void gather_decode(const GatherDecodeArgs& a, int64_t chunk_keys = 0);

}  // namespace ab::cpu
