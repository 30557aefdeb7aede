// The state converts to the paper's log-space (H_S, H_Z) and back, and a state rebuilt from
// log-space continues a sequence as the original would.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "ops/attention/test_util.h"

namespace logattn::testing {
namespace {

TEST(State, StartsEmpty) {
  AttentionState st(1, 1, 2, 2, Values::kLog);
  std::vector<float> hs(4), hz(2);
  st.to_log_space(hs, hz);
  for (float x : hs) EXPECT_EQ(x, -kInf);
  for (float x : hz) EXPECT_EQ(x, -kInf);
}

TEST(State, LogSpaceMatchesTheOraclesSums) {
  for (Values values : {Values::kSigned, Values::kLog}) {
    const int64_t n = 90, dk = 4, dv = 3;
    Case c = gaussian_case(1, 2, n, n, dk, dv, 3.0, true, values, 4);
    if (values == Values::kSigned)
      for (auto& x : c.v) x = std::abs(x);  // log space needs non-negative values
    AttentionState st(1, 2, dk, dv, values);
    run_forward(c, &st);
    std::vector<float> hs(2 * dk * dv), hz(2 * dk);
    st.to_log_space(hs, hz);
    // hz = m + log(z), z a float32 sum of n terms exp(k - m) (>0): each argument rounds by
    // u times <= 2 K (K = max |k|; and 2 L for log-values, L = max |log v|), the exp by one
    // u, the sum and its rescalings by <= 3 n u, all relative, which the log turns absolute;
    // the log and the addition of m round by u (|result| + 1): tol = (4 K + 4 L + 2 + 3 n +
    // |log z| + 1) u. Values here are positive, so no sum cancels.
    double kmax = 0.0, lmax = 0.0;
    for (float x : c.k) kmax = std::max(kmax, std::abs(double(x)));
    if (values == Values::kLog)
      for (float x : c.v) lmax = std::max(lmax, std::abs(double(x)));
    const double c0 = 4 * kmax + 4 * lmax + 2 + 3.0 * n + 1;
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t d = 0; d < dk; ++d) {
        double z = 0.0;
        std::vector<double> s(dv, 0.0);
        for (int64_t t = 0; t < n; ++t) {
          const double w = std::exp(double(c.k[(h * n + t) * dk + d]));
          z += w;
          for (int64_t j = 0; j < dv; ++j) {
            const double x = c.v[(h * n + t) * dv + j];
            s[j] += w * (values == Values::kLog ? std::exp(x) : x);
          }
        }
        EXPECT_NEAR(hz[h * dk + d], std::log(z), (c0 + std::abs(std::log(z))) * kU);
        for (int64_t j = 0; j < dv; ++j)
          EXPECT_NEAR(hs[(h * dk + d) * dv + j], std::log(s[j]),
                      (c0 + std::abs(std::log(s[j]))) * kU);
      }

    // Round trip: rebuild from log space, continue with more tokens, compare outputs.
    AttentionState back = AttentionState::from_log_space(1, 2, dk, dv, values, hs, hz, n);
    const Case more = gaussian_case(1, 2, 30, 30, dk, dv, 3.0, true, values, 9);
    Case more_pos = more;
    if (values == Values::kSigned)
      for (auto& x : more_pos.v) x = std::abs(x);
    AttentionState orig = st;
    const Output a = run_forward(more_pos, &orig);
    const Output b = run_forward(more_pos, &back);
    // Both continue the same 120 tokens; each is within the forward bound of the exact
    // outputs (the oracle of the whole sequence), and the rebuilt state adds its round trip:
    // hs, hz rounded to float32 (u |h|) and turned back into scaled sums (exp of h - m, u
    // times <= 2 H + 1, H = max |h|), relative to what it sums.
    double hmax = 0.0;
    for (float x : hs) hmax = std::max(hmax, std::isfinite(x) ? std::abs(double(x)) : 0.0);
    for (float x : hz) hmax = std::max(hmax, std::abs(double(x)));
    for (int64_t h = 0; h < 2; ++h) {
      HeadProblem p = head_problem(more_pos, h);
      const HeadProblem first = head_problem(c, h);
      p.k.insert(p.k.begin(), first.k.begin(), first.k.end());
      p.v.insert(p.v.begin(), first.v.begin(), first.v.end());
      p.nk = n + 30, p.offset = n;
      const HeadResult ref = oracle_quadratic(p);
      for (int64_t t = 0; t < 30; ++t)
        for (int64_t j = 0; j < dv; ++j) {
          const int64_t i = (h * 30 + t) * dv + j;
          const double mag = values == Values::kLog ? 1.0 : ref.y_mag[t * dv + j];
          const double tol =
              (2 * forward_c(ref, t, dk) + 2 * (3 * hmax + 2) +
               (values == Values::kLog ? 10 * ref.lv_mag[t] + std::abs(ref.y[t * dv + j]) : 0)) *
              kU * mag;
          EXPECT_NEAR(a.y[i], b.y[i], tol) << "head " << h << " row " << t;
        }
    }
    EXPECT_EQ(back.tokens(), n + 30);
  }
}

TEST(State, SignedSumsBelowZeroHaveNoLogSpaceForm) {
  Case c = gaussian_case(1, 1, 20, 20, 2, 2, 1.0, true, Values::kSigned, 4);
  for (auto& x : c.v) x = -1.f - std::abs(x);
  AttentionState st(1, 1, 2, 2, Values::kSigned);
  run_forward(c, &st);
  std::vector<float> hs(4), hz(2);
  EXPECT_THROW(st.to_log_space(hs, hz), Error);
}

TEST(State, ResetForgetsEverything) {
  const Case c = gaussian_case(1, 1, 20, 20, 2, 2, 1.0, true, Values::kSigned, 4);
  AttentionState st(1, 1, 2, 2, Values::kSigned);
  const Output a = run_forward(c, &st);
  st.reset();
  const Output b = run_forward(c, &st);
  EXPECT_EQ(a.y, b.y);
}

}  // namespace
}  // namespace logattn::testing
