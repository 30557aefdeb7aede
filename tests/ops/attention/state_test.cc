// The state converts to the paper's log-space (H_S, H_Z) and back, and a state rebuilt from
// log-space continues a sequence as the original would.
#include <gtest/gtest.h>

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
        EXPECT_NEAR(hz[h * dk + d], std::log(z), 1e-5 * (1 + std::abs(std::log(z))));
        for (int64_t j = 0; j < dv; ++j)
          EXPECT_NEAR(hs[(h * dk + d) * dv + j], std::log(s[j]),
                      1e-5 * (1 + std::abs(std::log(s[j]))));
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
    for (size_t i = 0; i < a.y.size(); ++i)
      EXPECT_NEAR(a.y[i], b.y[i], 1e-4 * (1 + std::abs(a.y[i])));
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
