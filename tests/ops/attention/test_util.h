// Shared helpers for the attention tests: seeded data, oracle extraction, comparisons.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "logattn/attention.h"
#include "ops/attention/head_kernels.h"
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

// A one-head causal case cut at token n0 into its first n0 tokens and the rest.
inline std::pair<Case, Case> split_at(const Case& full, int64_t n0) {
  const int64_t dk = full.dims.d_key, dv = full.dims.d_val;
  Case head = full, tail = full;
  head.dims.n_q = head.dims.n_k = n0;
  tail.dims.n_q = tail.dims.n_k = full.dims.n_q - n0;
  head.q.resize(n0 * dk), head.k.resize(n0 * dk), head.v.resize(n0 * dv);
  tail.q.erase(tail.q.begin(), tail.q.begin() + n0 * dk);
  tail.k.erase(tail.k.begin(), tail.k.begin() + n0 * dk);
  tail.v.erase(tail.v.begin(), tail.v.begin() + n0 * dv);
  return {head, tail};
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

// Error bounds (docs/design.md section 6) for any correct float32 kernel, whatever its chunk size,
// summation order or thread count. u = 2^-24 is float32's unit roundoff.
//
// Forward, query t seeing n_t keys, A_t = max_d |q_td| + max visible |k_sd| (arg_mag):
//  - a weight term exp(q_td + k_sd - references) is the exp of a float32 sum of at most four
//    numbers of magnitude <= A_t (q, k and maxima of them as references); each addition
//    rounds by u times a partial sum <= 2 A_t, so the argument is off by <= 8 u A_t, plus one
//    rounding for the exp and one for the product of the two exps: (8 A_t + 2) u relative.
//  - the numerator N_tj and the denominator D_t each add n_t d_key such terms (over keys,
//    then key features: depth <= n_t + d_key in any order), and the running state is
//    rescaled at most n_t times (an exp and a product each): <= (3 n_t + d_key) u relative
//    to the sum of the terms' magnitudes.
//  - y = N / D: the numerator's error against S_tj = sum_s w_ts |v_sj| / D_t (y_mag, which
//    signed values may cancel far below |y_tj|), the denominator's relative error times
//    |y_tj| <= S_tj, and one rounding for the division:
//        |y - y_ref| <= c_t (u S_tj + eta e^G V_t),   c_t = 2 (8 A_t + 2) + 2 (3 n_t + d_key) + 1.
//    Underflow: eta = 2^-126, float32's smallest normal number, bounds the absolute error
//    that an operation adds when its result underflows, below which a float32 carries no
//    relative precision (the model fl(x) = x (1 + d) + e, |e| <= eta, of abrupt underflow,
//    which also covers an exp that returns 0 below the subnormal range). A weight term
//    that underflows in scaled units is off by eta times its value (<= V_t, the largest
//    visible |v|, v_mag) against a scaled denominator that a kernel keeps >= e^-G: the
//    chunked kernels split a chunk whose references exceed what its first query sees by
//    more than G = kMaxGap = 30 nats (head_kernels.h).
// Log-values (y is log Y; V = exp(log V) > 0, so S_tj = Y_tj and the error is relative):
// the values exp(log v_sj - c_j) with c_j a maximum of them add (4 L_t + 2) u (L_t: largest
// finite visible |log v|, lv_mag), and c_j + log(...) rounds by u (|log y| + L_t):
//        |log y - ref| <= (c_t + 5 L_t + 3 + |ref|) u.
// log D_t = M_t + log(p^T Z): the denominator's error, and u (|log D_t| + 1) for the sum:
//        |log D - ref| <= ((8 A_t + 2) + (3 n_t + d_key) + |ref| + 1) u.
inline constexpr double kU = 0x1p-24;
inline constexpr double kEta = 0x1p-126;
inline const double kGap = std::exp(static_cast<double>(attention::kMaxGap));

inline double forward_c(const HeadResult& ref, int64_t t, int64_t dk) {
  return 2 * (8 * ref.arg_mag[t] + 2) + 2 * (3.0 * ref.n_vis[t] + dk) + 1;
}

inline ::testing::AssertionResult rows_match(const float* y, const HeadResult& ref, int64_t n,
                                             int64_t dk, int64_t dv, bool log_values) {
  for (int64_t t = 0; t < n; ++t) {
    const double c = forward_c(ref, t, dk);
    for (int64_t j = 0; j < dv; ++j) {
      const double r = ref.y[t * dv + j];
      const float x = y[t * dv + j];
      if (!std::isfinite(r)) {
        if (log_values && r == -INFINITY && x == -kInf) continue;
        return ::testing::AssertionFailure() << "oracle not finite at row " << t << " col " << j;
      }
      const double tol = log_values ? (c + 5 * ref.lv_mag[t] + 3 + std::abs(r)) * kU
                                    : c * (kU * ref.y_mag[t * dv + j] + kEta * kGap * ref.v_mag[t]);
      if (!std::isfinite(x) || std::abs(x - r) > tol)
        return ::testing::AssertionFailure()
               << "row " << t << " col " << j << ": got " << x << ", oracle " << r << " (bound "
               << tol << " = " << tol / kU << " u)";
    }
  }
  return ::testing::AssertionSuccess();
}

inline ::testing::AssertionResult log_d_match(const float* ld, const HeadResult& ref, int64_t n,
                                              int64_t dk) {
  for (int64_t t = 0; t < n; ++t) {
    const double r = ref.log_d[t];
    const double tol =
        ((8 * ref.arg_mag[t] + 2) + (3.0 * ref.n_vis[t] + dk) + std::abs(r) + 1) * kU;
    if (!std::isfinite(ld[t]) || std::abs(ld[t] - r) > tol)
      return ::testing::AssertionFailure() << "log_d row " << t << ": got " << ld[t] << ", oracle "
                                           << r << " (bound " << tol << ")";
  }
  return ::testing::AssertionSuccess();
}

// Every head of a forward output against the quadratic oracle.
inline ::testing::AssertionResult matches_oracle(const Case& c, const Output& o) {
  const auto& d = c.dims;
  for (int64_t bh = 0; bh < d.batch * d.heads; ++bh) {
    const HeadResult ref = oracle_quadratic(head_problem(c, bh));
    auto r = rows_match(o.y.data() + bh * d.n_q * d.d_val, ref, d.n_q, d.d_key, d.d_val,
                        c.opt.values == Values::kLog);
    if (!r) return r << " (head " << bh << ")";
    r = log_d_match(o.log_d.data() + bh * d.n_q, ref, d.n_q, d.d_key);
    if (!r) return r << " (head " << bh << ")";
  }
  return ::testing::AssertionSuccess();
}

// Backward, per element: a gradient adds terms exp(q_td + k_sd - log D_t) r_ts (dq, dk;
// r_ts = v_s . G_t - y_t . G_t) or w_ts G_tj (dv), whose magnitudes the oracle sums into
// abs_* (with y_mag for the y of c_t: the float32 y fed in is only that exact). Each term's
// weight is the exp of float32 sums of at most four numbers of magnitude <= A (arg_mag:
// q, log D, k and references), each rounding by u times <= 2 A: (8 A + 2) u; the forward's
// y and log D, which the backward is fed, carry the forward's bound (the same form); the
// sums over keys or queries, key and value features and the rescaled running states have
// depth <= 3 n + d_key + d_val. Log-values add the exps of log v - references and the
// divisions by Y: (4 L + 2) u. So
//     |g - ref| <= c (u abs + eta),  c = 2 (8 A + 2) + 2 (3 n + d_key + d_val) + 8 (+ 4 L + 2),
// with eta the underflow term of the forward's bound: a weight is a product of two exps
// taken against references (maxima of the keys or of the queries) up to G above what a
// query sees, so one factor may reach e^G while the other underflows with absolute error
// eta: eta e^G per weight, times the rest of its term (unit_*, oracle.h). Log-values add one more
// underflow: a value exp(log v - C_j) below float32's normal range (a column spanning more than 87
// nats) is off by up to eta before it meets g_tj / y_tj (under_*, oracle.h). So the bound adds c
// eta (e^G unit + under): far below float32's resolution of ordinary gradients, it decides only for
// gradients that are tiny against the others (sigma 16).
inline ::testing::AssertionResult grad_matches(const float* x, const std::vector<double>& ref,
                                               const std::vector<double>& abs,
                                               const std::vector<double>& unit, double c,
                                               const char* name,
                                               const std::vector<double>* under = nullptr) {
  for (size_t i = 0; i < ref.size(); ++i) {
    const double tol =
        c * (kU * abs[i] + kEta * (1 + kGap * unit[i] + (under ? (*under)[i] : 0.0)));
    if (!std::isfinite(x[i]) || std::abs(x[i] - ref[i]) > tol)
      return ::testing::AssertionFailure()
             << name << "[" << i << "]: got " << x[i] << ", oracle " << ref[i] << " (bound " << tol
             << " = " << c << " u x " << abs[i] << ")";
  }
  return ::testing::AssertionSuccess();
}

inline double backward_c(const HeadGrads& ref, int64_t n, int64_t dk, int64_t dv) {
  return 2 * (8 * ref.arg_mag + 2) + 2 * (3.0 * n + dk + dv) + 8 + 4 * ref.lv_mag + 2;
}

struct Grads {
  std::vector<float> gq, gk, gv;
};

inline Grads run_backward(const Case& c, const Output& o, const std::vector<float>& gy,
                          const AttentionState* state_in = nullptr) {
  const auto& d = c.dims;
  const int64_t bh = d.batch * d.heads;
  Grads g;
  g.gq.resize(bh * d.n_q * d.d_key);
  g.gk.resize(bh * d.n_k * d.d_key);
  g.gv.resize(bh * d.n_k * d.d_val);
  attention_backward(c.opt, d, c.q, c.k, c.v, o.y, o.log_d, gy, g.gq, g.gk, g.gv, state_in);
  return g;
}

// Every head of a backward against the oracle gradients, element by element.
inline ::testing::AssertionResult grads_match(const Case& c, const std::vector<float>& gy,
                                              const Grads& g) {
  const auto& d = c.dims;
  for (int64_t bh = 0; bh < d.batch * d.heads; ++bh) {
    std::vector<double> gyd(gy.begin() + bh * d.n_q * d.d_val,
                            gy.begin() + (bh + 1) * d.n_q * d.d_val);
    const HeadGrads ref = oracle_gradients(head_problem(c, bh), gyd);
    const double bc = backward_c(ref, d.n_k, d.d_key, d.d_val);
    for (auto r : {grad_matches(g.gq.data() + bh * d.n_q * d.d_key, ref.gq, ref.abs_gq, ref.unit_gq,
                                bc, "gq", &ref.under_gq),
                   grad_matches(g.gk.data() + bh * d.n_k * d.d_key, ref.gk, ref.abs_gk, ref.unit_gk,
                                bc, "gk", &ref.under_gk),
                   grad_matches(g.gv.data() + bh * d.n_k * d.d_val, ref.gv, ref.abs_gv, ref.unit_gv,
                                bc, "gv")})
      if (!r) return r << " (head " << bh << ")";
  }
  return ::testing::AssertionSuccess();
}

// Forward, then backward of a seeded gy, against the oracle gradients.
inline ::testing::AssertionResult check_backward(const Case& c) {
  const Output o = run_forward(c);
  const auto gy = gaussian(o.y.size(), 1.0, 1234);
  return grads_match(c, gy, run_backward(c, o, gy));
}

}  // namespace logattn::testing
