// Conformance of the estimators of SEA §11 and HyperAttention §10 among the selection ops
// (core/ops_select.hpp) on every backend that implements them: the project op (FAVOR+
// features, angular-LSH codes) and the scores epilogue raw_normalized_sum, on backend
// tensors, against a float64 computation of the header's formula; on the CPU also bit for bit
// against the host computations the SEA and HyperAttention plans ran before they became ops
// (their before/after results must stay identical). Seeds from std::random_device, printed
// with INFO; ATTN_TEST_SEED=<n> replays.
#include <doctest/doctest.h>

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"  // Eigen + AVX-512, GCC PR 105593
#endif
#include <Eigen/Core>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <vector>

#include "backends/cpu/cpu_backend.hpp"
#include "core/backend.hpp"
#include "cpu/selection.hpp"
#include "sparse_test_util.hpp"

namespace {

using namespace ab;
using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using CMapRM = Eigen::Map<const RowMat>;

void for_each_project_backend(const std::function<void(Backend&)>& fn) {
  std::vector<std::unique_ptr<Backend>> all;
  all.push_back(make_cpu_backend());
  for (auto& be : all) {
    INFO("backend " << be->name());
    fn(*be);
    be->release_all();
  }
}

HostTensor random_tensor(Shape4 s, std::mt19937& rng, float sd = 1.0f) {
  HostTensor t(s);
  std::normal_distribution<float> n01;
  for (float& e : t.data) e = sd * n01(rng);
  return t;
}

TensorRef put(Backend& be, const HostTensor& h) {
  TensorRef t = be.alloc(h.shape, DType::f32);
  be.upload(h, t);
  return t;
}

// The SEA plan's former feature map, on a head's rows X (n, d) in an Eigen matrix of its own.
RowMat favor_former(const float* X, int64_t n, int d, const RowMat& omega, float xs, bool row_stab) {
  const int64_t nb = omega.rows();
  RowMat phi(n, nb);
  phi.noalias() = (xs * CMapRM(X, n, d)) * omega.transpose();
  float gmax = -std::numeric_limits<float>::infinity();
  if (!row_stab) gmax = phi.maxCoeff();
  for (int64_t i = 0; i < n; ++i) {
    float sq = 0;
    for (int c = 0; c < d; ++c) sq += X[i * d + c] * X[i * d + c];
    const float half = 0.5f * xs * xs * sq;
    const float stab = row_stab ? phi.row(i).maxCoeff() : gmax;
    phi.row(i) = (phi.row(i).array() - half - stab).exp() / std::sqrt(float(nb));
  }
  return phi;
}

}  // namespace

TEST_CASE("ops_select: project, FAVOR+ features (row and head stabilisers)") {
  const uint32_t seed = sparse_test::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for_each_project_backend([&](Backend& be) {
    // nb = 33 features: rows start off every vector boundary.
    const int64_t B = 2, H = 3, N = 41, F = 33;
    const int d = 24;
    const float xs = std::pow(float(d), -0.25f);
    const HostTensor x = random_tensor({B, H, N, d}, rng), w = random_tensor({1, 1, F, d}, rng);
    RowMat omega(F, d);
    std::memcpy(omega.data(), w.ptr(), sizeof(float) * size_t(F * d));
    for (bool row_stab : {true, false}) {
      INFO("row_stab " << row_stab);
      ProjectArgs a;
      a.epilogue = ProjectEpilogue::favor;
      a.x = put(be, x);
      a.proj = put(be, w);
      a.out = be.alloc({B, H, N, F}, DType::f32);
      a.xs = xs;
      a.row_stab = row_stab;
      REQUIRE(be.supports_project(a).ok);
      be.project(a);
      const HostTensor o = be.download(a.out);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h) {
          // Float64: exp(u − ½·xs²·|x|² − stab) / √F, stab the row's or the head's max of u.
          std::vector<double> u(size_t(N * F));
          double head_max = -1e300;
          for (int64_t n = 0; n < N; ++n)
            for (int64_t f = 0; f < F; ++f) {
              double dot = 0;
              for (int c = 0; c < d; ++c) dot += double(xs) * x.row(b, h, n)[c] * w.row(0, 0, f)[c];
              u[size_t(n * F + f)] = dot;
              head_max = std::max(head_max, dot);
            }
          for (int64_t n = 0; n < N; ++n) {
            double sq = 0, row_max = -1e300;
            for (int c = 0; c < d; ++c) sq += double(x.row(b, h, n)[c]) * x.row(b, h, n)[c];
            for (int64_t f = 0; f < F; ++f) row_max = std::max(row_max, u[size_t(n * F + f)]);
            const double stab = row_stab ? row_max : head_max;
            for (int64_t f = 0; f < F; ++f) {
              const double want = std::exp(u[size_t(n * F + f)] - 0.5 * xs * xs * sq - stab) / std::sqrt(double(F));
              CHECK(std::fabs(o.row(b, h, n)[f] - want) <= 1e-5 * std::max(1.0, want));
            }
          }
          if (be.name() != "cpu") continue;
          // Bit for bit the SEA plan's former host computation.
          const RowMat former = favor_former(x.row(b, h, 0), N, d, omega, xs, row_stab);
          CHECK(std::memcmp(former.data(), o.row(b, h, 0), sizeof(float) * size_t(N * F)) == 0);
        }
    }
  });
}

