#include "ops/softmax_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ops/matmul.h"

namespace logattn::ops {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Column references c_j = max_s lv[s, j] and scaled values vc = exp(lv - c) (0 in columns
// that hold only -inf). lv: [T, dv].
void scale_values(int64_t T, int64_t dv, const float* lv, float* c, float* vc) {
  for (int64_t j = 0; j < dv; ++j) c[j] = kNegInf;
  for (int64_t s = 0; s < T; ++s)
    for (int64_t j = 0; j < dv; ++j) c[j] = std::max(c[j], lv[s * dv + j]);
  for (int64_t s = 0; s < T; ++s)
    for (int64_t j = 0; j < dv; ++j)
      vc[s * dv + j] = c[j] == kNegInf ? 0.f : std::exp(lv[s * dv + j] - c[j]);
}

// log sum_s exp(logw[s] + lv[s * dv]) in float64, over s < n; -inf when every term is 0
// (every weight or value is 0). lv points at one value column.
double log_weighted_sum(int64_t n, const double* logw, const float* lv, int64_t dv) {
  double mx = -INFINITY;
  for (int64_t s = 0; s < n; ++s) mx = std::max(mx, logw[s] + lv[s * dv]);
  if (mx == -INFINITY) return mx;
  double acc = 0;
  for (int64_t s = 0; s < n; ++s) acc += std::exp(logw[s] + lv[s * dv] - mx);
  return mx + std::log(acc);
}

}  // namespace

void softmax_attention_forward(int64_t B, int64_t H, int64_t T, int64_t dk, int64_t dv,
                               const float* q, const float* k, const float* lv, float* logy,
                               float* p) {
  const float scale = 1.f / std::sqrt(static_cast<float>(dk));
#pragma omp parallel for schedule(static)
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const float* qh = q + bh * T * dk;
    const float* kh = k + bh * T * dk;
    const float* lh = lv + bh * T * dv;
    float* ph = p + bh * T * T;
    float* yh = logy + bh * T * dv;
    gemm(false, true, T, T, dk, scale, qh, dk, kh, dk, 0.f, ph, T);
    for (int64_t t = 0; t < T; ++t) {  // causal softmax of each row
      float* row = ph + t * T;
      float mx = kNegInf;
      for (int64_t s = 0; s <= t; ++s) mx = std::max(mx, row[s]);
      float sum = 0.f;
      for (int64_t s = 0; s <= t; ++s) sum += row[s] = std::exp(row[s] - mx);
      for (int64_t s = 0; s <= t; ++s) row[s] /= sum;
      std::fill(row + t + 1, row + T, 0.f);
    }
    std::vector<float> c(dv), vc(T * dv);
    scale_values(T, dv, lh, c.data(), vc.data());
    gemm(false, false, T, dv, T, 1.f, ph, T, vc.data(), dv, 0.f, yh, dv);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < dv; ++j) {
        float& y = yh[t * dv + j];
        if (c[j] == kNegInf) {
          y = kNegInf;
        } else if (y > 1e-30f) {
          y = c[j] + std::log(y);
        } else {
          // Underflow of the scaled sum: log sum_s P_ts exp(lv_sj) in float64.
          std::vector<double> logp(t + 1);
          for (int64_t s = 0; s <= t; ++s) logp[s] = std::log(double(ph[t * T + s]));
          y = static_cast<float>(log_weighted_sum(t + 1, logp.data(), lh + j, dv));
        }
      }
  }
}

void softmax_attention_backward(int64_t B, int64_t H, int64_t T, int64_t dk, int64_t dv,
                                const float* q, const float* k, const float* lv, const float* logy,
                                const float* p, const float* glogy, float* gq, float* gk,
                                float* glv) {
  const float scale = 1.f / std::sqrt(static_cast<float>(dk));
#pragma omp parallel for schedule(static)
  for (int64_t bh = 0; bh < B * H; ++bh) {
    const float* ph = p + bh * T * T;
    const float* lh = lv + bh * T * dv;
    std::vector<float> c(dv), vc(T * dv), g(T * dv), dp(T * T);
    scale_values(T, dv, lh, c.data(), vc.data());
    // g = dL/dYc with Yc = y exp(-c): glogy / Yc.
    for (int64_t t = 0; t < T; ++t)
      for (int64_t j = 0; j < dv; ++j) {
        const float ly = logy[(bh * T + t) * dv + j];
        g[t * dv + j] = (c[j] == kNegInf || ly == kNegInf)
                            ? 0.f
                            : glogy[(bh * T + t) * dv + j] * std::exp(c[j] - ly);
      }
    float* glh = glv + bh * T * dv;
    gemm(true, false, T, dv, T, 1.f, ph, T, g.data(), dv, 0.f, glh, dv);  // dVc = P^T g
    for (int64_t i = 0; i < T * dv; ++i) glh[i] *= vc[i];                 // d(log v)
    gemm(false, true, T, T, dv, 1.f, g.data(), dv, vc.data(), dv, 0.f, dp.data(), T);
    for (int64_t t = 0; t < T; ++t) {  // dS = P * (dP - rowsum(P dP))
      float dot = 0.f;
      for (int64_t s = 0; s <= t; ++s) dot += ph[t * T + s] * dp[t * T + s];
      for (int64_t s = 0; s < T; ++s)
        dp[t * T + s] = s <= t ? ph[t * T + s] * (dp[t * T + s] - dot) : 0.f;
    }
    gemm(false, false, T, dk, T, scale, dp.data(), T, k + bh * T * dk, dk, 0.f, gq + bh * T * dk,
         dk);
    gemm(true, false, T, dk, T, scale, dp.data(), T, q + bh * T * dk, dk, 0.f, gk + bh * T * dk,
         dk);
  }
}

void softmax_attention_step(int64_t B, int64_t H, int64_t dk, int64_t dv, const float* q,
                            const float* k, const float* lv, float* logy,
                            std::vector<float>* cache_k, std::vector<float>* cache_v) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(dk));
  for (int64_t bh = 0; bh < B * H; ++bh) {
    auto& ck = cache_k[bh];
    auto& cv = cache_v[bh];
    ck.insert(ck.end(), k + bh * dk, k + (bh + 1) * dk);
    cv.insert(cv.end(), lv + bh * dv, lv + (bh + 1) * dv);
    const int64_t n = static_cast<int64_t>(ck.size()) / dk;
    std::vector<double> logw(n);
    double mx = -INFINITY;
    for (int64_t j = 0; j < n; ++j) {
      double d = 0;
      for (int64_t i = 0; i < dk; ++i) d += double(q[bh * dk + i]) * ck[j * dk + i];
      logw[j] = d * scale;
      mx = std::max(mx, logw[j]);
    }
    double z = 0;
    for (int64_t j = 0; j < n; ++j) z += std::exp(logw[j] - mx);
    const double log_z = mx + std::log(z);
    for (int64_t c = 0; c < dv; ++c)
      logy[bh * dv + c] =
          static_cast<float>(log_weighted_sum(n, logw.data(), cv.data() + c, dv) - log_z);
  }
}

}  // namespace logattn::ops
