// The model's row-wise operations: backward kernels against central finite differences of
// float64 forwards written plainly here.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <vector>

#include "ops/elementwise.h"
#include "ops/layernorm.h"

namespace logattn::ops {
namespace {

std::vector<float> randn(int64_t n, uint64_t seed, float scale = 1.f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> x(n);
  for (auto& e : x) e = d(rng);
  return x;
}

constexpr double kU = 0x1p-24;    // float32's unit roundoff
constexpr double kU64 = 0x1p-53;  // float64's

// d/dx of sum(w * f(x)) by central differences in float64, with each difference's own error:
// D(h) = f' + C h^2 + ..., so the truncation is about |D(2h) - D(h)| / 3 (taken twice), and
// the float64 sums it differences are off by a few u64 of sum |w f|, divided by 2h.
struct NumericGrad {
  std::vector<double> g, err;
};
NumericGrad numeric_grad(const std::vector<float>& x, const std::vector<float>& w,
                         const std::function<std::vector<double>(const std::vector<double>&)>& f) {
  std::vector<double> xd(x.begin(), x.end());
  NumericGrad out;
  out.g.resize(x.size());
  out.err.resize(x.size());
  double scale = 1.0;
  const auto y0 = f(xd);
  for (size_t j = 0; j < y0.size(); ++j) scale += std::abs(w[j] * y0[j]);
  const double h = 1e-5;
  auto diff = [&](size_t i, double step) {
    const double x0 = xd[i];
    xd[i] = x0 + step;
    const auto yp = f(xd);
    xd[i] = x0 - step;
    const auto ym = f(xd);
    xd[i] = x0;
    double s = 0;
    for (size_t j = 0; j < yp.size(); ++j) s += w[j] * (yp[j] - ym[j]);
    return s / (2 * step);
  };
  for (size_t i = 0; i < x.size(); ++i) {
    const double d1 = diff(i, h), d2 = diff(i, 2 * h);
    out.g[i] = d1;
    out.err[i] = 2 * std::abs(d2 - d1) / 3 + 8 * kU64 * scale / h;
  }
  return out;
}

// Per element: |got - want| <= c u mag + the difference's own error, mag being the sum of
// the magnitudes of the terms that the float32 kernel adds for that element.
void expect_within(const float* got, const NumericGrad& want, const std::vector<double>& mag,
                   double c, const char* what) {
  for (size_t i = 0; i < want.g.size(); ++i)
    EXPECT_NEAR(got[i], want.g[i], c * kU * mag[i] + want.err[i]) << what << "[" << i << "]";
}

TEST(LayerNorm, BackwardMatchesFiniteDifferences) {
  const int64_t n = 5, d = 12;
  auto x = randn(n * d, 1, 2.f), w = randn(d, 2), b = randn(d, 3), gy = randn(n * d, 4);
  for (auto& e : x) e += 3.f;  // an offset, as residual streams have
  auto f = [&](const std::vector<double>& xs, const std::vector<double>& ws,
               const std::vector<double>& bs) {
    std::vector<double> y(n * d);
    for (int64_t i = 0; i < n; ++i) {
      double mu = 0, var = 0;
      for (int64_t j = 0; j < d; ++j) mu += xs[i * d + j] / d;
      for (int64_t j = 0; j < d; ++j) var += (xs[i * d + j] - mu) * (xs[i * d + j] - mu) / d;
      for (int64_t j = 0; j < d; ++j)
        y[i * d + j] = (xs[i * d + j] - mu) / std::sqrt(var + 1e-5) * ws[j] + bs[j];
    }
    return y;
  };
  std::vector<double> wd(w.begin(), w.end()), bd(b.begin(), b.end()), xd(x.begin(), x.end());
  std::vector<float> y(n * d), mean(n), rstd(n), dx(n * d), dw(d, 0.f), db(d, 0.f);
  layernorm_forward(n, d, x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data());
  const auto yref = f(xd, wd, bd);
  // Bound: the mean of d values of magnitude <= M (the row's max |x|) is off by d u M, and
  // x - mean by that plus u M; scaled by rstd, the normalised xh is off by e = (2 d + 2) u M
  // rstd (the offset of 3 makes M rstd, not 1, the scale of that error); the variance, a
  // mean of d squares of x - mean, is then off by 2 e sqrt(d) + (d + 2) u relative, half of
  // which reaches rstd (plus 2 u for the square root and division), times |xh| <= sqrt(d).
  // y = xh w + b adds u (|y| + |b|).
  std::vector<double> xh_err(n), xh(n * d);
  for (int64_t i = 0; i < n; ++i) {
    double m = 0, mu = 0, var = 0;
    for (int64_t j = 0; j < d; ++j)
      m = std::max(m, std::abs(xd[i * d + j])), mu += xd[i * d + j] / d;
    for (int64_t j = 0; j < d; ++j) var += (xd[i * d + j] - mu) * (xd[i * d + j] - mu) / d;
    const double r = 1 / std::sqrt(var + 1e-5);
    for (int64_t j = 0; j < d; ++j) xh[i * d + j] = (xd[i * d + j] - mu) * r;
    const double e = (2 * d + 2) * kU * m * r;
    xh_err[i] = e + std::sqrt(double(d)) * (e * std::sqrt(double(d)) + (d + 6) * kU);
  }
  for (int64_t i = 0; i < n * d; ++i)
    EXPECT_NEAR(
        y[i], yref[i],
        std::abs(wd[i % d]) * xh_err[i / d] + kU * (std::abs(yref[i]) + std::abs(bd[i % d])));
  layernorm_backward(n, d, x.data(), w.data(), mean.data(), rstd.data(), gy.data(), dx.data(),
                     dw.data(), db.data(), false);
  // Backward: dx = rstd (w gy - mean(w gy) - xh mean(w gy xh)), dw = sum gy xh, db = sum gy.
  // Each term is off by the relative error of xh (xh_err / |xh|, at most xh_err per unit of
  // xh) and a few u per product; sums over d (dx) or n (dw, db) add d or n u of the terms.
  std::vector<double> mdx(n * d), mdw(d, 0.0), mdb(d, 0.0);
  double c_rows = 0;
  for (int64_t i = 0; i < n; ++i) {
    double m = 0, a = 0, b2 = 0, r = 0;
    for (int64_t j = 0; j < d; ++j) m = std::max(m, std::abs(xd[i * d + j]));
    for (int64_t j = 0; j < d; ++j) a += std::abs(wd[j] * gy[i * d + j]) / d;
    for (int64_t j = 0; j < d; ++j) b2 += std::abs(wd[j] * gy[i * d + j] * xh[i * d + j]) / d;
    for (int64_t j = 0; j < d; ++j) r = std::max(r, std::abs(xh[i * d + j]));
    c_rows = std::max(c_rows, 2 * xh_err[i] / kU + 2 * d + 10);
    const double rs = 1 / std::sqrt([&] {
                        double mu = 0, var = 0;
                        for (int64_t j = 0; j < d; ++j) mu += xd[i * d + j] / d;
                        for (int64_t j = 0; j < d; ++j)
                          var += (xd[i * d + j] - mu) * (xd[i * d + j] - mu) / d;
                        return var + 1e-5;
                      }());
    for (int64_t j = 0; j < d; ++j) {
      mdx[i * d + j] =
          rs * (std::abs(wd[j] * gy[i * d + j]) + a + (std::abs(xh[i * d + j]) + 1) * b2 + a * r);
      mdw[j] += std::abs(gy[i * d + j]) * (std::abs(xh[i * d + j]) + 1);
      mdb[j] += std::abs(gy[i * d + j]);
    }
  }
  expect_within(dx.data(), numeric_grad(x, gy, [&](const auto& xs) { return f(xs, wd, bd); }), mdx,
                c_rows, "dx");
  expect_within(dw.data(), numeric_grad(w, gy, [&](const auto& ws) { return f(xd, ws, bd); }), mdw,
                c_rows + n, "dw");
  expect_within(db.data(), numeric_grad(b, gy, [&](const auto& bs) { return f(xd, wd, bs); }), mdb,
                n + 2, "db");
}

TEST(Linear, BackwardMatchesFiniteDifferences) {
  const int64_t n = 4, in = 6, out = 5;
  auto x = randn(n * in, 1), w = randn(out * in, 2), b = randn(out, 3), gy = randn(n * out, 4);
  auto f = [&](const std::vector<double>& xs, const std::vector<double>& ws) {
    std::vector<double> y(n * out);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t o = 0; o < out; ++o) {
        double s = b[o];
        for (int64_t k = 0; k < in; ++k) s += xs[i * in + k] * ws[o * in + k];
        y[i * out + o] = s;
      }
    return y;
  };
  std::vector<double> xd(x.begin(), x.end()), wd(w.begin(), w.end());
  std::vector<float> y(n * out), dx(n * in), dw(out * in, 0.f), db(out, 0.f);
  linear_forward(n, in, out, x.data(), w.data(), b.data(), y.data());
  const auto yref = f(xd, wd);
  // A sum of `in` products and the bias, in any order: <= (in + 1) u of its terms' magnitudes.
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < out; ++o) {
      double mag = std::abs(b[o]);
      for (int64_t k = 0; k < in; ++k) mag += std::abs(xd[i * in + k] * wd[o * in + k]);
      EXPECT_NEAR(y[i * out + o], yref[i * out + o], (in + 1) * kU * mag);
    }
  linear_backward(n, in, out, x.data(), w.data(), gy.data(), dx.data(), dw.data(), db.data(),
                  false);
  // dx = gy W (sums of `out` products), dw = gy^T x (of n), db = sum gy (of n).
  std::vector<double> mdx(n * in, 0.0), mdw(out * in, 0.0), mdb(out, 0.0), dbref(out, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < out; ++o) {
      dbref[o] += gy[i * out + o];
      mdb[o] += std::abs(gy[i * out + o]);
      for (int64_t k = 0; k < in; ++k) {
        mdx[i * in + k] += std::abs(gy[i * out + o] * wd[o * in + k]);
        mdw[o * in + k] += std::abs(gy[i * out + o] * xd[i * in + k]);
      }
    }
  expect_within(dx.data(), numeric_grad(x, gy, [&](const auto& xs) { return f(xs, wd); }), mdx,
                out + 1, "dx");
  expect_within(dw.data(), numeric_grad(w, gy, [&](const auto& ws) { return f(xd, ws); }), mdw,
                n + 1, "dw");
  for (int64_t o = 0; o < out; ++o) EXPECT_NEAR(db[o], dbref[o], n * kU * mdb[o]);
}

