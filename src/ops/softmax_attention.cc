#include "ops/softmax_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "ops/matmul.h"
#include "simd/vexp.h"
#include "threading/parallel.h"
#include "threading/partner.h"

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

namespace {

// One head: q, k [T, dk], lv [T, dv] -> logy [T, dv]; s: scratch.
void extend_head(int64_t T, int64_t dk, int64_t dv, float scale, const float* q, const float* k,
                 const float* lv, float* logy, SoftmaxCache& cache, std::vector<float>& s) {
  const int64_t n0 = cache.n, n = n0 + T;
  if (cache.c.empty()) cache.c.assign(dv, kNegInf);
  cache.k.insert(cache.k.end(), k, k + T * dk);
  cache.lv.insert(cache.lv.end(), lv, lv + T * dv);
  cache.vc.resize(n * dv);
  // A column whose maximum grows rescales its cached values.
  for (int64_t j = 0; j < dv; ++j) {
    float c = cache.c[j];
    for (int64_t t = 0; t < T; ++t) c = std::max(c, lv[t * dv + j]);
    if (c > cache.c[j] && cache.c[j] != kNegInf) {
      const float f = std::exp(cache.c[j] - c);
      for (int64_t i = 0; i < n0; ++i) cache.vc[i * dv + j] *= f;
    }
    cache.c[j] = c;
  }
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < dv; ++j)
      cache.vc[(n0 + t) * dv + j] =
          cache.c[j] == kNegInf ? 0.f : std::exp(lv[t * dv + j] - cache.c[j]);
  cache.n = n;
  // Scores against every cached key; query t sees keys [0, n0 + t].
  s.resize(T * n);
  gemm(false, true, T, n, dk, scale, q, dk, cache.k.data(), dk, 0.f, s.data(), n);
  for (int64_t t = 0; t < T; ++t) {
    float* row = s.data() + t * n;
    const int64_t seen = n0 + t + 1;
    float mx = kNegInf;
    for (int64_t i = 0; i < seen; ++i) mx = std::max(mx, row[i]);
    for (int64_t i = 0; i < seen; ++i) row[i] -= mx;
    simd::exp(row, row, seen);
    float z = 0.f;
    for (int64_t i = 0; i < seen; ++i) z += row[i];
    std::fill(row + seen, row + n, 0.f);
    for (int64_t i = 0; i < seen; ++i) row[i] /= z;
  }
  gemm(false, false, T, dv, n, 1.f, s.data(), n, cache.vc.data(), dv, 0.f, logy, dv);
  // The float64 scores of a row and their log-normaliser, made once for the row's first
  // underflowing column.
  std::vector<double> logw;
  double log_z = 0;
  int64_t logw_row = -1;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < dv; ++j) {
      float& y = logy[t * dv + j];
      if (cache.c[j] == kNegInf) {
        y = kNegInf;
      } else if (y > 1e-30f) {
        y = cache.c[j] + std::log(y);
      } else {
        // Underflow of the scaled sum: log sum_i softmax_i exp(lv_ij) in float64.
        const int64_t seen = n0 + t + 1;
        if (logw_row != t) {
          logw.resize(seen);
          for (int64_t i = 0; i < seen; ++i) {
            double d = 0;
            for (int64_t e = 0; e < dk; ++e) d += double(q[t * dk + e]) * cache.k[i * dk + e];
            logw[i] = d * scale;
          }
          const double mx = *std::max_element(logw.begin(), logw.end());
          double z = 0;
          for (const double w : logw) z += std::exp(w - mx);
          log_z = mx + std::log(z);
          logw_row = t;
        }
        y = static_cast<float>(log_weighted_sum(seen, logw.data(), cache.lv.data() + j, dv) -
                               log_z);
      }
    }
}

}  // namespace

void softmax_attention_extend(int64_t B, int64_t H, int64_t T, int64_t dk, int64_t dv,
                              const float* q, const float* k, const float* lv, float* logy,
                              SoftmaxCache* caches) {
  const float scale = 1.f / std::sqrt(static_cast<float>(dk));
  const int64_t n = caches[0].n + T;
  auto head = [&](int64_t bh) {
    thread_local std::vector<float> s;
    extend_head(T, dk, dv, scale, q + bh * T * dk, k + bh * T * dk, lv + bh * T * dv,
                logy + bh * T * dv, caches[bh], s);
  };
  if (T == 1 && B * H > 1 && partner_available()) {
    // A generation step: heads split with the partner thread that the step's matrix-vector
    // products use (an OpenMP region would wait for the core it spins on).
    run_blocks(B * H, head);
    return;
  }
  parallel_for(B * H, B * H * T * n * (dk + dv), head);
}

}  // namespace logattn::ops
