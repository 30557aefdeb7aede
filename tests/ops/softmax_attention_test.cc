// The conventional twin's attention against a float64 oracle: outputs, and gradients
// against central finite differences of the oracle.
#include "ops/softmax_attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace logattn::ops {
namespace {

// One head: log( softmax_causal(q k^T / sqrt(dk)) exp(lv) ), in float64.
std::vector<double> oracle(int64_t T, int64_t dk, int64_t dv, const std::vector<double>& q,
                           const std::vector<double>& k, const std::vector<double>& lv) {
  std::vector<double> y(T * dv);
  for (int64_t t = 0; t < T; ++t) {
    std::vector<double> s(t + 1);
    double mx = -INFINITY;
    for (int64_t j = 0; j <= t; ++j) {
      double d = 0;
      for (int64_t i = 0; i < dk; ++i) d += q[t * dk + i] * k[j * dk + i];
      s[j] = d / std::sqrt(double(dk));
      mx = std::max(mx, s[j]);
    }
    double z = 0;
    for (auto& e : s) z += (e = std::exp(e - mx));
    for (int64_t c = 0; c < dv; ++c) {
      double m2 = -INFINITY;
      for (int64_t j = 0; j <= t; ++j) m2 = std::max(m2, std::log(s[j] / z) + lv[j * dv + c]);
      double acc = 0;
      if (m2 != -INFINITY)
        for (int64_t j = 0; j <= t; ++j) acc += std::exp(std::log(s[j] / z) + lv[j * dv + c] - m2);
      y[t * dv + c] = m2 == -INFINITY ? m2 : m2 + std::log(acc);
    }
  }
  return y;
}

std::vector<float> randn(int64_t n, uint64_t seed, float scale) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> x(n);
  for (auto& e : x) e = d(rng);
  return x;
}

// y [H, T, dv] against the oracle, head by head: exactly -inf where the oracle is, else
// within tol(reference).
template <typename Tol>
void expect_oracle(int64_t H, int64_t T, int64_t dk, int64_t dv, const std::vector<float>& q,
                   const std::vector<float>& k, const std::vector<float>& lv,
                   const std::vector<float>& y, Tol tol, const std::string& what) {
  for (int64_t h = 0; h < H; ++h) {
    auto cut = [&](const std::vector<float>& x, int64_t d) {
      return std::vector<double>(x.begin() + h * T * d, x.begin() + (h + 1) * T * d);
    };
    const auto ref = oracle(T, dk, dv, cut(q, dk), cut(k, dk), cut(lv, dv));
    for (int64_t i = 0; i < T * dv; ++i) {
      if (ref[i] == -INFINITY) {
        ASSERT_EQ(y[h * T * dv + i], -INFINITY) << what << " head " << h << " " << i;
        continue;
      }
      ASSERT_NEAR(y[h * T * dv + i], ref[i], tol(ref[i]))
          << what << " head " << h << " token " << i / dv << " column " << i % dv;
    }
  }
}

TEST(SoftmaxAttention, MatchesTheFloat64Oracle) {
  const int64_t T = 40, dk = 8, dv = 5;
  for (float spread : {1.f, 20.f}) {
    auto q = randn(2 * T * dk, 1, 1.f), k = randn(2 * T * dk, 2, 1.f),
         lv = randn(2 * T * dv, 3, spread);
    lv[7] = -INFINITY;
    // A column whose first values are all 0 (log -inf) while later ones are not: early
    // outputs are exactly -inf.
    for (int64_t t = 0; t < 10; ++t) lv[t * dv + 2] = -INFINITY;
    std::vector<float> y(2 * T * dv), p(2 * T * T);
    softmax_attention_forward(1, 2, T, dk, dv, q.data(), k.data(), lv.data(), y.data(), p.data());
    ASSERT_NO_FATAL_FAILURE(expect_oracle(
        2, T, dk, dv, q, k, lv, y, [](double) { return 1e-4; },
        "spread " + std::to_string(spread)));
  }
}

