#pragma once
// Shared body of the selection-based decode variants (docs/variants.md §9, §12–15, §17, §24): a plan
// phase that walks the decode steps in order and decides, per step and per (batch, kv head),
// which keys the step attends to — carrying each method's state across steps — and an
// attention phase that runs op 3 (token-gather decode) once per step over those lists, merging
// several key sources by LSE (docs/decode.md). The lists are also the selection the recall and
// NIAH metrics read, so they see exactly the keys the kernel used.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/variant.hpp"

namespace ab {

// Key lists of one source for every step: step t, list r = b·Hkv + kv head, ascending keys,
// each at most the step's position (docs/decode.md).
class StepKeyLists {
 public:
  StepKeyLists(int64_t steps, int64_t lists);
  // Appends the next list of step t (a step's lists are pushed in order r = 0, 1, ...).
  void push(int64_t t, const std::vector<int32_t>& keys);
  int64_t steps() const { return int64_t(offsets_.size()); }
  int64_t lists() const { return lists_; }
  int64_t size(int64_t t, int64_t r) const { return offsets_[size_t(t)][size_t(r) + 1] - offsets_[size_t(t)][size_t(r)]; }
  const int32_t* keys(int64_t t, int64_t r) const { return indices_[size_t(t)].data() + offsets_[size_t(t)][size_t(r)]; }
  // Op 3's lists of step t, in host memory.
  IndexLists view(int64_t t) const;
  double entries() const;  // over every step and list

 private:
  int64_t lists_;
  std::vector<std::vector<int32_t>> offsets_;  // per step: lists + 1
  std::vector<std::vector<int32_t>> indices_;  // per step
};

// One key source of a decode plan. A source may score its keys with its own copies of Q and
// K on the backend (SpAtten's fake-quantised MSB pass: q_dev, k_dev; null: the case's inputs),
// made from the inputs by fake_quantize with quant_bits bits (0: none), which reference_row
// applies to its host rows.
struct DecodeSource {
  std::shared_ptr<const StepKeyLists> lists;
  int quant_bits = 0;
  TensorRef q_dev, k_dev;
};

// What the recall and NIAH metrics read: row t of head h sees the union over sources of step
// t's list of (b, h's kv head).
class DecodeTokenSelection final : public Selection {
 public:
  DecodeTokenSelection(AttnShape shape, std::vector<std::shared_ptr<const StepKeyLists>> sources)
      : shape_(shape), sources_(std::move(sources)) {}
  std::string kind() const override { return "tokens"; }
  void keys(int b, int h, int64_t i, std::vector<int64_t>& out) const override;

 private:
  AttnShape shape_;
  std::vector<std::shared_ptr<const StepKeyLists>> sources_;
};

// Identifies an input set, for work a method does once per cache at prefill time (an index,
// the prompt's page means) and reuses across plans of the same inputs — latency samples plan
// again and must time the decode-time work only. The backend copy's address, the shape and a
// sample of the keys (a new input set may reuse a freed address), read through copy_rows and
// a download of a few rows.
struct InputsKey {
  const void* k = nullptr;
  std::vector<float> sample;
  static InputsKey of(const Inputs& in, Backend& be);
  bool operator==(const InputsKey& o) const { return k == o.k && sample == o.sample; }
};

class SparseDecodeVariant : public Variant {
 public:
  explicit SparseDecodeVariant(ParamSet params) : params_(std::move(params)) {
    info_.modes = {Mode::decode};
  }
  const VariantInfo& info() const override { return info_; }

  AttnShape shape(const Problem& p) const override;
  Support supports(const AttnShape& s, const Backend& b) const override;
  Cost cost(const AttnShape& s, const Plan* plan) const override;
  bool has_plan_phase() const override { return true; }
  Plan plan(const Inputs& in, Backend& b) override;
  void run(const Inputs& in, const Plan& plan, Outputs& out, Backend& b) override;
  // Float64 softmax attention over exactly the keys the plan selected for step i (each
  // source's terms with that source's Q and K): checks the kernels and the merge, while the
  // selection rules themselves are checked against their own direct recomputations in
  // tests/test_sparse_decode_variants.cpp.
  void reference_row(const Inputs& in, const Plan& plan, int b, int h, int64_t i, double* o,
                     double* lse) const override;

