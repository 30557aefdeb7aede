#include "ops/layernorm.h"

#include <algorithm>
#include <cmath>

#include "threading/parallel.h"

namespace logattn::ops {

void layernorm_forward(int64_t n, int64_t d, const float* x, const float* w, const float* b,
                       float* y, float* mean, float* rstd) {
  parallel_for(n, n * d, [&](int64_t i) {
    const float* xi = x + i * d;
    double s = 0.0;  // per-row statistics in double: cheap, and no cancellation in the variance
    for (int64_t j = 0; j < d; ++j) s += xi[j];
    const double mu = s / d;
    double v = 0.0;
    for (int64_t j = 0; j < d; ++j) v += (xi[j] - mu) * (xi[j] - mu);
    const float r = static_cast<float>(1.0 / std::sqrt(v / d + kLayerNormEps));
    const float m = static_cast<float>(mu);
    float* yi = y + i * d;
    for (int64_t j = 0; j < d; ++j) yi[j] = (xi[j] - m) * r * w[j] + b[j];
    mean[i] = m;
    rstd[i] = r;
  });
}

void layernorm_backward(int64_t n, int64_t d, const float* x, const float* w, const float* mean,
                        const float* rstd, const float* dy, float* dx, float* dw, float* db,
                        bool accumulate) {
  parallel_for(n, n * d, [&](int64_t i) {
    const float* xi = x + i * d;
    const float* gi = dy + i * d;
    float* dxi = dx + i * d;
    const float m = mean[i], r = rstd[i];
    float s1 = 0.f, s2 = 0.f;  // mean of dxhat and of dxhat * xhat
    for (int64_t j = 0; j < d; ++j) {
      const float dxhat = gi[j] * w[j];
      s1 += dxhat;
      s2 += dxhat * (xi[j] - m) * r;
    }
    s1 /= static_cast<float>(d);
    s2 /= static_cast<float>(d);
    for (int64_t j = 0; j < d; ++j) {
      const float xhat = (xi[j] - m) * r;
      const float v = r * (gi[j] * w[j] - s1 - xhat * s2);
      dxi[j] = accumulate ? dxi[j] + v : v;
    }
  });
  // Parameter gradients: blocks of columns in parallel, rows in order (contiguous reads,
  // the same bits for any thread count).
  constexpr int64_t kBlock = 64;
  parallel_for((d + kBlock - 1) / kBlock, n * d, [&](int64_t blk) {
    const int64_t j0 = blk * kBlock, j1 = std::min(d, j0 + kBlock);
    float sw[kBlock] = {}, sb[kBlock] = {};
    for (int64_t i = 0; i < n; ++i) {
      const float m = mean[i], r = rstd[i];
      for (int64_t j = j0; j < j1; ++j) {
        const float g = dy[i * d + j];
        sw[j - j0] += g * (x[i * d + j] - m) * r;
        sb[j - j0] += g;
      }
    }
    for (int64_t j = j0; j < j1; ++j) {
      dw[j] += sw[j - j0];
      db[j] += sb[j - j0];
    }
  });
}

}  // namespace logattn::ops