TEST(Glu, BackwardMatchesFiniteDifferences) {
  const int64_t n = 3, d = 7;
  auto g = randn(n * 2 * d, 1, 3.f), gy = randn(n * d, 2);
  auto f = [&](const std::vector<double>& gs) {
    std::vector<double> y(n * d);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < d; ++j)
        y[i * d + j] = gs[i * 2 * d + j] / (1 + std::exp(-gs[i * 2 * d + d + j]));
    return y;
  };
  std::vector<float> dg(n * 2 * d);
  glu_backward(n, d, g.data(), gy.data(), dg.data());
  // da = gy s(b), db = gy a s(b) (1 - s(b)): the sigmoid's exp rounds its argument's
  // magnitude times u (|b| u), plus a few u for the exp, the division and each product;
  // 1 - s(b) may be formed by a subtraction, off by u absolute, so db's scale is |gy a| s.
  std::vector<double> mag(n * 2 * d);
  double c = 0;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < d; ++j) {
      const double a = g[i * 2 * d + j], b = g[i * 2 * d + d + j], sg = 1 / (1 + std::exp(-b));
      mag[i * 2 * d + j] = std::abs(gy[i * d + j]) * sg;
      mag[i * 2 * d + d + j] = std::abs(gy[i * d + j] * a) * sg;
      c = std::max(c, 2 * std::abs(b) + 10);
    }
  expect_within(dg.data(), numeric_grad(g, gy, f), mag, c, "dg");
}

