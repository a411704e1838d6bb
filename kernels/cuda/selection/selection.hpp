#pragma once
// The selection and estimation ops on the GPU (core/ops_select.hpp, core/ops_decode.hpp): the
// estimation phase of the selection-based variants (docs/gpu.md, "Selection ops"). Plain
// structs of pointers, shapes and scalars; the routing and the argument checks live in
// src/backends/cuda/cuda_select_ops.cpp. Every launch is asynchronous on `stream`: no host
// copies, no allocation, no synchronisation (scratch comes from the backend).
//
// First version: fp32 FMA over bf16/fp16/fp32 inputs through shared-memory tiles (32 rows ×
// 64 keys per 256-thread CTA), two passes where a softmax over the visible keys is needed,
// radix select per list for top-k with the CPU's tie order, and count → scan → write for the
// CSR outputs (the producing pass is run twice rather than buffered).
#include <cstddef>
#include <cstdint>

#include <cuda_runtime_api.h>

namespace ab::cuda::sel {

// Element types of a tensor (storage as the backend allocates it).
enum Elem : int { kF32 = 0, kBF16 = 1, kF16 = 2 };

// A contiguous 4-d tensor (dims as TensorRef::shape).
struct Ten {
  const void* p = nullptr;
  int elem = kF32;
  int64_t n0 = 0, n1 = 0, n2 = 0, n3 = 0;
  int64_t numel() const { return n0 * n1 * n2 * n3; }
};

// CSR output: offsets (lists + 1) and entries of capacity `cap` (writes past it are dropped).
struct Csr {
  int32_t* offsets = nullptr;
  int32_t* entries = nullptr;
  int64_t cap = 0;
};

// ---- pool ----
struct PoolHeadsP {
  Ten in;
  float* out = nullptr;  // (B, Hout, R, D) fp32
  int64_t hout = 0, rows = 0;
  int group = 1;
  int64_t row_stride = 1;
  bool max = false;
};
// how: 0 mean, 1 max, 2 sum, 3 normalized_sum
struct PoolRowsP {
  Ten in;
  float* out = nullptr;  // (B, H, S, D) fp32
  int64_t segs = 0, block = 1, rows_end = 0;
  const int32_t* bounds = nullptr;
  const int32_t* col_limits = nullptr;
  int how = 0;
  bool f64_sum = false, sqrt_len = false;
};
struct WindowContrastP {
  Ten in;
  float* out = nullptr;  // (B, H, N, 1)
  int64_t block = 1;
};
cudaError_t pool_heads(const PoolHeadsP& p, cudaStream_t s);
cudaError_t pool_rows(const PoolRowsP& p, cudaStream_t s);
cudaError_t window_contrast(const WindowContrastP& p, cudaStream_t s);

// ---- project ----
struct FavorP {
  Ten x, proj;           // x (B, H, N, D), proj (1, 1, F, D)
  float* out = nullptr;  // (B, H, N, F) fp32
  float xs = 1.0f;
  bool row_stab = true;
  uint32_t* slice_max = nullptr;  // scratch, B·H entries (slice stabiliser only)
};
struct SignCodeP {
  Ten x, proj;  // proj (1, 1, D, F), F <= 30
  const int32_t* code = nullptr;
  int32_t* codes = nullptr;
};
cudaError_t project_favor(const FavorP& p, cudaStream_t s);
cudaError_t project_sign_code(const SignCodeP& p, cudaStream_t s);

// ---- scores ----
// epilogue: 0 raw, 1 probs_head_mean, 2 probs_block_pool, 3 keys_reaching, 4 raw_normalized_sum
struct ScoresP {
  int epilogue = 0;
  Ten q, k, thr;
  float* out = nullptr;
  int64_t out_rows = 0;  // out.shape[2]
  float scale = 0.0f;
  int64_t n_keys = 0, row_begin = 0, row_end = 0, positions = 0, row_stride = 1, q_offset = 0;
  bool causal = false;
  int head_group = 1;
  int64_t key_block = 1, row_block = 1, group_base = 0;
  bool key_max = true, row_max = true;
  int64_t row_group = 1, key_begin = 0, keys_per_group = 0;
  float thr_offset = 0.0f;
  bool partial_keeps_all = true;
  Csr lists;
  const int32_t* col_limits = nullptr;
};
cudaError_t scores(const ScoresP& p, cudaStream_t s);

// ---- select ----
struct SelectP {
  Ten scores;  // (B, Hs, R, C)
  int batch = 1, list_heads = 1;
  int64_t n_per = 1;
  const int32_t* col_map = nullptr;
  int64_t col_map_stride = 0, map_len = 0;
  const int32_t* rules = nullptr;
  int64_t k = 0;
  double gamma = 1.0;
  bool cumulative = false, mask_forced = false;
  int64_t expand_width = 0, expand_n = 0;
  Csr lists;
  uint32_t* scratch = nullptr;  // 2 per list: the threshold key and the ties taken
};
size_t select_scratch_bytes(const SelectP& p);
cudaError_t select(const SelectP& p, cudaStream_t s);

// ---- lse_merge ----
struct LseMergeP {
  Ten o, o2;  // (B, H, N, Dv); o in place
  float* lse = nullptr;
  const float* lse2 = nullptr;
  const float* row_offset = nullptr;  // (N) or null
  float offset = 0.0f;
};
cudaError_t lse_merge(const LseMergeP& p, cudaStream_t s);

// ---- int4 (SALE §8) ----
// values: (B, H, N, ceil(D / 4)) 32-bit words, four int8 each (dims 4w .. 4w+3, padding 0);
// scales: (B, H, ceil(N / block)) fp32.
struct Int4P {
  int32_t* values = nullptr;
  float* scales = nullptr;
  int64_t block = 1;
};
struct QuantizeInt4P {
  Ten x, center;
  Int4P out;
};
struct Int4ScanP {
  Ten q, k, k_center;
  Int4P q4, k4;
  float scale = 0.0f, tau = 0.0f;
  int64_t block_q = 1, block_k = 1, local_window = 0, segment = 1, q_offset = 0;
  bool refresh = false;
  Csr lists;
};
cudaError_t quantize_int4(const QuantizeInt4P& p, cudaStream_t s);
cudaError_t int4_block_scan(const Int4ScanP& p, cudaStream_t s);
constexpr int64_t kInt4MaxBlockQ = 1024;  // rows of a query block (statistics in shared memory)
constexpr int64_t kInt4MaxSegment = 1024; // blocks of a refresh segment

// ---- decode-time ops ----
struct CopyRowsP {
  Ten src, dst;
  int64_t src_row = 0, dst_row = 0, rows = 0;
};
struct BlockMeanP {
  Ten k, out;
  int64_t offset = 0, block = 1, blocks = 0, out_row = 0;
};
struct FakeQuantP {
  Ten x, out;
  int bits = 8;
};
cudaError_t copy_rows(const CopyRowsP& p, cudaStream_t s);
cudaError_t block_mean_keys(const BlockMeanP& p, cudaStream_t s);
cudaError_t fake_quantize(const FakeQuantP& p, cudaStream_t s);

// decode_scores: items as core/ops_decode.hpp's DecodeScoreItem, passed by value in batches.
struct DecItem {
  int32_t b = 0, kv_head = 0;
  int64_t q_row = 0, k0 = 0, n = 0, out = 0, q_rows = 1;
};
// epilogue: 0 raw, 1 probs, 2 probs_head_sum, 3 probs_head_max, 4 soft_vote, 5 head_max,
// 6 probs_output_l1 (the order of DecodeScoreEpilogue)
struct DecodeScoresP {
  Ten q, k, v;
  float* out = nullptr;
  int q_heads = 0, kv_heads = 0, head_dim = 0;
  float scale = 1.0f;
  bool group_mean = false;
  int epilogue = 0;
  const int32_t* key_idx = nullptr;  // gathered keys (null: contiguous ranges)
  const DecItem* items = nullptr;    // host memory
  int64_t n_items = 0;
};
cudaError_t decode_scores(const DecodeScoresP& p, cudaStream_t s);

}  // namespace ab::cuda::sel