TEST_CASE("ops_select: project, angular LSH codes in Gray-code order") {
  const uint32_t seed = sparse_test::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for_each_project_backend([&](Backend& be) {
    const int64_t B = 2, H = 3, N = 57;
    const int d = 20, bits = 5;
    const HostTensor x = random_tensor({B, H, N, d}, rng);
    const cpu::AngularLsh lsh = cpu::make_angular_lsh(d, bits, seed);
    HostTensor R({1, 1, d, bits});
    std::copy(lsh.proj.begin(), lsh.proj.end(), R.ptr());
    ProjectArgs a;
    a.epilogue = ProjectEpilogue::sign_code;
    a.x = put(be, x);
    a.proj = put(be, R);
    a.code = be.alloc_indices(int64_t(lsh.gray.size()));
    be.upload_index_buffer(lsh.gray, a.code);
    a.codes = be.alloc_indices(B * H * N);
    REQUIRE(be.supports_project(a).ok);
    be.project(a);
    const std::vector<int32_t> codes = be.download_index_buffer(a.codes, B * H * N);
    int64_t decided = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h) {
        const int64_t bh = b * H + h;
        if (be.name() == "cpu") {  // bit for bit the HyperAttention plan's former hashing
          std::vector<int32_t> former(static_cast<size_t>(N));
          cpu::lsh_hash(lsh, x.row(b, h, 0), N, former.data());
          CHECK(std::equal(former.begin(), former.end(), codes.begin() + bh * N));
        }
        for (int64_t n = 0; n < N; ++n) {
          // Float64 sign bits; rows with a projection within rounding of 0 are undecided.
          int bin = 0;
          bool near_zero = false;
          for (int t = 0; t < bits; ++t) {
            double dot = 0, norm = 0;
            for (int c = 0; c < d; ++c) {
              dot += double(x.row(b, h, n)[c]) * R.row(0, 0, c)[t];
              norm += double(x.row(b, h, n)[c]) * x.row(b, h, n)[c];
            }
            near_zero |= std::fabs(dot) < 1e-5 * std::sqrt(norm);
            if (dot > 0) bin |= 1 << t;
          }
          if (near_zero) continue;
          CHECK(codes[size_t(bh * N + n)] == (bin ^ (bin >> 1)));  // the reflected Gray code
          ++decided;
        }
      }
    CHECK(decided > B * H * N / 2);
    // Codes need a code table of 2^F entries.
    a.code.size = 7;
    CHECK_THROWS(be.project(a));
  });
}

TEST_CASE("ops_select: scores, raw scores normalised per row and summed over row groups") {
  const uint32_t seed = sparse_test::test_seed();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for_each_project_backend([&](Backend& be) {
    // Positive scores (products of positive features), as SEA's; odd sizes, GQA 3:1.
    const int64_t B = 2, Hq = 3, Hk = 1, Nr = 37, Nk = 19, group = 8;
    const int d = 11;
    HostTensor q = random_tensor({B, Hq, Nr, d}, rng), k = random_tensor({B, Hk, Nk, d}, rng);
    for (float& e : q.data) e = std::exp(0.3f * e);
    for (float& e : k.data) e = std::exp(0.3f * e);
    const int64_t n_groups = (Nr + group - 1) / group;
    const std::vector<int32_t> limits = {0, 5, 19, 11, 1};
    REQUIRE(int64_t(limits.size()) == n_groups);
    ScoresArgs a;
    a.epilogue = ScoresEpilogue::raw_normalized_sum;
    a.q = put(be, q);
    a.k = put(be, k);
    a.scale = 0.7f;
    a.row_group = group;
    a.col_limits = be.alloc_indices(n_groups);
    be.upload_index_buffer(limits, a.col_limits);
    a.out = be.alloc({B, Hq, n_groups, Nk}, DType::f32);
    REQUIRE(be.supports_scores(a).ok);
    be.scores(a);
    const HostTensor o = be.download(a.out);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < Hq; ++h)
        for (int64_t g = 0; g < n_groups; ++g) {
          const int64_t lim = limits[size_t(g)];
          std::vector<double> want(size_t(Nk), 0.0);
          for (int64_t r = g * group; r < std::min(Nr, (g + 1) * group); ++r) {
            std::vector<double> x(static_cast<size_t>(Nk));
            double total = 0;
            for (int64_t c = 0; c < Nk; ++c) {
              double dot = 0;
              for (int e = 0; e < d; ++e) dot += double(q.row(b, h, r)[e]) * k.row(b, h / 3, c)[e];
              x[size_t(c)] = 0.7 * dot;
              if (c < lim) total += x[size_t(c)];
            }
            for (int64_t c = 0; c < lim; ++c) want[size_t(c)] += x[size_t(c)] / total;
          }
          for (int64_t c = 0; c < Nk; ++c)
            CHECK(std::fabs(o.row(b, h, g)[c] - want[size_t(c)]) <= 1e-5 * std::max(1.0, want[size_t(c)]));
        }
    if (be.name() != "cpu") return;
    // Bit for bit the raw scores pooled by pool's normalized_sum (the two-op form).
    ScoresArgs raw = a;
    raw.epilogue = ScoresEpilogue::raw;
    raw.out = be.alloc({B, Hq, Nr, Nk}, DType::f32);
    be.scores(raw);
    PoolArgs p;
    p.axis = PoolAxis::rows;
    p.how = Reduce::normalized_sum;
    p.in = raw.out;
    p.out = be.alloc({B, Hq, n_groups, Nk}, DType::f32);
    p.block = group;
    p.col_limits = a.col_limits;
    be.pool(p);
    const HostTensor two = be.download(p.out);
    CHECK(std::memcmp(two.ptr(), o.ptr(), sizeof(float) * size_t(o.numel())) == 0);
    // A column limit past n_keys is refused at the call.
    a.col_limits.data[1] = int32_t(Nk + 1);
    CHECK_THROWS(be.scores(a));
  });
}
