#pragma once
// Decode-time scoring and selection primitives on the CPU (docs/variants.md §26 S5), composed by the
// decode variants of src/variants/sparse_decode/ with the general ones of cpu/selection.hpp
// (top_k, pool_rows, softmax_probs): scores of a kv group's few query rows against a long
// cache, TokenSelect's head soft-vote (§12) and its cosine-keyed selection cache.
#include <cstdint>
#include <vector>

namespace ab::cpu {

// out (rows, n) = scale · q kᵀ for q (rows, d) and the contiguous keys k (n, d): the query rows
// of one kv group (G heads × a step) against a cache range. Threads over key chunks: at decode
// rows is a handful and n the whole cache.
void group_scores(const float* q, int64_t rows, const float* k, int64_t n, int d, float scale,
                  float* out);

// TokenSelect's soft vote (§12 step 5; pzs19/TokenSelect token_retrieval.py): every head's
// scores are softmax-normalised over the n candidates ("per-head criticality") and the heads'
// distributions summed: votes[j] += Σ_h softmax_j(scores[h, ·]). Adds into `votes` (n), so
// the heads of several kv groups vote together. scores (heads, n) row-major.
void soft_vote(const float* scores, int64_t heads, int64_t n, float* votes);

// cos(a, b) = a·b / (|a| |b|), in double; 0 when either vector is zero.
double cosine(const float* a, const float* b, int64_t n);

// A cosine-keyed selection cache (TokenSelect §12 step 3): the selection made for a query
// fingerprint is reused while later fingerprints stay within `threshold` cosine of it.
class SelectionCache {
 public:
  explicit SelectionCache(double threshold) : threshold_(threshold) {}
  // The cached selection when a fingerprint is stored and cos(f, stored) >= threshold, else
  // null. `cos_out` receives the cosine (NaN when nothing is stored).
  const std::vector<int32_t>* lookup(const float* f, int64_t n, double* cos_out = nullptr);
  // Replaces the cached fingerprint and selection.
  void store(const float* f, int64_t n, std::vector<int32_t> selection);
  int64_t hits() const { return hits_; }
  int64_t misses() const { return misses_; }

 private:
  double threshold_;
  std::vector<float> fingerprint_;
  std::vector<int32_t> selection_;
  int64_t hits_ = 0, misses_ = 0;
};

}  // namespace ab::cpu
