// Backward against the float64 analytic gradients (which pass finite differences in
// oracle_test.cc): every element within its error bound (test_util.h).
#include <gtest/gtest.h>

#include <algorithm>

#include "ops/attention/test_util.h"

namespace logattn::testing {
namespace {

TEST(Backward, GaussianScales) {
  for (double sigma : {0.1, 1.0, 4.0, 16.0})
    for (Values values : {Values::kSigned, Values::kLog})
      EXPECT_TRUE(check_backward(gaussian_case(1, 2, 300, 300, 16, 8, sigma, true, values, 50)))
          << "sigma " << sigma << (values == Values::kLog ? " log" : " signed");
}

TEST(Backward, LengthsAndDims) {
  const std::pair<int64_t, int64_t> dims[] = {{1, 3}, {3, 1}, {32, 16}, {64, 128}};
  for (auto [dk, dv] : dims)
    for (int64_t n : {1, 2, 63, 64, 65, 200})
      for (Values values : {Values::kSigned, Values::kLog})
        EXPECT_TRUE(check_backward(gaussian_case(2, 1, n, n, dk, dv, 1.0, true, values, n)))
            << "dk " << dk << " dv " << dv << " n " << n;
}

TEST(Backward, ExtremeKeys) {
  for (int64_t pos : {0, 31, 63, 64, 65, 150, 199})
    for (Values values : {Values::kSigned, Values::kLog}) {
      // Keys around -40 with one around +40 (noise keeps the gradients from cancelling).
      Case c = gaussian_case(1, 1, 200, 200, 16, 8, 1.0, true, values, pos);
      for (auto& x : c.k) x -= 40.f;
      for (int64_t d = 0; d < 16; ++d) c.k[pos * 16 + d] += 80.f;
      EXPECT_TRUE(check_backward(c)) << "spike at " << pos;
    }
}

TEST(Backward, LogValuesWithMinusInf) {
  const int64_t n = 200, dv = 4;
  Case c = gaussian_case(1, 1, n, n, 8, dv, 1.0, true, Values::kLog, 61);
  c.v = uniform(n * dv, -10.0, 10.0, 62);
  for (int64_t t = 0; t < n; t += 3) c.v[t * dv + 1] = -kInf;
  for (int64_t t = 0; t < 50; ++t) c.v[t * dv + 2] = -kInf;
  EXPECT_TRUE(check_backward(c));
}

TEST(Backward, NonCausal) {
  for (auto [nq, nk] : {std::pair<int64_t, int64_t>{1, 100}, {50, 300}, {200, 9}})
    for (Values values : {Values::kSigned, Values::kLog})
      EXPECT_TRUE(check_backward(gaussian_case(2, 2, nq, nk, 16, 8, 2.0, false, values, nq)))
          << nq << " x " << nk;
}

TEST(Backward, ContinuingFromAState) {
  // Forward 100 tokens into a state, then 150 more; the backward of the second call, given
  // the state it started from, matches the full sequence's gradients for its own tokens.
  for (Values values : {Values::kSigned, Values::kLog}) {
    const int64_t n0 = 100, n1 = 150, n = n0 + n1, dk = 8, dv = 4;
    const Case full = gaussian_case(1, 1, n, n, dk, dv, 2.0, true, values, 71);
    const auto [head, tail] = split_at(full, n0);
    AttentionState st(1, 1, dk, dv, values);
    run_forward(head, &st);
    const AttentionState st_in = st;
    const Output o = run_forward(tail, &st);
    const auto gy = gaussian(n1 * dv, 1.0, 72);
    const Grads g = run_backward(tail, o, gy, &st_in);
    std::vector<double> gyd(n0 * dv, 0.0);
    gyd.insert(gyd.end(), gy.begin(), gy.end());
    const HeadGrads ref = oracle_gradients(head_problem(full, 0), gyd);
    auto tail_of = [](const std::vector<double>& x, int64_t from) {
      return std::vector<double>(x.begin() + from, x.end());
    };
    const double bc = backward_c(ref, n, dk, dv);
    const auto uq = tail_of(ref.under_gq, n0 * dk), uk = tail_of(ref.under_gk, n0 * dk);
    EXPECT_TRUE(grad_matches(g.gq.data(), tail_of(ref.gq, n0 * dk), tail_of(ref.abs_gq, n0 * dk),
                             tail_of(ref.unit_gq, n0 * dk), bc, "gq", &uq));
    EXPECT_TRUE(grad_matches(g.gk.data(), tail_of(ref.gk, n0 * dk), tail_of(ref.abs_gk, n0 * dk),
                             tail_of(ref.unit_gk, n0 * dk), bc, "gk", &uk));
    EXPECT_TRUE(grad_matches(g.gv.data(), tail_of(ref.gv, n0 * dv), tail_of(ref.abs_gv, n0 * dv),
                             tail_of(ref.unit_gv, n0 * dv), bc, "gv"));
  }
}

}  // namespace
}  // namespace logattn::testing