// The generation path: a key/value cache extended in pieces of random sizes (1 = the step)
// gives the oracle's outputs, with column maxima that grow later (rescaling the cache),
// columns that start at -inf, and spreads that underflow float32.
TEST(SoftmaxAttention, CacheExtendedInPiecesMatchesTheOracle) {
  const int64_t T = 60, dk = 8, dv = 6, H = 2;
  std::mt19937_64 rng(5);
  for (float spread : {1.f, 20.f, 60.f}) {
    auto q = randn(H * T * dk, 11, 1.f), k = randn(H * T * dk, 12, 2.f),
         lv = randn(H * T * dv, 13, spread);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t) {
        float* row = lv.data() + (h * T + t) * dv;
        row[0] = 0.5f * static_cast<float>(t);  // a maximum that grows at every token
        if (t < 25) row[1] = -INFINITY;         // -inf first, finite later
        if (t % 7 == 3) row[2] = -INFINITY;
      }
    std::vector<SoftmaxCache> caches(H);
    std::vector<float> y(H * T * dv);
    for (int64_t t0 = 0; t0 < T;) {
      const int64_t n = std::min<int64_t>(T - t0, 1 + static_cast<int64_t>(rng() % 9));
      std::vector<float> qp(H * n * dk), kp(H * n * dk), lp(H * n * dv), yp(H * n * dv);
      for (int64_t h = 0; h < H; ++h) {
        std::copy_n(q.begin() + (h * T + t0) * dk, n * dk, qp.begin() + h * n * dk);
        std::copy_n(k.begin() + (h * T + t0) * dk, n * dk, kp.begin() + h * n * dk);
        std::copy_n(lv.begin() + (h * T + t0) * dv, n * dv, lp.begin() + h * n * dv);
      }
      softmax_attention_extend(1, H, n, dk, dv, qp.data(), kp.data(), lp.data(), yp.data(),
                               caches.data());
      for (int64_t h = 0; h < H; ++h)
        std::copy_n(yp.begin() + h * n * dv, n * dv, y.begin() + (h * T + t0) * dv);
      t0 += n;
    }
    ASSERT_NO_FATAL_FAILURE(expect_oracle(
        H, T, dk, dv, q, k, lv, y, [](double ref) { return 1e-4 * std::max(1.0, std::abs(ref)); },
        "spread " + std::to_string(spread)));
    EXPECT_EQ(caches[0].n, T);
  }
}

TEST(SoftmaxAttention, GradientsMatchFiniteDifferences) {
  const int64_t T = 12, dk = 4, dv = 3;
  auto q = randn(T * dk, 4, 1.f), k = randn(T * dk, 5, 1.f), lv = randn(T * dv, 6, 2.f),
       g = randn(T * dv, 7, 1.f);
  std::vector<float> y(T * dv), p(T * T), gq(T * dk), gk(T * dk), glv(T * dv);
  softmax_attention_forward(1, 1, T, dk, dv, q.data(), k.data(), lv.data(), y.data(), p.data());
  softmax_attention_backward(1, 1, T, dk, dv, q.data(), k.data(), lv.data(), y.data(), p.data(),
                             g.data(), gq.data(), gk.data(), glv.data());
  std::vector<double> qd(q.begin(), q.end()), kd(k.begin(), k.end()), ld(lv.begin(), lv.end());
  auto loss = [&] {
    const auto out = oracle(T, dk, dv, qd, kd, ld);
    double s = 0;
    for (int64_t i = 0; i < T * dv; ++i) s += g[i] * out[i];
    return s;
  };
  for (auto [x, grad] : {std::pair{&qd, &gq}, {&kd, &gk}, {&ld, &glv}}) {
    double num = 0, den = 0;
    for (size_t i = 0; i < x->size(); ++i) {
      const double x0 = (*x)[i], h = 1e-6;
      (*x)[i] = x0 + h;
      const double lp = loss();
      (*x)[i] = x0 - h;
      const double lm = loss();
      (*x)[i] = x0;
      const double fd = (lp - lm) / (2 * h);
      num += ((*grad)[i] - fd) * ((*grad)[i] - fd);
      den += fd * fd;
    }
    EXPECT_LE(std::sqrt(num / den), 1e-4);
  }
}

}  // namespace
}  // namespace logattn::ops
