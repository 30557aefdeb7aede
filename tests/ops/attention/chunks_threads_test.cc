// The same oracle checks, forward and backward, with chunk sizes 1, 16, 64 and 256 and with
// 1 and 2 threads: the error bounds of test_util.h hold for every chunking and summation
// order, and the inputs below reach every path (the gap split, the float64 recomputation of
// log outputs, the query state of the reverse scan, a state carried in).
#include <gtest/gtest.h>
#include <omp.h>

#include <string>
#include <tuple>

#include "ops/attention/test_util.h"

namespace logattn::testing {
namespace {

class ChunksAndThreads : public ::testing::TestWithParam<std::tuple<int64_t, int>> {
 protected:
  void SetUp() override {
    threads_before_ = omp_get_max_threads();
    omp_set_num_threads(std::get<1>(GetParam()));
  }
  void TearDown() override { omp_set_num_threads(threads_before_); }

  Case with_chunk(Case c) const {
    c.opt.chunk = std::get<0>(GetParam());
    return c;
  }

 private:
  int threads_before_ = 1;
};

// The families of forward_test.cc, in a few heads so that both threads take some.
std::vector<std::pair<std::string, Case>> cases() {
  std::vector<std::pair<std::string, Case>> out;
  for (Values values : {Values::kSigned, Values::kLog}) {
    const std::string tag = values == Values::kLog ? " log" : " signed";
    for (double sigma : {1.0, 16.0})
      out.push_back({"gaussian " + std::to_string(sigma) + tag,
                     gaussian_case(1, 3, 300, 300, 16, 8, sigma, true, values, 5)});
    Case spike = gaussian_case(1, 2, 300, 300, 8, 4, 1.0, true, values, 6);
    for (auto& x : spike.k) x -= 40.f;
    for (int64_t d = 0; d < 8; ++d) spike.k[(70 + 0) * 8 + d] += 80.f;    // head 0
    for (int64_t d = 0; d < 8; ++d) spike.k[(300 + 17) * 8 + d] += 80.f;  // head 1
    out.push_back({"spike" + tag, spike});
    Case ramp = gaussian_case(1, 2, 260, 260, 4, 4, 1.0, true, values, 7);
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t t = 0; t < 260; ++t)
        for (int64_t d = 0; d < 4; ++d)
          ramp.k[(h * 260 + t) * 4 + d] =
              (t < 130 ? -40.f + 80.f * t / 130 : 40.f - 80.f * (t - 130) / 130) + 0.1f * d;
    out.push_back({"ramp" + tag, ramp});
    out.push_back({"non-causal" + tag, gaussian_case(2, 1, 70, 290, 16, 8, 2.0, false, values, 8)});
  }
  Case inf = gaussian_case(1, 2, 200, 200, 8, 4, 1.0, true, Values::kLog, 9);
  inf.v = uniform(2 * 200 * 4, -40.0, 40.0, 10);
  for (int64_t i = 0; i < 2 * 200; i += 3) inf.v[i * 4 + 1] = -kInf;
  for (int64_t i = 0; i < 2 * 200; ++i) inf.v[i * 4 + 3] = -kInf;
  out.push_back({"log-values with -inf", inf});
  return out;
}

TEST_P(ChunksAndThreads, ForwardMatchesTheOracle) {
  for (const auto& [name, c0] : cases()) {
    const Case c = with_chunk(c0);
    EXPECT_TRUE(matches_oracle(c, run_forward(c))) << name;
  }
}

TEST_P(ChunksAndThreads, BackwardMatchesTheOracle) {
  for (const auto& [name, c0] : cases()) EXPECT_TRUE(check_backward(with_chunk(c0))) << name;
}

TEST_P(ChunksAndThreads, AStateCarriedInMatchesTheOracle) {
  // 90 tokens into a state, then 170 more with the state: the second call's outputs are the
  // whole sequence's rows 90..259.
  for (Values values : {Values::kSigned, Values::kLog}) {
    const int64_t n0 = 90, n = 260, dk = 8, dv = 4;
    const Case full = with_chunk(gaussian_case(1, 1, n, n, dk, dv, 4.0, true, values, 11));
    const auto [head, tail] = split_at(full, n0);
    AttentionState st(1, 1, dk, dv, values);
    run_forward(head, &st);
    const Output o = run_forward(tail, &st);
    HeadProblem p = head_problem(full, 0);
    p.q.erase(p.q.begin(), p.q.begin() + n0 * dk);
    p.nq = n - n0, p.offset = n0;
    const HeadResult ref = oracle_quadratic(p);
    EXPECT_TRUE(rows_match(o.y.data(), ref, n - n0, dk, dv, values == Values::kLog));
    EXPECT_TRUE(log_d_match(o.log_d.data(), ref, n - n0, dk));
  }
}

INSTANTIATE_TEST_SUITE_P(Attention, ChunksAndThreads,
                         ::testing::Combine(::testing::Values<int64_t>(1, 16, 64, 256),
                                            ::testing::Values(1, 2)),
                         [](const auto& info) {
                           return "chunk" + std::to_string(std::get<0>(info.param)) + "_threads" +
                                  std::to_string(std::get<1>(info.param));
                         });

}  // namespace
}  // namespace logattn::testing
