#include "core/random.hpp"

#include <cmath>
#include <initializer_list>

namespace ab {

uint64_t SeededRandom::next_u64() {
  uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double SeededRandom::uniform() { return double(next_u64() >> 11) * (1.0 / 9007199254740992.0); }

int64_t SeededRandom::uniform_int(int64_t n) {
  if (n <= 0) return 0;
  // Lemire's multiply-shift with rejection: unbiased.
  const uint64_t un = uint64_t(n);
  const uint64_t threshold = (0 - un) % un;
  for (;;) {
    const unsigned __int128 m = (unsigned __int128)next_u64() * un;
    if (uint64_t(m) >= threshold) return int64_t(m >> 64);
  }
}

double SeededRandom::normal() {
  double u1 = uniform();
  while (u1 <= 0.0) u1 = uniform();
  const double u2 = uniform();
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

uint64_t mix_seed(uint64_t base, uint64_t a, uint64_t b, uint64_t c) {
  SeededRandom r(base ^ 0x5851f42d4c957f2dull);
  uint64_t s = r.next_u64();
  for (uint64_t v : {a, b, c}) {
    SeededRandom t(s ^ (v * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull));
    s = t.next_u64();
  }
  return s;
}

}  // namespace ab
