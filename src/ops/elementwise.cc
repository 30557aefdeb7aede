#include "ops/elementwise.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "ops/matmul.h"
#include "simd/vexp.h"
#include "threading/parallel.h"

namespace logattn::ops {

namespace {
float sigmoid(float x) {
  return 1.f / (1.f + std::exp(-x));
}
// log(sigmoid(x)) without overflow: -softplus(-x).
float log_sigmoid(float x) {
  return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x));
}
}  // namespace

void column_sums(int64_t n, int64_t d, const float* x, float* sums) {
  // Blocks of columns in parallel, rows in order inside a block: contiguous reads, and the
  // same bits for any thread count.
  constexpr int64_t kBlock = 64;
  parallel_for((d + kBlock - 1) / kBlock, n * d, [&](int64_t blk) {
    const int64_t j0 = blk * kBlock, j1 = std::min(d, j0 + kBlock);
    float acc[kBlock] = {};
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = j0; j < j1; ++j) acc[j - j0] += x[i * d + j];
    for (int64_t j = j0; j < j1; ++j) sums[j] += acc[j - j0];
  });
}

void linear_forward(int64_t n, int64_t in, int64_t out, const float* x, const float* w,
                    const float* b, float* y) {
  gemm(false, true, n, out, in, 1.f, x, in, w, in, 0.f, y, out);
  if (b) add_bias(n, out, b, y);
}

void add_bias(int64_t n, int64_t out, const float* b, float* y) {
  parallel_for(n, n * out, [&](int64_t i) {
    for (int64_t j = 0; j < out; ++j) y[i * out + j] += b[j];
  });
}

void linear_backward(int64_t n, int64_t in, int64_t out, const float* x, const float* w,
                     const float* dy, float* dx, float* dw, float* db, bool accumulate) {
  if (dx) gemm(false, false, n, in, out, 1.f, dy, out, w, in, accumulate ? 1.f : 0.f, dx, in);
  gemm(true, false, out, in, n, 1.f, dy, out, x, in, 1.f, dw, in);
  if (db) column_sums(n, out, dy, db);
}

void glu_forward(int64_t n, int64_t d, const float* g, float* y) {
  parallel_for(n, n * d, [&](int64_t i) {
    // y = a sigmoid(b) = a / (1 + exp(-b)), the exps vectorised.
    float* yi = y + i * d;
    const float *a = g + i * 2 * d, *b = a + d;
    for (int64_t j = 0; j < d; ++j) yi[j] = -b[j];
    simd::exp(yi, yi, d);
    for (int64_t j = 0; j < d; ++j) yi[j] = a[j] / (1.f + yi[j]);
  });
}

void glu_backward(int64_t n, int64_t d, const float* g, const float* dy, float* dg) {
  parallel_for(n, n * d, [&](int64_t i) {
    for (int64_t j = 0; j < d; ++j) {
      const float a = g[i * 2 * d + j], s = sigmoid(g[i * 2 * d + d + j]), gy = dy[i * d + j];
      dg[i * 2 * d + j] = gy * s;
      dg[i * 2 * d + d + j] = gy * a * s * (1.f - s);
    }
  });
}

double cross_entropy(int64_t n, int64_t v, const float* logits, const int32_t* targets,
                     float* dlogits, float scale) {
  std::vector<double> row_loss(n);
  parallel_for(n, n * v, [&](int64_t i) {
    const float* li = logits + i * v;
    float mx = -INFINITY;
    for (int64_t j = 0; j < v; ++j) mx = std::max(mx, li[j]);
    double sum = 0.0;
    for (int64_t j = 0; j < v; ++j) sum += std::exp(double(li[j]) - mx);
    const double lse = mx + std::log(sum);
    row_loss[i] = lse - li[targets[i]];
    if (dlogits) {
      float* di = dlogits + i * v;
      for (int64_t j = 0; j < v; ++j)
        di[j] = static_cast<float>(std::exp(double(li[j]) - lse)) * scale;
      di[targets[i]] -= scale;
    }
  });
  double total = 0.0;  // in order: the same bits for any thread count
  for (double l : row_loss) total += l;
  return total / static_cast<double>(n);
}

void log_recurrence_forward(int64_t batch, int64_t n, int64_t d, const float* ul, const float* h0,
                            float* h) {
  // Blocks of columns in parallel, tokens in order inside a block, vector math across the
  // block's columns (a one-token step is 2 d exps and logs: scalar libm calls cost more than
  // the rest of the recurrence).
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (d + kBlock - 1) / kBlock;
  parallel_for(batch * blocks, batch * n * d, [&](int64_t bb) {
    const int64_t b = bb / blocks, j0 = bb % blocks * kBlock, w = std::min(kBlock, d - j0);
    float prev[kBlock], x[kBlock], e[kBlock];
    for (int64_t j = 0; j < w; ++j) prev[j] = h0 ? h0[b * d + j0 + j] : 0.f;
    for (int64_t t = 0; t < n; ++t) {
      const float* u = ul + (b * n + t) * 2 * d + j0;
      const float* l = u + d;
      // log sigmoid(u) = min(u, 0) - log1p(exp(-|u|)), then h = logaddexp(that + prev, l).
      for (int64_t j = 0; j < w; ++j) e[j] = -std::abs(u[j]);
      simd::exp(e, e, w);
      simd::log1p(e, e, w);
      for (int64_t j = 0; j < w; ++j) {
        x[j] = std::min(u[j], 0.f) - e[j] + prev[j];
        e[j] = -std::abs(x[j] - l[j]);
      }
      simd::exp(e, e, w);
      simd::log1p(e, e, w);
      float* ht = h + (b * n + t) * d + j0;
      for (int64_t j = 0; j < w; ++j) {
        const float m = std::max(x[j], l[j]);
        prev[j] = ht[j] = m == -INFINITY ? m : m + e[j];
      }
    }
  });
}

void log_recurrence_backward(int64_t batch, int64_t n, int64_t d, const float* ul, const float* h0,
                             const float* h, const float* dh, float* dul) {
  // With h_t = log(a_t e^{h_{t-1}} + e^{l_t}): dh_t/dh_{t-1} = dh_t/d(log a_t) =
  // exp(log a_t + h_{t-1} - h_t), dh_t/dl_t = exp(l_t - h_t); d(log a)/du = sigmoid(-u).
  parallel_for(batch * d, batch * n * d, [&](int64_t bj) {
    const int64_t b = bj / d, j = bj % d;
    float carry = 0.f;  // dL/dh_t through later tokens
    for (int64_t t = n - 1; t >= 0; --t) {
      const int64_t i = b * n + t;
      const float* row = ul + i * 2 * d;
      const float prev = t > 0 ? h[(i - 1) * d + j] : (h0 ? h0[b * d + j] : 0.f);
      const float ht = h[i * d + j];
      const float g = dh[i * d + j] + carry;
      const float u = row[j];
      const float alpha = std::exp(log_sigmoid(u) + prev - ht);
      const float beta = std::exp(row[d + j] - ht);
      dul[i * 2 * d + j] = g * alpha * sigmoid(-u);
      dul[i * 2 * d + d + j] = g * beta;
      carry = g * alpha;
    }
  });
}

}  // namespace logattn::ops
