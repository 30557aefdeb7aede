// The two float64 oracles agree with each other, and the analytic gradients pass central
// finite differences: everything else is tested against them.
#include "ops/attention/oracle.h"

#include <gtest/gtest.h>

#include <cmath>

#include "ops/attention/test_util.h"

namespace logattn::testing {
namespace {

HeadProblem random_problem(int64_t nq, int64_t nk, int64_t dk, int64_t dv, bool causal,
                           bool log_values, uint64_t seed, double sigma = 1.0) {
  HeadProblem p;
  p.nq = nq, p.nk = nk, p.dk = dk, p.dv = dv, p.causal = causal, p.log_values = log_values;
  p.offset = causal ? nk - nq : 0;
  for (float x : gaussian(nq * dk, sigma, seed)) p.q.push_back(x);
  for (float x : gaussian(nk * dk, sigma, seed + 1)) p.k.push_back(x);
  for (float x : gaussian(nk * dv, sigma, seed + 2)) p.v.push_back(x);
  return p;
}

TEST(Oracle, QuadraticAndLogSpaceAgree) {
  for (bool causal : {true, false})
    for (bool log_values : {false, true})
      for (double sigma : {0.1, 1.0, 4.0, 16.0}) {
        const int64_t nq = causal ? 40 : 7;
        HeadProblem p = random_problem(nq, 40, 5, 3, causal, log_values, 11, sigma);
        if (!log_values) p.v[7] = 0.0;  // an exact zero value takes neither log-space part
        const HeadResult a = oracle_quadratic(p), b = oracle_log_space(p);
        // Both in float64 (u64 = 2^-53): the quadratic form within test_util.h's forward
        // bound; the log-space form adds, per logaddexp of its n_t-long chains (and the d_key
        // of the read-out), a rounding of u64 times the log-sums' size, <= A_t + L_t + 2. The
        // signed split exp(lp - lz) - exp(ln - lz) cancels against y_mag, as y does.
        const double u64 = 0x1p-53;
        for (int64_t t = 0; t < p.nq; ++t) {
          const double c = forward_c(a, t, p.dk) + 5 * a.lv_mag[t] + 3 +
                           2 * (a.n_vis[t] + p.dk) * (a.arg_mag[t] + a.lv_mag[t] + 2);
          for (int64_t j = 0; j < p.dv; ++j) {
            const size_t i = t * p.dv + j;
            const double tol = log_values ? (c + std::abs(a.y[i])) * u64 : c * u64 * a.y_mag[i];
            ASSERT_NEAR(a.y[i], b.y[i], tol)
                << "causal " << causal << " log " << log_values << " sigma " << sigma;
          }
          ASSERT_NEAR(a.log_d[t], b.log_d[t], (c + std::abs(a.log_d[t])) * u64);
        }
      }
}

TEST(Oracle, CausalOffsetSeesEarlierKeys) {
  HeadProblem p = random_problem(3, 10, 2, 2, true, false, 5);
  const HeadResult r = oracle_quadratic(p);
  HeadProblem full = p;
  full.nq = 10, full.offset = 0;
  full.q.assign(10 * 2, 0.0);
  for (int i = 0; i < 6; ++i) full.q[7 * 2 + i] = p.q[i];
  const HeadResult f = oracle_quadratic(full);
  for (int i = 0; i < 6; ++i) EXPECT_DOUBLE_EQ(r.y[i], f.y[7 * 2 + i]);
}

double loss(const HeadProblem& p, const std::vector<double>& gy) {
  const HeadResult r = oracle_quadratic(p);
  double l = 0.0;
  for (size_t i = 0; i < gy.size(); ++i) l += gy[i] * r.y[i];
  return l;
}

TEST(Oracle, GradientsPassFiniteDifferences) {
  for (bool causal : {true, false})
    for (bool log_values : {false, true}) {
      HeadProblem p = random_problem(causal ? 6 : 4, 6, 3, 2, causal, log_values, 21);
      std::vector<double> gy;
      for (float x : gaussian(p.nq * p.dv, 1.0, 99)) gy.push_back(x);
      const HeadGrads g = oracle_gradients(p, gy);
      // Central differences D(h) = f'(x) + C h^2 + ...: their truncation error is estimated
      // from D(2h) - D(h) = 3 C h^2, and each loss is off by at most a few u64 times the
      // magnitudes it adds, sum |gy y| (plus the float64 oracle's own bound, far smaller),
      // which D(h) divides by 2h: tol = 2 |D(2h) - D(h)| / 3 + 8 u64 scale / h.
      const double h = 1e-5, u64 = 0x1p-53;
      double scale = 1.0;
      const HeadResult fwd = oracle_quadratic(p);
      for (size_t i = 0; i < gy.size(); ++i) scale += std::abs(gy[i] * fwd.y[i]);
      auto diff = [&](std::vector<double>& x, size_t i, double step) {
        const double x0 = x[i];
        x[i] = x0 + step;
        const double lp = loss(p, gy);
        x[i] = x0 - step;
        const double lm = loss(p, gy);
        x[i] = x0;
        return (lp - lm) / (2 * step);
      };
      auto check = [&](std::vector<double>& x, const std::vector<double>& ga, const char* name) {
        for (size_t i = 0; i < x.size(); ++i) {
          const double d1 = diff(x, i, h), d2 = diff(x, i, 2 * h);
          const double tol = 2 * std::abs(d2 - d1) / 3 + 8 * u64 * scale / h;
          EXPECT_NEAR(ga[i], d1, tol)
              << name << "[" << i << "] causal " << causal << " log " << log_values;
        }
      };
      check(p.q, g.gq, "q");
      check(p.k, g.gk, "k");
      check(p.v, g.gv, "v");
    }
}

}  // namespace
}  // namespace logattn::testing