TEST(CrossEntropy, LossAndGradient) {
  const int64_t n = 4, v = 9;
  auto logits = randn(n * v, 1, 5.f);
  const std::vector<int32_t> t = {0, 8, 3, 3};
  std::vector<float> dl(n * v);
  const double loss = cross_entropy(n, v, logits.data(), t.data(), dl.data(), 1.f / n);
  auto f = [&](const std::vector<double>& ls) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) {
      double mx = -1e300, z = 0;
      for (int64_t j = 0; j < v; ++j) mx = std::max(mx, ls[i * v + j]);
      for (int64_t j = 0; j < v; ++j) z += std::exp(ls[i * v + j] - mx);
      s += mx + std::log(z) - ls[i * v + t[i]];
    }
    return std::vector<double>{s / n};
  };
  // Per row: exp(l - max) rounds its argument by u |l - max| <= 2 u L (L = max |logit|),
  // the normaliser adds v positive terms (v u relative), its log and the sum with max and
  // the target's logit round by u (|loss_i| + 2 L); the mean of n rows adds n u of them.
  // The gradient (softmax - onehot) / n: 2 u L + (v + 4) u relative to each softmax term.
  double L = 0, sum_abs = 0;
  for (float e : logits) L = std::max(L, double(std::abs(e)));
  const auto want = f(std::vector<double>(logits.begin(), logits.end()))[0];
  sum_abs = std::abs(want) + 2 * L;
  EXPECT_NEAR(loss, want, (2 * L + v + 4 + n) * kU * sum_abs);
  std::vector<double> mag(n * v);
  for (int64_t i = 0; i < n; ++i) {
    double mx = -1e300, z = 0;
    for (int64_t j = 0; j < v; ++j) mx = std::max(mx, double(logits[i * v + j]));
    for (int64_t j = 0; j < v; ++j) z += std::exp(logits[i * v + j] - mx);
    for (int64_t j = 0; j < v; ++j)
      mag[i * v + j] = (std::exp(logits[i * v + j] - mx) / z + (j == t[i])) / n;
  }
  expect_within(dl.data(), numeric_grad(logits, {1.f}, f), mag, 2 * L + v + 6, "dlogits");
}

