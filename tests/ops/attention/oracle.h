// Float64 oracles of the attention, written plainly from the definitions
// (docs/design.md section 1).
#pragma once

#include <cstdint>
#include <vector>

namespace logattn::testing {

// One head. q: [nq, dk], k: [nk, dk], v: [nk, dv] (values, or log-values when log_values).
// Causal: query t sees keys s <= t + offset (offset = keys before the first query).
struct HeadProblem {
  int64_t nq = 0, nk = 0, dk = 0, dv = 0;
  bool causal = true;
  bool log_values = false;
  int64_t offset = 0;
  std::vector<double> q, k, v;
};

struct HeadResult {
  std::vector<double> y;      // [nq, dv] (log y for log-values)
  std::vector<double> log_d;  // [nq]
  // What a float32 computation of these outputs adds up, the scales of its rounding error
  // (test_util.h turns them into bounds):
  std::vector<double> y_mag;    // [nq, dv] signed values: sum_s w_ts |v_sj| / D_t (>= |y_tj|)
  std::vector<double> arg_mag;  // [nq] max_d |q_td| + max |k_sd| over the visible keys
  std::vector<double> lv_mag;   // [nq] log-values: max finite |log v_sj| over visible keys
  std::vector<double> v_mag;    // [nq] signed values: max |v_sj| over visible keys
  std::vector<int64_t> n_vis;   // [nq] keys the query sees
};

// Quadratic form: explicit weights w_ts = sum_d exp(q_td + k_sd), shifted by their maximum.
HeadResult oracle_quadratic(const HeadProblem& p);

// The paper's log-space form: H_S = LCSE_s(K^T + log V), H_Z = LCSE_s(K^T) (LSE_s when not
// causal), log S = LSE_d(Q + H_S), log Z = LSE_d(Q + H_Z). Signed values split into positive
// and negative parts, each a log-space sum. Linear in n.
HeadResult oracle_log_space(const HeadProblem& p);

// Analytic gradients of sum(gy * y) (for log-values: y is log Y and gv is d/d(log V)).
// abs_*: the same sums with every term replaced by its magnitude (for dq, dk the products
// v_sj g_tj and y_tj g_tj of r_ts = v_s . g_t - y_t . g_t taken apart): the scale below which
// float32 rounding (about 6e-8 of it) cannot resolve a gradient that cancels to near zero.
// For signed values the y_tj of c_t = y_t . g_t counts as y_mag_tj: the float32 y that a
// backward is fed is only as exact as what y summed, not as its own size.
struct HeadGrads {
  std::vector<double> gq, gk, gv;
  std::vector<double> abs_gq, abs_gk, abs_gv;
  // Log-values: the same sums for dq and dk with each value v_sj / exp(C_j) replaced by 1,
  // C_j the largest log v_sj of column j: a float32 kernel that scales the column by its
  // maximum holds v_sj / exp(C_j) to an absolute (not relative) eta where it underflows.
  std::vector<double> under_gq, under_gk;
  // The same sums as abs_* with every weight exp(q_td + k_sd - log D_t) replaced by 1: what
  // a weight's factor that underflows (absolute error eta) is multiplied by.
  std::vector<double> unit_gq, unit_gk, unit_gv;
  double arg_mag = 0;  // max_t (max_d |q_td| + |log D_t|) + max_{s,d} |k_sd|
  double lv_mag = 0;   // log-values: max finite |log v_sj|
};
HeadGrads oracle_gradients(const HeadProblem& p, const std::vector<double>& gy);

}  // namespace logattn::testing
