// Any split of a sequence (prefill then one-token steps, chunks of random sizes, another
// chunk size) gives the outputs and final state of a single call; runs repeat bit for bit.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <random>

#include "ops/attention/test_util.h"

namespace logattn::testing {
namespace {

// Slice tokens [t0, t0 + len) of every head of a [B, H, n, d] tensor.
std::vector<float> slice(const std::vector<float>& x, int64_t bh, int64_t n, int64_t d, int64_t t0,
                         int64_t len) {
  std::vector<float> out;
  for (int64_t h = 0; h < bh; ++h)
    out.insert(out.end(), x.begin() + (h * n + t0) * d, x.begin() + (h * n + t0 + len) * d);
  return out;
}

void put(std::vector<float>& x, const std::vector<float>& part, int64_t bh, int64_t n, int64_t d,
         int64_t t0, int64_t len) {
  for (int64_t h = 0; h < bh; ++h)
    std::copy(part.begin() + h * len * d, part.begin() + (h + 1) * len * d,
              x.begin() + (h * n + t0) * d);
}

// Two states of the same tokens (c's, all of them) from different splits. The maxima m and
// c are exact whatever the order. z and s sum n terms exp(k_sd - m_d) (times v_sj, or
// exp(log v_sj - c_j)): each term's argument rounds by u times <= 2 K (K = max |k|, plus 2 L
// for log-values, L = max finite |log v|), the exp by one more u, and the sum and its
// rescalings add <= 3 n u of the terms' magnitudes. Each state is within that of the exact
// sums, so the two are within twice it: (2 (4 K + 4 L + 2) + 6 n) u of the magnitudes.
::testing::AssertionResult states_match(const AttentionState& a, const AttentionState& b,
                                        const Case& c) {
  if (a.tokens() != b.tokens()) return ::testing::AssertionFailure() << "token counts differ";
  const int64_t dk = a.d_key(), dv = a.d_val(), n = c.dims.n_k;
  const bool log_values = c.opt.values == Values::kLog;
  for (int64_t bh = 0; bh < a.batch() * a.heads(); ++bh) {
    const auto x = a.head(bh), y = b.head(bh);
    for (int64_t d = 0; d < dk; ++d)
      if (x.m[d] != y.m[d])
        return ::testing::AssertionFailure() << "head " << bh << " m[" << d << "]";
    for (int64_t j = 0; j < dv; ++j)
      if (x.c[j] != y.c[j])
        return ::testing::AssertionFailure() << "head " << bh << " c[" << j << "]";
    const float* k = c.k.data() + bh * n * dk;
    const float* v = c.v.data() + bh * n * dv;
    double kmax = 0.0, lmax = 0.0;
    for (int64_t i = 0; i < n * dk; ++i) kmax = std::max(kmax, std::abs(double(k[i])));
    if (log_values)
      for (int64_t i = 0; i < n * dv; ++i)
        if (std::isfinite(v[i])) lmax = std::max(lmax, std::abs(double(v[i])));
    const double bound = (2 * (4 * kmax + 4 * lmax + 2) + 6.0 * n) * kU;
    for (int64_t d = 0; d < dk; ++d) {
      double zmag = 0.0;
      std::vector<double> smag(dv, 0.0);
      for (int64_t t = 0; t < n; ++t) {
        const double w = std::exp(double(k[t * dk + d]) - y.m[d]);
        zmag += w;
        for (int64_t j = 0; j < dv; ++j)
          smag[j] += log_values ? w * std::exp(double(v[t * dv + j]) - y.c[j])
                                : w * std::abs(double(v[t * dv + j]));
      }
      if (std::abs(x.z[d] - y.z[d]) > bound * zmag + kEta)
        return ::testing::AssertionFailure() << "head " << bh << " z[" << d << "]";
      for (int64_t j = 0; j < dv; ++j) {
        const int64_t i = d * dv + j;
        if (std::abs(x.s[i] - y.s[i]) > bound * smag[j] + kEta)
          return ::testing::AssertionFailure()
                 << "head " << bh << " s[" << d << ", " << j << "]: " << x.s[i] << " vs " << y.s[i]
                 << " (bound " << bound * smag[j] << ")";
      }
    }
  }
  return ::testing::AssertionSuccess();
}

// Runs c in pieces of the given sizes, carrying the state; sizes of 1 use the step path.
Output run_in_pieces(const Case& c, const std::vector<int64_t>& sizes, AttentionState& st) {
  const auto& d = c.dims;
  const int64_t bh = d.batch * d.heads, n = d.n_q;
  Output o;
  o.y.assign(bh * n * d.d_val, 0.f);
  o.log_d.assign(bh * n, 0.f);
  int64_t t0 = 0;
  for (int64_t len : sizes) {
    auto q = slice(c.q, bh, n, d.d_key, t0, len), k = slice(c.k, bh, n, d.d_key, t0, len),
         v = slice(c.v, bh, n, d.d_val, t0, len);
    std::vector<float> y(bh * len * d.d_val), ld(bh * len);
    if (len == 1) {
      attention_step(q, k, v, y, st, ld);
    } else {
      AttentionDims pd = d;
      pd.n_q = pd.n_k = len;
      attention_forward(c.opt, pd, q, k, v, y, ld, &st);
    }
    put(o.y, y, bh, n, d.d_val, t0, len);
    put(o.log_d, ld, bh, n, 1, t0, len);
    t0 += len;
  }
  return o;
}

class Splits : public ::testing::TestWithParam<Values> {};

TEST_P(Splits, PrefillThenStepsAndRandomChunks) {
  const Values values = GetParam();
  const int64_t n = 700;
  Case c = gaussian_case(2, 2, n, n, 16, 8, 2.0, true, values, 31);
  // An extreme key mid-way, so that pieces cross a rescale.
  std::fill(c.k.begin() + 333 * 16, c.k.begin() + 334 * 16, 40.f);
  AttentionState whole(2, 2, 16, 8, values);
  const Output ref = run_forward(c, &whole);
  EXPECT_TRUE(matches_oracle(c, ref));

  std::vector<std::vector<int64_t>> plans;
  plans.push_back({500});
  for (int i = 0; i < 200; ++i) plans.back().push_back(1);  // prefill then steps
  std::mt19937_64 rng(5);
  for (int p = 0; p < 3; ++p) {
    std::vector<int64_t> sizes;
    for (int64_t left = n; left > 0;) {
      const int64_t len = std::min<int64_t>(left, 1 + rng() % 150);
      sizes.push_back(len);
      left -= len;
    }
    plans.push_back(sizes);
  }
  for (const auto& sizes : plans) {
    AttentionState st(2, 2, 16, 8, values);
    const Output o = run_in_pieces(c, sizes, st);
    EXPECT_TRUE(matches_oracle(c, o)) << sizes.size() << " pieces";
    EXPECT_TRUE(states_match(st, whole, c)) << sizes.size() << " pieces";
  }
}

TEST_P(Splits, StepsAloneOverALongSequence) {
  const Values values = GetParam();
  const int64_t n = 3000;
  const Case c = gaussian_case(1, 2, n, n, 8, 4, 1.0, true, values, 8);
  AttentionState st(1, 2, 8, 4, values);
  const Output o = run_in_pieces(c, std::vector<int64_t>(n, 1), st);
  EXPECT_TRUE(matches_oracle(c, o));
}

// A step's heads run in ranges (as threads that each take some heads do), in any order, then
// the token counted once: the same bits as attention_step, and other heads left alone.
TEST_P(Splits, StepHeadsInRangesEqualsOneStep) {
  const Values values = GetParam();
  const int64_t n = 300, B = 2, H = 3, dk = 16, dv = 8;
  Case c = gaussian_case(B, H, n, n, dk, dv, 2.0, true, values, 41);
  std::fill(c.k.begin() + 150 * dk, c.k.begin() + 151 * dk, 30.f);  // a rescale on the way
  AttentionState whole(B, H, dk, dv, values), parts(B, H, dk, dv, values);
  const std::vector<std::vector<std::pair<int64_t, int64_t>>> plans = {
      {{0, 6}}, {{0, 3}, {3, 6}}, {{4, 6}, {0, 1}, {1, 4}}, {{5, 6}, {4, 5}, {3, 4}, {0, 3}}};
  for (int64_t t = 0; t < n; ++t) {
    const auto q = slice(c.q, B * H, n, dk, t, 1), k = slice(c.k, B * H, n, dk, t, 1),
               v = slice(c.v, B * H, n, dv, t, 1);
    std::vector<float> y(B * H * dv), ld(B * H), y2(B * H * dv, 7.f), ld2(B * H, 7.f);
    attention_step(q, k, v, y, whole, ld);
    const auto& plan = plans[t % plans.size()];
    for (size_t r = 0; r < plan.size(); ++r) {
      const auto [h0, h1] = plan[r];
      attention_step_heads(q, k, v, y2, parts, ld2, h0, h1);
      for (int64_t bh = 0; bh < B * H; ++bh) {  // heads of later ranges not touched yet
        bool later = false;
        for (size_t s = r + 1; s < plan.size(); ++s)
          later |= bh >= plan[s].first && bh < plan[s].second;
        if (later) {
          ASSERT_EQ(ld2[bh], 7.f) << "token " << t << " head " << bh;
        }
      }
    }
    parts.set_tokens(parts.tokens() + 1);
    ASSERT_EQ(0, std::memcmp(y.data(), y2.data(), y.size() * sizeof(float))) << "token " << t;
    ASSERT_EQ(0, std::memcmp(ld.data(), ld2.data(), ld.size() * sizeof(float))) << "token " << t;
  }
  EXPECT_EQ(0, std::memcmp(whole.data().data(), parts.data().data(),
                           whole.data().size() * sizeof(float)));
  EXPECT_EQ(parts.tokens(), whole.tokens());
}

TEST_P(Splits, ChunkSizeDoesNotMatter) {
  const Case base = gaussian_case(1, 2, 333, 333, 16, 8, 4.0, true, GetParam(), 17);
  for (int64_t chunk : {1, 7, 64, 256}) {
    Case c = base;
    c.opt.chunk = chunk;
    EXPECT_TRUE(matches_oracle(c, run_forward(c))) << "chunk " << chunk;
  }
}

TEST_P(Splits, NonCausalStreamingEqualsOneCall) {
  const Values values = GetParam();
  Case c = gaussian_case(1, 2, 40, 250, 16, 8, 1.0, false, values, 19);
  const Output ref = run_forward(c);
  AttentionState st(1, 2, 16, 8, values);
  for (auto [t0, len] : {std::pair<int64_t, int64_t>{0, 100}, {100, 1}, {101, 149}})
    attention_add_keys(slice(c.k, 2, 250, 16, t0, len), slice(c.v, 2, 250, 8, t0, len), len, st);
  std::vector<float> y(2 * 40 * 8), ld(2 * 40);
  attention_read(c.q, 40, y, st, ld);
  EXPECT_TRUE(matches_oracle(c, Output{y, ld}));
  EXPECT_EQ(st.tokens(), 250);
}

TEST_P(Splits, SameBitsRunAfterRunAndAcrossThreadCounts) {
  const Case c = gaussian_case(2, 4, 500, 500, 32, 32, 1.0, true, GetParam(), 23);
  const Output a = run_forward(c);
  const Output b = run_forward(c);
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  const Output one = run_forward(c);
  omp_set_num_threads(threads);
  for (const Output* o : {&b, &one}) {
    EXPECT_EQ(0, std::memcmp(a.y.data(), o->y.data(), a.y.size() * sizeof(float)));
    EXPECT_EQ(0, std::memcmp(a.log_d.data(), o->log_d.data(), a.log_d.size() * sizeof(float)));
  }
}

INSTANTIATE_TEST_SUITE_P(Values, Splits, ::testing::Values(Values::kSigned, Values::kLog),
                         [](const auto& info) {
                           return info.param == Values::kLog ? "Log" : "Signed";
                         });

}  // namespace
}  // namespace logattn::testing
