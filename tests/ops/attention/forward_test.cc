// The parallel (chunked) forward against the float64 oracles, over the input families of
// issue 2: Gaussian scales, extreme keys, signed / zero / constant values, log-values with
// -inf, lengths around the chunk size, many dims, batches of heads, non-causal.
#include <gtest/gtest.h>

#include <algorithm>

#include "ops/attention/test_util.h"

namespace logattn::testing {
namespace {

constexpr int64_t kChunk = 64;  // AttentionOptions' default

TEST(Forward, GaussianScales) {
  for (double sigma : {0.1, 1.0, 4.0, 16.0})
    for (Values values : {Values::kSigned, Values::kLog}) {
      const Case c = gaussian_case(2, 3, 1000, 1000, 16, 32, sigma, true, values, 100);
      EXPECT_TRUE(matches_oracle(c, run_forward(c)))
          << "sigma " << sigma << (values == Values::kLog ? " log" : " signed");
    }
}

TEST(Forward, LengthsAndDims) {
  const std::pair<int64_t, int64_t> dims[] = {{1, 3},    {3, 1},    {16, 32}, {32, 16},
                                              {64, 128}, {128, 64}, {32, 32}};
  for (auto [dk, dv] : dims)
    for (int64_t n : {int64_t{1}, int64_t{2}, kChunk - 1, kChunk, kChunk + 1, int64_t{300}})
      for (Values values : {Values::kSigned, Values::kLog}) {
        const Case c = gaussian_case(1, 2, n, n, dk, dv, 1.0, true, values, 7 + n);
        EXPECT_TRUE(matches_oracle(c, run_forward(c))) << "dk " << dk << " dv " << dv << " n " << n;
      }
}

// The bounds, worst cases over every summation order (n u of what a row adds), still see the
// bugs a kernel makes: each query seeing one key too many (a mask off by one), one value of
// 300 off by 1 (a value, or a log-value: the value times e), one key feature off by 0.1. The true
// outputs fail against the oracle of each of those.
TEST(Forward, BoundsSeeAKernelsMistakes) {
  for (Values values : {Values::kSigned, Values::kLog}) {
    const Case c = gaussian_case(1, 1, 300, 300, 16, 8, 1.0, true, values, 21);
    const Output o = run_forward(c);
    EXPECT_TRUE(matches_oracle(c, o));
    HeadProblem p = head_problem(c, 0);
    p.offset = 1;  // query t sees keys 0..t+1
    const HeadResult one_more = oracle_quadratic(p);
    EXPECT_FALSE(rows_match(o.y.data(), one_more, 299, 16, 8, values == Values::kLog));
    Case off = c;
    if (values == Values::kSigned)
      off.v[150 * 8 + 3] += 1.f;
    else
      off.v[150 * 8 + 3] += 1.f;  // the value times e
    EXPECT_FALSE(matches_oracle(off, o)) << (values == Values::kLog ? "log" : "signed");
    Case key_off = c;
    key_off.k[150 * 16 + 5] += 0.1f;
    EXPECT_FALSE(matches_oracle(key_off, o));
  }
}

TEST(Forward, LongSequenceAgainstLogSpaceOracle) {
  for (Values values : {Values::kSigned, Values::kLog}) {
    const int64_t n = 65536;
    const Case c = gaussian_case(1, 1, n, n, 16, 8, 1.0, true, values, 3);
    const Output o = run_forward(c);
    const HeadResult ref = oracle_log_space(head_problem(c, 0));
    EXPECT_TRUE(rows_match(o.y.data(), ref, n, 16, 8, values == Values::kLog));
    EXPECT_TRUE(log_d_match(o.log_d.data(), ref, n, 16));
  }
}

// Keys of -40 with one key of +40 in every feature, at a given position.
Case spike_case(int64_t n, int64_t pos, Values values, uint64_t seed) {
  Case c = gaussian_case(1, 1, n, n, 16, 8, 1.0, true, values, seed);
  std::fill(c.k.begin(), c.k.end(), -40.f);
  std::fill(c.k.begin() + pos * 16, c.k.begin() + (pos + 1) * 16, 40.f);
  return c;
}

TEST(Forward, ExtremeKeyAnywhere) {
  const int64_t n = 200;
  for (int64_t pos : {int64_t{0}, n - 1, kChunk / 2, kChunk - 1, kChunk, kChunk + 1, 2 * kChunk - 1,
                      2 * kChunk, int64_t{150}})
    for (Values values : {Values::kSigned, Values::kLog}) {
      const Case c = spike_case(n, pos, values, 40 + pos);
      EXPECT_TRUE(matches_oracle(c, run_forward(c))) << "spike at " << pos;
    }
}

TEST(Forward, KeysRampUpAndDown) {
  const int64_t n = 1000, dk = 8;
  for (Values values : {Values::kSigned, Values::kLog}) {
    Case c = gaussian_case(1, 1, n, n, dk, 4, 1.0, true, values, 5);
    for (int64_t t = 0; t < n; ++t) {
      const float x = t < n / 2 ? -40.f + 80.f * t / (n / 2) : 40.f - 80.f * (t - n / 2) / (n / 2);
      for (int64_t d = 0; d < dk; ++d) c.k[t * dk + d] = x + 0.1f * d;
    }
    EXPECT_TRUE(matches_oracle(c, run_forward(c)));
  }
}

TEST(Forward, ValuesMixedSignsZerosConstants) {
  const int64_t n = 150, dv = 6;
  Case c = gaussian_case(1, 2, n, n, 8, dv, 1.0, true, Values::kSigned, 9);
  for (int64_t i = 0; i < 2 * n; ++i) {
    c.v[i * dv + 0] = 0.f;                     // exact zeros
    c.v[i * dv + 1] = 3.25f;                   // a constant
    c.v[i * dv + 2] = (i % 2) ? 1e3f : -1e3f;  // alternating signs, large
    c.v[i * dv + 3] = (i % 7 == 0) ? 0.f : c.v[i * dv + 3];
  }
  const Output o = run_forward(c);
  // The constant column is 3.25 within its bound there (y_mag = 3.25).
  EXPECT_TRUE(matches_oracle(c, o));
  for (int64_t i = 0; i < 2 * n; ++i) EXPECT_EQ(o.y[i * dv + 0], 0.f);
}

TEST(Forward, LogValuesWideRangeAndMinusInf) {
  const int64_t n = 300, dv = 5;
  Case c = gaussian_case(1, 1, n, n, 8, dv, 1.0, true, Values::kLog, 13);
  c.v = uniform(n * dv, -40.0, 40.0, 14);
  for (int64_t t = 0; t < n; ++t) {
    if (t % 3 == 0) c.v[t * dv + 1] = -kInf;              // some zero values
    c.v[t * dv + 2] = t < 100 ? -kInf : c.v[t * dv + 2];  // a column zero for a while
  }
  for (int64_t t = 0; t < n; ++t) c.v[t * dv + 4] = -kInf;  // a column that is always zero
  const Output o = run_forward(c);
  EXPECT_TRUE(matches_oracle(c, o));
  EXPECT_EQ(o.y[50 * dv + 2], -kInf);
  EXPECT_EQ(o.y[299 * dv + 4], -kInf);
}

TEST(Forward, LogValuesWithExtremeKeys) {
  // Spreads in keys and in log-values at once: the state's sums span e^-80 and more.
  const int64_t n = 200;
  for (int64_t pos : {int64_t{0}, kChunk + 3, n - 1}) {
    Case c = spike_case(n, pos, Values::kLog, 77);
    c.v = uniform(n * 8, -40.0, 40.0, 78);
    EXPECT_TRUE(matches_oracle(c, run_forward(c))) << "spike at " << pos;
  }
}

TEST(Forward, HeadsAreIndependent) {
  // Each head's output depends only on its own inputs: change head 1, heads 0 and 2 keep
  // their bits.
  Case c = gaussian_case(1, 3, 100, 100, 8, 8, 1.0, true, Values::kSigned, 1);
  const Output a = run_forward(c);
  for (int64_t i = 100 * 8; i < 200 * 8; ++i) c.k[i] += 1.f;
  const Output b = run_forward(c);
  EXPECT_TRUE(std::equal(a.y.begin(), a.y.begin() + 800, b.y.begin()));
  EXPECT_FALSE(std::equal(a.y.begin() + 800, a.y.begin() + 1600, b.y.begin() + 800));
  EXPECT_TRUE(std::equal(a.y.begin() + 1600, a.y.end(), b.y.begin() + 1600));
}

TEST(Forward, NonCausal) {
  struct Shape {
    int64_t nq, nk;
  };
  for (Shape s : {Shape{1, 100}, Shape{50, 300}, Shape{300, 7}, Shape{64, 64}})
    for (Values values : {Values::kSigned, Values::kLog})
      for (double sigma : {1.0, 16.0}) {
        const Case c = gaussian_case(2, 2, s.nq, s.nk, 16, 8, sigma, false, values, s.nq + s.nk);
        EXPECT_TRUE(matches_oracle(c, run_forward(c))) << s.nq << " x " << s.nk;
      }
}

TEST(Forward, NonCausalExtremeKey) {
  Case c = spike_case(130, 70, Values::kSigned, 3);
  c.opt.causal = false;
  EXPECT_TRUE(matches_oracle(c, run_forward(c)));
}

}  // namespace
}  // namespace logattn::testing
