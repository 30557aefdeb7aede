// Float64 oracles of the attention, written plainly from the definitions (DESIGN.md 1).
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
struct HeadGrads {
  std::vector<double> gq, gk, gv;
  std::vector<double> abs_gq, abs_gk, abs_gv;
};
HeadGrads oracle_gradients(const HeadProblem& p, const std::vector<double>& gy);

}  // namespace logattn::testing
