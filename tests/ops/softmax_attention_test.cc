// The conventional twin's attention against a float64 oracle: outputs, and gradients
// against central finite differences of the oracle.
#include "ops/softmax_attention.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <tuple>
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

constexpr double kU = 0x1p-24;  // float32's unit roundoff

// The error bound of a float32 log-output (docs/design.md section 6) for row t: the scores
// s_tj = q_t . k_j / sqrt(dk) are dot products of dk terms, off by (dk + 1) u Q_t with Q_t =
// max_j sum_i |q_ti k_ji| / sqrt(dk); the softmax's exp(s - max) rounds its argument by u
// times <= 2 Q_t, and its normaliser and the weighted sum of exp(log v - column maximum)
// (arguments off by u times <= 2 L, L = max finite |log v|) add t + 1 positive terms each,
// <= (t + 1) u relative in any order; every error of a positive sum is relative, and the
// final log and + maximum turn it absolute, with u (|y| + 1) of their own:
//   |y - ref| <= (2 (dk + 1) Q_t + 4 Q_t + 4 L + 2 (t + 1) + 8 + |ref|) u.
double row_bound_c(int64_t t, int64_t dk, int64_t dv, const std::vector<double>& q,
                   const std::vector<double>& k, const std::vector<double>& lv) {
  double qk = 0.0, l = 0.0;
  for (int64_t j = 0; j <= t; ++j) {
    double a = 0.0;
    for (int64_t i = 0; i < dk; ++i) a += std::abs(q[t * dk + i] * k[j * dk + i]);
    qk = std::max(qk, a / std::sqrt(double(dk)));
    for (int64_t c = 0; c < dv; ++c)
      if (std::isfinite(lv[j * dv + c])) l = std::max(l, std::abs(lv[j * dv + c]));
  }
  return 2 * (dk + 1) * qk + 4 * qk + 4 * l + 2 * (t + 1) + 8;
}

// y [H, T, dv] against the oracle, head by head: exactly -inf where the oracle is, else
// within the bound above.
void expect_oracle(int64_t H, int64_t T, int64_t dk, int64_t dv, const std::vector<float>& q,
                   const std::vector<float>& k, const std::vector<float>& lv,
                   const std::vector<float>& y, const std::string& what) {
  for (int64_t h = 0; h < H; ++h) {
    auto cut = [&](const std::vector<float>& x, int64_t d) {
      return std::vector<double>(x.begin() + h * T * d, x.begin() + (h + 1) * T * d);
    };
    const auto qh = cut(q, dk), kh = cut(k, dk), lh = cut(lv, dv);
    const auto ref = oracle(T, dk, dv, qh, kh, lh);
    for (int64_t i = 0; i < T * dv; ++i) {
      if (ref[i] == -INFINITY) {
        ASSERT_EQ(y[h * T * dv + i], -INFINITY) << what << " head " << h << " " << i;
        continue;
      }
      const double tol = (row_bound_c(i / dv, dk, dv, qh, kh, lh) + std::abs(ref[i])) * kU;
      ASSERT_NEAR(y[h * T * dv + i], ref[i], tol)
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
    ASSERT_NO_FATAL_FAILURE(
        expect_oracle(2, T, dk, dv, q, k, lv, y, "spread " + std::to_string(spread)));
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
    ASSERT_NO_FATAL_FAILURE(
        expect_oracle(H, T, dk, dv, q, k, lv, y, "spread " + std::to_string(spread)));
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
  // Magnitudes of the terms each gradient adds (float64): with a_tjc = p_tj v_jc / Y_tc (the
  // share of key j in output (t, c)), dlv_jc = sum_t g_tc a_tjc and ds_tj = sum_c g_tc
  // (a_tjc - p_tj), so dq_ti = sum_j ds_tj k_ji / sqrt(dk) and dk_ji = sum_t ds_tj q_ti /
  // sqrt(dk). A float32 backward rounds each term's factors like the forward (its bound's c,
  // the largest over rows, relative) and adds T + dk terms more: per element
  //   |g - fd| <= (c + 2 T + 2 dk) u mag + the difference's own error,
  // the latter estimated from D(2h) - D(h) = 3 C h^2 (truncation) plus 8 u64 sum |g y| / h
  // (the rounding of the float64 losses it divides).
  const double rdk = std::sqrt(double(dk));
  std::vector<double> mq(T * dk, 0.0), mk(T * dk, 0.0), ml(T * dv, 0.0);
  double c_max = 0.0;
  for (int64_t t = 0; t < T; ++t) {
    c_max = std::max(c_max, row_bound_c(t, dk, dv, qd, kd, ld));
    std::vector<double> sc(t + 1);
    double mx = -INFINITY, z = 0.0;
    for (int64_t j = 0; j <= t; ++j) {
      double d = 0;
      for (int64_t i = 0; i < dk; ++i) d += qd[t * dk + i] * kd[j * dk + i];
      sc[j] = d / rdk;
      mx = std::max(mx, sc[j]);
    }
    for (auto& e : sc) z += (e = std::exp(e - mx));
    std::vector<double> yt(dv, 0.0);
    for (int64_t c = 0; c < dv; ++c)
      for (int64_t j = 0; j <= t; ++j) yt[c] += sc[j] / z * std::exp(ld[j * dv + c]);
    for (int64_t j = 0; j <= t; ++j) {
      const double pj = sc[j] / z;
      double ds = 0.0;
      for (int64_t c = 0; c < dv; ++c) {
        const double a = pj * std::exp(ld[j * dv + c]) / yt[c];
        ml[j * dv + c] += std::abs(g[t * dv + c]) * a;
        ds += std::abs(g[t * dv + c]) * (a + pj);
      }
      for (int64_t i = 0; i < dk; ++i) {
        mq[t * dk + i] += ds * std::abs(kd[j * dk + i]) / rdk;
        mk[j * dk + i] += ds * std::abs(qd[t * dk + i]) / rdk;
      }
    }
  }
  const auto y0 = oracle(T, dk, dv, qd, kd, ld);
  double scale = 1.0;
  for (int64_t i = 0; i < T * dv; ++i) scale += std::abs(g[i] * y0[i]);
  const double u64 = 0x1p-53;
  for (auto [x, grad, mag, name] :
       {std::tuple{&qd, &gq, &mq, "q"}, {&kd, &gk, &mk, "k"}, {&ld, &glv, &ml, "log_v"}}) {
    for (size_t i = 0; i < x->size(); ++i) {
      auto diff = [&](double h) {
        const double x0 = (*x)[i];
        (*x)[i] = x0 + h;
        const double lp = loss();
        (*x)[i] = x0 - h;
        const double lm = loss();
        (*x)[i] = x0;
        return (lp - lm) / (2 * h);
      };
      const double h = 1e-5, d1 = diff(h), d2 = diff(2 * h);
      const double tol = (c_max + 2 * T + 2 * dk) * kU * (*mag)[i] + 2 * std::abs(d2 - d1) / 3 +
                         8 * u64 * scale / h;
      EXPECT_NEAR((*grad)[i], d1, tol) << name << "[" << i << "]";
    }
  }
}

}  // namespace
}  // namespace logattn::ops