 protected:
  struct Selected {
    std::vector<DecodeSource> sources;
    double estimation_flops = 0;  // the plan phase over every step (scores, index search)
    double estimation_bytes = 0;  // bytes it reads over every step (keys it scores)
    std::map<std::string, double> stats;
  };
  // Throws InputError naming the parameter and the rule broken for this shape.
  virtual void check(const AttnShape& s) const = 0;
  // Every step's lists, decided in step order from what each step may know, computing on
  // backend tensors through be's ops.
  virtual Selected select(const Inputs& in, Backend& be) = 0;
  // The backend's answer for the ops select() calls (probed with the argument kinds it
  // passes); and how many key sources the plan may have (more than one: run() merges by LSE).
  virtual Support supports_selection(const AttnShape& s, const Backend& b) const = 0;
  virtual int max_sources() const { return 1; }
  // Before planning (cost without a plan): the keys one list holds at step t, and the
  // estimation FLOPs of all steps.
  virtual double nominal_keys(const AttnShape& s, int64_t t) const = 0;
  virtual double nominal_estimation_flops(const AttnShape& s) const = 0;

  // check() helpers. InputError "<variant>.<param> = <value>: <rule>".
  [[noreturn]] void refuse(const std::string& param, const std::string& value, const std::string& rule) const;
  // Integer parameter `name`, refused below lo ("must be >= lo" followed by `note`).
  int64_t int_at_least(const std::string& name, int64_t lo, const std::string& note = "") const;
  static constexpr const char* kOwnToken = " (the step's own token)";  // note for local windows
  // Number parameter `name`, refused outside [-1, 1].
  double cosine_param(const std::string& name) const;

  // The prompt's block means, pooled once per input set (block_means), on the backend.
  struct PromptMeans {
    InputsKey inputs;
    TensorRef means;  // (B, Hkv, prompt blocks, D)
  };
  // Mean keys of the blocks [offset + p·block, offset + (p+1)·block), p < blocks, as a backend
  // tensor (B, Hkv, blocks, D) the caller frees. The first prompt_blocks (full before the
  // first step) are prefill-time work, reused from `cache` across plans of the same inputs and
  // reported as the stat prefill_pool_flops; the later ones are pooled here and counted as
  // estimation.
  static TensorRef block_means(const Inputs& in, Backend& be, int64_t offset, int64_t block, int64_t prompt_blocks,
                               int64_t blocks, PromptMeans& cache, Selected& out);
  // Probes of the ops block_means and decode_scores calls, for supports_selection.
  static Support probe_block_means(const AttnShape& s, const Backend& b);
  static Support probe_scores(const AttnShape& s, const Backend& b, DecodeQueryRows rows, DecodeScoreEpilogue epilogue,
                              bool key_lists);

  ParamSet params_;
  VariantInfo info_;
};

// Scores on the backend: runs decode_scores over `items` into a fresh fp32 buffer and returns
// its host copy (the selection's top-k and state updates that follow are small sequential
// control on the host: docs/decode.md).
std::vector<float> scores_to_host(Backend& be, DecodeScoresArgs a, const std::vector<DecodeScoreItem>& items);
// Indices of the k largest scores (k clipped to n), in descending score order; ties go to the
// lower index and NaN ranks as -inf (the rule of the prefill selectors, cpu::top_k).
void top_k_host(const float* scores, int64_t n, int64_t k, std::vector<int32_t>& out);
// x̃ = round(x / s)·s, s = max|x| / (2^(bits-1) - 1), over the n values of one row (the
// float64 reference's form of the fake_quantize op).
void fake_quantize_row(const float* x, float* out, int64_t n, int bits);
// cos(a, b) in double; 0 when either vector is zero.
double cosine_host(const float* a, const float* b, int64_t n);
// Query row t of every (batch, head) as a host tensor (B, Hq, 1, D), through copy_rows and a
// download: small control (TokenSelect's fingerprints, Recycled's schedule) reads it.
HostTensor step_queries(Backend& be, const Inputs& in, int64_t t);

// Keys [a, b) appended to `out` (a helper for sink, local and block ranges).
void append_range(std::vector<int32_t>& out, int64_t a, int64_t b);
// Sorts and removes repeats.
void sort_unique(std::vector<int32_t>& v);
// Empty key lists for every step and (batch, kv head) of the shape.
std::shared_ptr<StepKeyLists> kv_head_lists(const AttnShape& s);
// The same filled in step order, then b, then kv head: fill(t, b, kh, keys) writes each list
// into `keys` (cleared before each call).
template <class Fill>
std::shared_ptr<StepKeyLists> fill_kv_head_lists(const AttnShape& s, Fill&& fill) {
  auto lists = kv_head_lists(s);
  std::vector<int32_t> keys;
  for (int64_t t = 0; t < s.steps; ++t)
    for (int b = 0; b < s.batch; ++b)
      for (int kh = 0; kh < s.kv_heads; ++kh) {
        keys.clear();
        fill(t, b, kh, keys);
        lists->push(t, keys);
      }
  return lists;
}

}  // namespace ab