TEST(LogRecurrence, ForwardIsTheRecurrenceAndBackwardMatchesFiniteDifferences) {
  const int64_t B = 2, n = 9, d = 3;
  auto ul = randn(B * n * 2 * d, 1, 3.f), gy = randn(B * n * d, 2);
  auto f = [&](const std::vector<double>& u) {
    std::vector<double> h(B * n * d);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < d; ++j) {
        double prev = 0;  // h_{-1} = 0, as the reference pads with a zero logit
        for (int64_t t = 0; t < n; ++t) {
          const double uu = u[(b * n + t) * 2 * d + j], l = u[(b * n + t) * 2 * d + d + j];
          const double a = 1 / (1 + std::exp(-uu));
          prev = std::log(a * std::exp(prev) + std::exp(l));
          h[(b * n + t) * d + j] = prev;
        }
      }
    return h;
  };
  std::vector<float> h(B * n * d), dul(B * n * 2 * d);
  log_recurrence_forward(B, n, d, ul.data(), nullptr, h.data());
  const auto href = f(std::vector<double>(ul.begin(), ul.end()));
  // Each step h_t = logaddexp(log s(u_t) + h_{t-1}, l_t): the log-sigmoid, the sum and the
  // logaddexp each round by u times the magnitudes involved (<= U = max |u|, |l| and |h|,
  // so a few u U per step), and a step passes the error it receives on with a factor <= 1
  // (a convex combination in log space): after t + 1 steps, <= 8 (t + 1) u (U + 1).
  double U = 0;
  for (float e : ul) U = std::max(U, double(std::abs(e)));
  for (double e : href) U = std::max(U, std::abs(e));
  for (int64_t i = 0; i < B * n * d; ++i) {
    const int64_t t = (i / d) % n;
    EXPECT_NEAR(h[i], href[i], 8 * (t + 1) * kU * (U + 1));
  }
  log_recurrence_backward(B, n, d, ul.data(), nullptr, h.data(), gy.data(), dul.data());
  // The reverse scan carries dL/dh_t back through factors <= 1 and adds n terms of |gy|
  // at most, each with the forward's relative error (8 n u (U + 1)) and its own few u.
  std::vector<double> mag(B * n * 2 * d);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < d; ++j) {
      double acc = 0;
      for (int64_t t = n - 1; t >= 0; --t) {
        acc += std::abs(gy[(b * n + t) * d + j]);
        mag[(b * n + t) * 2 * d + j] = mag[(b * n + t) * 2 * d + d + j] = acc;
      }
    }
  expect_within(dul.data(), numeric_grad(ul, gy, f), mag, 8 * n * (U + 1) + 4 * n + 8, "dul");
}

}  // namespace
}  // namespace logattn::ops
