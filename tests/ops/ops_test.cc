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

// d/dx of sum(w * f(x)) by central differences in float64; f maps x to outputs.
std::vector<double> numeric_grad(const std::vector<float>& x, const std::vector<float>& w,
                                 const std::function<std::vector<double>(const std::vector<double>&)>& f) {
  std::vector<double> xd(x.begin(), x.end()), g(x.size());
  const double h = 1e-6;
  for (size_t i = 0; i < x.size(); ++i) {
    const double x0 = xd[i];
    xd[i] = x0 + h;
    const auto yp = f(xd);
    xd[i] = x0 - h;
    const auto ym = f(xd);
    xd[i] = x0;
    double s = 0;
    for (size_t j = 0; j < yp.size(); ++j) s += w[j] * (yp[j] - ym[j]);
    g[i] = s / (2 * h);
  }
  return g;
}

void expect_close(const float* got, const std::vector<double>& want, double rel, const char* what) {
  double num = 0, den = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  EXPECT_LE(std::sqrt(num / den), rel) << what;
}

TEST(LayerNorm, BackwardMatchesFiniteDifferences) {
  const int64_t n = 5, d = 12;
  auto x = randn(n * d, 1, 2.f), w = randn(d, 2), b = randn(d, 3), gy = randn(n * d, 4);
  for (auto& e : x) e += 3.f;  // an offset, as residual streams have
  auto f = [&](const std::vector<double>& xs, const std::vector<double>& ws, const std::vector<double>& bs) {
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
  for (int64_t i = 0; i < n * d; ++i) EXPECT_NEAR(y[i], yref[i], 1e-5);
  layernorm_backward(n, d, x.data(), w.data(), mean.data(), rstd.data(), gy.data(), dx.data(),
                     dw.data(), db.data(), false);
  expect_close(dx.data(), numeric_grad(x, gy, [&](const auto& xs) { return f(xs, wd, bd); }), 1e-4, "dx");
  expect_close(dw.data(), numeric_grad(w, gy, [&](const auto& ws) { return f(xd, ws, bd); }), 1e-4, "dw");
  expect_close(db.data(), numeric_grad(b, gy, [&](const auto& bs) { return f(xd, wd, bs); }), 1e-4, "db");
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
  for (int64_t i = 0; i < n * out; ++i) EXPECT_NEAR(y[i], yref[i], 1e-5);
  linear_backward(n, in, out, x.data(), w.data(), gy.data(), dx.data(), dw.data(), db.data(), false);
  expect_close(dx.data(), numeric_grad(x, gy, [&](const auto& xs) { return f(xs, wd); }), 1e-5, "dx");
  expect_close(dw.data(), numeric_grad(w, gy, [&](const auto& ws) { return f(xd, ws); }), 1e-5, "dw");
  std::vector<double> dbref(out, 0.0);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < out; ++o) dbref[o] += gy[i * out + o];
  expect_close(db.data(), dbref, 1e-6, "db");
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
  expect_close(dg.data(), numeric_grad(g, gy, f), 1e-5, "dg");
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
  EXPECT_NEAR(loss, f(std::vector<double>(logits.begin(), logits.end()))[0], 1e-6);
  expect_close(dl.data(), numeric_grad(logits, {1.f}, f), 1e-5, "dlogits");
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
  for (int64_t i = 0; i < B * n * d; ++i) EXPECT_NEAR(h[i], href[i], 1e-5 * (1 + std::abs(href[i])));
  log_recurrence_backward(B, n, d, ul.data(), nullptr, h.data(), gy.data(), dul.data());
  expect_close(dul.data(), numeric_grad(ul, gy, f), 1e-4, "dul");
}

}  // namespace
}  // namespace logattn::ops
