// The CUDA kernels' view of the structured mask (kernels/cuda/common/mask_tiles.hpp) must agree
// with ab::Mask, which the CPU backend and the float64 reference use. Plain host code: runs on
// every machine, with or without CUDA.
#include <doctest/doctest.h>

#include <random>

#include "core/mask.hpp"
#include "cuda/common/mask_tiles.hpp"

namespace {

ab::cuda::MaskDesc desc_of(const ab::Mask& m, int64_t kv_len) {
  ab::cuda::MaskDesc d;
  d.causal = m.causal;
  d.window = m.window;
  d.sinks = m.window > 0 ? m.sinks : 0;
  d.kv_len = kv_len;
  return d;
}

}  // namespace

TEST_CASE("cuda mask tiles: element rule, tile class and tile walk agree with ab::Mask") {
  std::mt19937 rng(12345);
  for (int trial = 0; trial < 300; ++trial) {
    ab::Mask m;
    m.causal = rng() % 2;
    m.window = (rng() % 3 == 0) ? 0 : 1 + int64_t(rng() % 200);
    m.sinks = rng() % 3 == 0 ? 0 : int64_t(rng() % 40);
    const int64_t kv_len = 1 + rng() % 700;
    const int64_t q_len = 1 + rng() % 700;
    const int64_t q_off = kv_len - q_len;
    const int bn = (rng() % 2) ? 64 : 128;
    const ab::cuda::MaskDesc d = desc_of(m, kv_len);
    const int64_t bm = 1 + rng() % 128;
    for (int64_t i0 = 0; i0 < q_len; i0 += bm) {
      const int64_t q0 = i0 + q_off, qlast = std::min(i0 + bm, q_len) - 1 + q_off;
      const ab::cuda::KvTileWalk w = ab::cuda::kv_tile_walk(d, q0, qlast, bn);
      std::vector<char> walked(size_t((kv_len + bn - 1) / bn), 0);
      for (int64_t t = 0; t < w.count(); ++t) {
        const int64_t tile = w.tile(t);
        REQUIRE(tile >= 0);
        REQUIRE(tile < int64_t(walked.size()));
        REQUIRE(!walked[size_t(tile)]);
        walked[size_t(tile)] = 1;
      }
      for (int64_t tile = 0; tile < int64_t(walked.size()); ++tile) {
        const int64_t k0 = tile * bn, k1 = std::min<int64_t>(k0 + bn, kv_len);
        bool any = false, all = true;
        for (int64_t qp = q0; qp <= qlast; ++qp)
          for (int64_t j = k0; j < k1; ++j) {
            const bool a = m.allows(0, 0, qp, j);
            CHECK(a == ab::cuda::mask_allows(d, qp, j));
            any |= a;
            all &= a;
          }
        // The walk may visit a tile with nothing visible but never skips one with something.
        if (any) CHECK(walked[size_t(tile)]);
        const int c = ab::cuda::classify_tile(d, q0, qlast, k0, k0 + bn);
        if (!any) CHECK(c == ab::cuda::kTileEmpty);
        if (c == ab::cuda::kTileFull) CHECK(all);
        if (k1 == k0 + bn) {
          // ab::Mask::classify is exact; the device rule may call a tile with sinks partial
          // where it is full (costs only the element mask there), never the other way.
          const ab::BlockClass ref = m.classify(0, 0, q0, qlast + 1, k0, k1);
          const int dev = c == ab::cuda::kTileEmpty  ? int(ab::BlockClass::empty)
                          : c == ab::cuda::kTileFull ? int(ab::BlockClass::full)
                                                     : int(ab::BlockClass::partial);
          const bool conservative = ref == ab::BlockClass::full && dev == int(ab::BlockClass::partial);
          CHECK((int(ref) == dev || conservative));
        }
      }
    }
  }
}
