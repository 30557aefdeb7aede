// Bad calls raise logattn::Error naming the operation and what is wrong; non-finite inputs
// are rejected (never a crash, never a silently wrong finite number).
#include <gtest/gtest.h>

#include "ops/attention/test_util.h"

namespace logattn::testing {
namespace {

template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Errors, ShapeMismatchNamesTheTensor) {
  Case c = gaussian_case(1, 2, 10, 10, 4, 3, 1.0, true, Values::kSigned, 1);
  c.k.pop_back();
  const std::string msg = error_of([&] { run_forward(c); });
  EXPECT_NE(msg.find("attention_forward"), std::string::npos) << msg;
  EXPECT_NE(msg.find("k has 79 elements, expected [1, 2, 10, 4] = 80"), std::string::npos) << msg;
}

TEST(Errors, CausalNeedsEqualLengths) {
  Case c = gaussian_case(1, 1, 5, 6, 4, 3, 1.0, true, Values::kSigned, 1);
  EXPECT_NE(error_of([&] { run_forward(c); }).find("n_q == n_k"), std::string::npos);
  c.opt.causal = false;
  EXPECT_EQ(error_of([&] { run_forward(c); }), "");
}

TEST(Errors, ZeroSizes) {
  Case c = gaussian_case(1, 1, 5, 5, 4, 3, 1.0, true, Values::kSigned, 1);
  c.dims.d_key = 0;
  EXPECT_NE(error_of([&] { run_forward(c); }).find("d_key must be at least 1"), std::string::npos);
  c = gaussian_case(1, 1, 5, 5, 4, 3, 1.0, true, Values::kSigned, 1);
  c.opt.chunk = 0;
  EXPECT_NE(error_of([&] { run_forward(c); }).find("chunk"), std::string::npos);
  EXPECT_THROW(AttentionState(1, 0, 4, 4, Values::kSigned), Error);
}

TEST(Errors, NonFiniteInputsAreRejectedWithTheirIndex) {
  Case c = gaussian_case(2, 2, 5, 5, 4, 3, 1.0, true, Values::kSigned, 1);
  c.q[(1 * 2 + 1) * 5 * 4 + 2 * 4 + 3] = NAN;  // [1, 1, 2, 3]
  EXPECT_NE(
      error_of([&] { run_forward(c); }).find("q has a non-finite value (nan) at [1, 1, 2, 3]"),
      std::string::npos);
  c = gaussian_case(1, 1, 5, 5, 4, 3, 1.0, true, Values::kSigned, 1);
  c.k[0] = -kInf;
  EXPECT_NE(error_of([&] { run_forward(c); }).find("k has a non-finite value"), std::string::npos);
  c = gaussian_case(1, 1, 5, 5, 4, 3, 1.0, true, Values::kSigned, 1);
  c.v[4] = kInf;
  EXPECT_NE(error_of([&] { run_forward(c); }).find("v has a non-finite"), std::string::npos);
}

TEST(Errors, StepHeadsChecksItsRangeAndItsHeadsInputs) {
  AttentionState st(1, 3, 4, 2, Values::kSigned);
  std::vector<float> q(12, 0.5f), k(12, 0.5f), v(6, 1.f), y(6), ld(3);
  for (auto [h0, h1] : {std::pair<int64_t, int64_t>{0, 0}, {2, 1}, {-1, 2}, {1, 4}})
    EXPECT_NE(error_of([&] {
                attention_step_heads(q, k, v, y, st, ld, h0, h1);
              }).find("attention_step_heads: heads [" + std::to_string(h0)),
              std::string::npos)
        << h0 << ", " << h1;
  q[2 * 4 + 1] = NAN;  // head 2's query
  EXPECT_EQ(error_of([&] { attention_step_heads(q, k, v, y, st, ld, 0, 2); }), "");
  EXPECT_NE(error_of([&] {
              attention_step_heads(q, k, v, y, st, ld, 1, 3);
            }).find("q has a non-finite value (nan) at [0, 2, 0, 1]"),
            std::string::npos);
  std::vector<float> short_k(8);
  EXPECT_NE(error_of([&] { attention_step_heads(q, short_k, v, y, st, ld, 0, 1); }).find("k"),
            std::string::npos);
}

TEST(Errors, LogValuesAllowMinusInfOnly) {
  Case c = gaussian_case(1, 1, 5, 5, 4, 3, 1.0, true, Values::kLog, 1);
  c.v[2] = -kInf;
  EXPECT_EQ(error_of([&] { run_forward(c); }), "");
  c.v[3] = kInf;
  EXPECT_NE(error_of([&] { run_forward(c); }).find("only -inf is allowed"), std::string::npos);
  c.v[3] = NAN;
  EXPECT_NE(error_of([&] { run_forward(c); }).find("log_v has a non-finite"), std::string::npos);
}

TEST(Errors, StateOfAnotherShapeOrKind) {
  Case c = gaussian_case(1, 2, 5, 5, 4, 3, 1.0, true, Values::kSigned, 1);
  AttentionState wrong_dims(1, 2, 4, 5, Values::kSigned);
  EXPECT_NE(error_of([&] { run_forward(c, &wrong_dims); }).find("state is for"), std::string::npos);
  AttentionState wrong_kind(1, 2, 4, 3, Values::kLog);
  EXPECT_NE(error_of([&] { run_forward(c, &wrong_kind); }).find("state holds log-values"),
            std::string::npos);
  std::vector<float> q(8), y(6);
  AttentionState empty(1, 2, 4, 3, Values::kSigned);
  EXPECT_NE(error_of([&] { attention_read(q, 1, y, empty); }).find("no keys"), std::string::npos);
}

TEST(Errors, BackwardChecksItsInputs) {
  const Case c = gaussian_case(1, 1, 5, 5, 4, 3, 1.0, true, Values::kSigned, 1);
  const Output o = run_forward(c);
  std::vector<float> gy(15, 1.f), gq(20), gk(20), gv(15);
  std::vector<float> bad_gy = gy;
  bad_gy[4] = NAN;
  EXPECT_NE(error_of([&] {
              attention_backward(c.opt, c.dims, c.q, c.k, c.v, o.y, o.log_d, bad_gy, gq, gk, gv);
            }).find("gy has a non-finite"),
            std::string::npos);
  EXPECT_NE(error_of([&] {
              attention_backward(c.opt, c.dims, c.q, c.k, c.v, o.y, {}, gy, gq, gk, gv);
            }).find("log_d has 0 elements"),
            std::string::npos);
}

}  // namespace
}  // namespace logattn::testing
