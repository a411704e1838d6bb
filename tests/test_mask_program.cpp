// The device form of the mask library (kernels/cuda/common/mask_program.hpp), checked on the
// CPU against the library's own predicates: every pair the program allows is a pair the Mask
// allows, and a block class it gives is never wrong (empty: no pair allowed; full: every pair;
// a single primitive's class is exact). Random masks, positions and blocks, odd sizes.
#include <doctest/doctest.h>

#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "backends/cuda/cuda_mask_program.hpp"
#include "core/mask_library.hpp"

namespace {

using namespace ab;

struct Named {
  std::string what;
  Mask mask;
  bool single = false;  // one primitive: its block class must equal the library's
};

std::vector<Named> masks() {
  std::vector<Named> m;
  m.push_back({"causal", to_mask(generate_causal()), true});
  m.push_back({"window 37", to_mask(generate_sliding_window(37)), true});
  m.push_back({"sinks 5", to_mask(generate_sinks(5)), true});
  m.push_back({"blockdiag 64 causal", to_mask(generate_block_diagonal(64), true)});
  m.push_back({"blockdiag 50", to_mask(generate_block_diagonal(50)), true});
  m.push_back({"blockrank 5 x 90", to_mask(generate_blockrank(5, 90), true)});
  m.push_back({"blockrank 3 x 17", to_mask(generate_blockrank(3, 17)), true});
  m.push_back({"mixformer 100", to_mask(generate_mixformer(100)), true});
  m.push_back({"streaming 64 + 4", to_mask(generate_streaming(64, 4), true)});
  m.push_back({"blockdiag 32 or sinks 3", to_mask(or_masks({generate_block_diagonal(32), generate_sinks(3)}), true)});
  m.push_back({"(mixformer 40 and window 70) or sinks 2",
               to_mask(or_masks({and_masks({generate_mixformer(40), generate_sliding_window(70)}), generate_sinks(2)}))});
  Mask w = to_mask(generate_block_diagonal(128), true);
  w.window = 100;
  w.sinks = 7;
  m.push_back({"blockdiag 128, causal window 100 + sinks 7", w});
  return m;
}

}  // namespace

TEST_CASE("mask programs: pairs and block classes agree with the mask library") {
  const uint32_t seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int64_t> pos(0, 600);
  for (const Named& n : masks()) {
    INFO(n.what);
    cuda::MaskProgram prog;
    REQUIRE(cuda_ops::mask_program_of(n.mask, prog));
    for (int t = 0; t < 20000; ++t) {
      const int64_t q = pos(rng), j = pos(rng);
      INFO("q " << q << " j " << j);
      CHECK(cuda::mask_program_allows(prog, q, j) == n.mask.allows(0, 0, q, j));
      CHECK(cuda::mask_program_allows<int>(prog, int(q), int(j)) == n.mask.allows(0, 0, q, j));
    }
    std::uniform_int_distribution<int64_t> len(1, 80);
    int counts[3] = {0, 0, 0};
    for (int t = 0; t < 3000; ++t) {
      const int64_t q0 = pos(rng), q1 = q0 + len(rng), k0 = pos(rng), k1 = k0 + len(rng);
      const int cls = cuda::mask_program_class(prog, q0, q1, k0, k1);
      ++counts[cls];
      bool any = false, all = true;
      for (int64_t q = q0; q < q1; ++q)
        for (int64_t j = k0; j < k1; ++j) {
          const bool a = n.mask.allows(0, 0, q, j);
          any |= a;
          all &= a;
        }
      INFO("block [" << q0 << ", " << q1 << ") x [" << k0 << ", " << k1 << ") class " << cls);
      if (cls == 0) CHECK(!any);
      if (cls == 2) CHECK(all);
      if (n.single) CHECK(cls == (!any ? 0 : (all ? 2 : 1)));
    }
    MESSAGE(n.what << ": blocks empty " << counts[0] << ", partial " << counts[1] << ", full " << counts[2]);
    CHECK(counts[1] > 0);
  }
}

TEST_CASE("mask programs: a custom predicate has none, and the programs' size is bounded") {
  Mask m;
  auto p = std::make_shared<MaskPredicate>();
  p->name = "custom";
  p->allows = [](int, int, int64_t q, int64_t j) { return (q + j) % 3 == 0; };
  m.extra = p;
  cuda::MaskProgram prog;
  CHECK_FALSE(cuda_ops::mask_program_of(m, prog));
  // A composition containing a custom part has no program either.
  CHECK(or_masks({generate_causal(), MaskFn(p)})->program.empty());
  // Too long a composition: none (the kernels take kMaskProgramMax instructions).
  std::vector<MaskFn> parts;
  for (int i = 0; i < 20; ++i) parts.push_back(generate_sinks(1 + i));
  CHECK(and_masks(parts)->program.empty());
}
