// Shared helpers for the attention tests: seeded data, oracle extraction, comparisons.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "logattn/attention.h"
#include "ops/attention/oracle.h"

namespace logattn::testing {

inline constexpr float kInf = std::numeric_limits<float>::infinity();

struct Case {
  AttentionDims dims;
  AttentionOptions opt;
  std::vector<float> q, k, v;
};

inline std::vector<float> gaussian(int64_t n, double sigma, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(0.0, sigma);
  std::vector<float> x(n);
  for (auto& e : x) e = static_cast<float>(dist(rng));
  return x;
}

inline std::vector<float> uniform(int64_t n, double lo, double hi, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  std::vector<float> x(n);
  for (auto& e : x) e = static_cast<float>(dist(rng));
  return x;
}

// Gaussian q, k, v with one sigma; log-values are Gaussian too (any sign is fine).
inline Case gaussian_case(int64_t B, int64_t H, int64_t nq, int64_t nk, int64_t dk, int64_t dv,
                          double sigma, bool causal, Values values, uint64_t seed) {
  Case c;
  c.dims = {B, H, nq, nk, dk, dv};
  c.opt.causal = causal;
  c.opt.values = values;
  c.q = gaussian(B * H * nq * dk, sigma, seed);
  c.k = gaussian(B * H * nk * dk, sigma, seed + 1);
  c.v = gaussian(B * H * nk * dv, sigma, seed + 2);
  return c;
}

// Head bh of a case as a float64 problem.
inline HeadProblem head_problem(const Case& c, int64_t bh) {
  const auto& d = c.dims;
  HeadProblem p;
  p.nq = d.n_q, p.nk = d.n_k, p.dk = d.d_key, p.dv = d.d_val;
  p.causal = c.opt.causal, p.log_values = c.opt.values == Values::kLog;
  p.q.assign(c.q.begin() + bh * d.n_q * d.d_key, c.q.begin() + (bh + 1) * d.n_q * d.d_key);
  p.k.assign(c.k.begin() + bh * d.n_k * d.d_key, c.k.begin() + (bh + 1) * d.n_k * d.d_key);
  p.v.assign(c.v.begin() + bh * d.n_k * d.d_val, c.v.begin() + (bh + 1) * d.n_k * d.d_val);
  return p;
}

struct Output {
  std::vector<float> y, log_d;
};

inline Output run_forward(const Case& c, AttentionState* state = nullptr) {
  Output o;
  o.y.resize(c.dims.batch * c.dims.heads * c.dims.n_q * c.dims.d_val);
  o.log_d.resize(c.dims.batch * c.dims.heads * c.dims.n_q);
  attention_forward(c.opt, c.dims, c.q, c.k, c.v, o.y, o.log_d, state);
  return o;
}

// The tolerance: per output row, max |y - y_ref| <= 1e-4 (max |y_ref| + 1e-6);
// log outputs within 1e-4 absolute (and -inf exactly where the oracle is -inf).
inline ::testing::AssertionResult rows_match(const float* y, const std::vector<double>& ref,
                                             int64_t n, int64_t dv, bool log_values) {
  for (int64_t t = 0; t < n; ++t) {
    double scale = 0.0;
    for (int64_t j = 0; j < dv; ++j) scale = std::max(scale, std::abs(ref[t * dv + j]));
    for (int64_t j = 0; j < dv; ++j) {
      const double r = ref[t * dv + j];
      const float x = y[t * dv + j];
      if (!std::isfinite(r)) {
        if (log_values && r == -INFINITY && x == -kInf) continue;
        return ::testing::AssertionFailure() << "oracle not finite at row " << t << " col " << j;
      }
      const double tol = log_values ? 1e-4 : 1e-4 * (scale + 1e-6);
      if (!std::isfinite(x) || std::abs(x - r) > tol)
        return ::testing::AssertionFailure() << "row " << t << " col " << j << ": got " << x
                                             << ", oracle " << r << " (tolerance " << tol << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult log_d_match(const float* ld, const std::vector<double>& ref,
                                              int64_t n) {
  for (int64_t t = 0; t < n; ++t) {
    const double tol = 1e-4 * std::max(1.0, std::abs(ref[t]));
    if (!std::isfinite(ld[t]) || std::abs(ld[t] - ref[t]) > tol)
      return ::testing::AssertionFailure()
             << "log_d row " << t << ": got " << ld[t] << ", oracle " << ref[t];
  }
  return ::testing::AssertionSuccess();
}

// Every head of a forward output against the quadratic oracle.
inline ::testing::AssertionResult matches_oracle(const Case& c, const Output& o) {
  const auto& d = c.dims;
  for (int64_t bh = 0; bh < d.batch * d.heads; ++bh) {
    const HeadResult ref = oracle_quadratic(head_problem(c, bh));
    auto r = rows_match(o.y.data() + bh * d.n_q * d.d_val, ref.y, d.n_q, d.d_val,
                        c.opt.values == Values::kLog);
    if (!r) return r << " (head " << bh << ")";
    r = log_d_match(o.log_d.data() + bh * d.n_q, ref.log_d, d.n_q);
    if (!r) return r << " (head " << bh << ")";
  }
  return ::testing::AssertionSuccess();
}

// L2 error of a float tensor relative to a float64 one: ||x - ref|| / max(||ref||, 1e-2 ||abs||),
// with abs the oracle's sums of term magnitudes (HeadGrads). Where a gradient does not
// cancel this is the plain relative error. Where it cancels to (near) zero (d_key = 1, one
// key, a query that sees one dominant key) the backward, fed the forward's float32 outputs
// (relative error about 1e-7 for values, 1e-6 for log-values), can resolve it only to about
// 1e-6 of its terms, which the 1e-2 (times the 1e-4 tolerance) allows.
inline double rel_l2(const float* x, const std::vector<double>& ref,
                     const std::vector<double>& abs) {
  double num = 0.0, den = 0.0, scale = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    num += (x[i] - ref[i]) * (x[i] - ref[i]);
    den += ref[i] * ref[i];
    scale += abs[i] * abs[i];
  }
  return std::sqrt(num) / std::max({std::sqrt(den), 1e-2 * std::sqrt(scale), 1e-300});
}

}  // namespace logattn::testing
