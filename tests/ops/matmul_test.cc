// ops::gemm against a float64 product written plainly here, over the shapes, transposes,
// strides and scalars its paths take (the process's backend for several rows, and each
// backend through gemm_with; for one row the kernels of ops/gemv.h, split with the partner
// thread when large), and one-row products giving the same bits whether split or not.
#include "ops/matmul.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace logattn::ops {
namespace {

std::vector<float> uniform(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> x(n);
  for (auto& e : x) e = d(rng);
  return x;
}

struct Case {
  bool ta, tb;
  int64_t m, n, k;
  float alpha, beta;
  const GemmBackend* backend = nullptr;  // gemm_with this one; nullptr: gemm
};

// Runs gemm on operands stored with a row stride 3 wider than needed and checks every
// element of c against float64, and that c's padding is untouched. Bound: a sum of k
// products in any order is off by <= k u sum |a b| (plus u for each product), then alpha,
// beta c and their sum round by u each: |c - want| <= (k + 3) u (|alpha| sum |a b| +
// |beta c0|).
void check(const Case& t) {
  const int64_t pad = 3;
  const int64_t ar = t.ta ? t.k : t.m, ac = t.ta ? t.m : t.k;  // a as stored
  const int64_t br = t.tb ? t.n : t.k, bc = t.tb ? t.k : t.n;
  const int64_t lda = ac + pad, ldb = bc + pad, ldc = t.n + pad;
  const auto a = uniform(ar * lda, 1 + t.m * 7 + t.k), b = uniform(br * ldb, 2 + t.n * 5 + t.k);
  auto c = uniform(t.m * ldc, 3);
  const auto c0 = c;
  if (t.backend)
    gemm_with(*t.backend, t.ta, t.tb, t.m, t.n, t.k, t.alpha, a.data(), lda, b.data(), ldb, t.beta,
              c.data(), ldc);
  else
    gemm(t.ta, t.tb, t.m, t.n, t.k, t.alpha, a.data(), lda, b.data(), ldb, t.beta, c.data(), ldc);
  for (int64_t i = 0; i < t.m; ++i) {
    for (int64_t j = 0; j < t.n; ++j) {
      double s = 0, mag = 0;
      for (int64_t l = 0; l < t.k; ++l) {
        const double x = t.ta ? a[l * lda + i] : a[i * lda + l];
        const double y = t.tb ? b[j * ldb + l] : b[l * ldb + j];
        s += x * y, mag += std::fabs(x * y);
      }
      const double want = t.alpha * s + (t.beta == 0.f ? 0.0 : t.beta * double(c0[i * ldc + j]));
      const double u = 0x1p-24;
      const double tol =
          (t.k + 3) * u * (std::fabs(t.alpha) * mag + std::fabs(t.beta * c0[i * ldc + j]));
      ASSERT_NEAR(c[i * ldc + j], want, tol)
          << "ta " << t.ta << " tb " << t.tb << " m " << t.m << " n " << t.n << " k " << t.k
          << " at [" << i << ", " << j << "]";
    }
    for (int64_t j = t.n; j < ldc; ++j) ASSERT_EQ(c[i * ldc + j], c0[i * ldc + j]) << "padding";
  }
}

TEST(Gemm, MatchesFloat64OverShapesTransposesAndScalars) {
  for (const bool ta : {false, true})
    for (const bool tb : {false, true})
      for (const int64_t m : {1, 3})
        for (const int64_t n : {1, 17, 300})
          for (const int64_t k : {1, 15, 16, 63, 64, 100, 257})
            for (const auto& [alpha, beta] : {std::pair{1.f, 0.f}, {0.5f, 1.f}, {-2.f, 0.25f}})
              check({ta, tb, m, n, k, alpha, beta});
}

TEST(Gemm, EachBackendMatchesFloat64) {
  for (const GemmBackend backend : {GemmBackend::kOneDnn, GemmBackend::kOpenBlas})
    for (const bool ta : {false, true})
      for (const bool tb : {false, true})
        for (const int64_t m : {1, 2, 65})
          for (const int64_t n : {1, 17, 300})
            for (const int64_t k : {1, 16, 257})
              for (const auto& [alpha, beta] : {std::pair{1.f, 0.f}, {-2.f, 0.25f}})
                check({ta, tb, m, n, k, alpha, beta, &backend});
}

TEST(Gemm, BackendsNameTheirLibraryAndKernel) {
  EXPECT_EQ(gemm_backend_name(GemmBackend::kOneDnn).rfind("oneDNN ", 0), 0u);
  EXPECT_EQ(gemm_backend_name(GemmBackend::kOpenBlas).rfind("OpenBLAS ", 0), 0u);
  // The kernel family follows the version: "oneDNN 2.6.3 avx2", "OpenBLAS 0.3.21 Haswell".
  for (const GemmBackend b : {GemmBackend::kOneDnn, GemmBackend::kOpenBlas}) {
    const std::string name = gemm_backend_name(b);
    EXPECT_EQ(std::count(name.begin(), name.end(), ' '), 2) << name;
  }
}

// Large enough to split with the partner thread (and its blocks of rows, with a last block
// cut short), the kernel's tails over k included.
TEST(Gemm, OneRowProductsLargeEnoughToSplitMatchFloat64) {
  for (const int64_t n : {256, 777, 1024})
    for (const int64_t k : {256, 300})
      for (const auto& [alpha, beta] : {std::pair{1.f, 0.f}, {0.5f, 1.f}})
        check({false, true, 1, n, k, alpha, beta});
}

TEST(Gemm, OneRowProductsGiveTheSameBitsSplitOrNot) {
  const int64_t n = 1000, k = 300;
  const auto a = uniform(k, 4), b = uniform(n * k, 5);
  std::vector<float> split(n), alone(n);
  gemm(false, true, 1, n, k, 1.f, a.data(), k, b.data(), k, 0.f, split.data(), n);
#pragma omp parallel num_threads(2)
  {
    // Inside an OpenMP region there is no partner: each thread runs all rows itself.
#pragma omp single
    gemm(false, true, 1, n, k, 1.f, a.data(), k, b.data(), k, 0.f, alone.data(), n);
  }
  EXPECT_EQ(std::memcmp(split.data(), alone.data(), n * sizeof(float)), 0);
}

}  // namespace
}  // namespace logattn::ops
