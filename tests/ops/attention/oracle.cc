#include "ops/attention/oracle.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace logattn::testing {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

double logaddexp(double a, double b) {
  if (a == kNegInf) return b;
  if (b == kNegInf) return a;
  const double m = std::max(a, b);
  return m + std::log1p(std::exp(-std::abs(a - b)));
}

int64_t visible(const HeadProblem& p, int64_t t) {
  return p.causal ? std::min(p.nk, t + p.offset + 1) : p.nk;
}

// Per query t: weights w_s (scaled by exp(-mx)) of the visible keys and their log-sum.
double weights(const HeadProblem& p, int64_t t, std::vector<double>& w, double& mx) {
  const int64_t ns = visible(p, t);
  mx = kNegInf;
  for (int64_t s = 0; s < ns; ++s)
    for (int64_t d = 0; d < p.dk; ++d) mx = std::max(mx, p.q[t * p.dk + d] + p.k[s * p.dk + d]);
  w.assign(ns, 0.0);
  double sum = 0.0;
  for (int64_t s = 0; s < ns; ++s) {
    for (int64_t d = 0; d < p.dk; ++d) w[s] += std::exp(p.q[t * p.dk + d] + p.k[s * p.dk + d] - mx);
    sum += w[s];
  }
  return mx + std::log(sum);
}

// arg_mag, lv_mag and n_vis of every query (visible keys grow with t when causal).
void fill_scales(const HeadProblem& p, HeadResult& r) {
  r.arg_mag.assign(p.nq, 0.0);
  r.lv_mag.assign(p.nq, 0.0);
  r.n_vis.assign(p.nq, 0);
  r.v_mag.assign(p.nq, 0.0);
  double kmax = 0.0, lvmax = 0.0, vmax = 0.0;
  int64_t seen = 0;
  for (int64_t t = 0; t < p.nq; ++t) {
    for (; seen < visible(p, t); ++seen) {
      for (int64_t d = 0; d < p.dk; ++d) kmax = std::max(kmax, std::abs(p.k[seen * p.dk + d]));
      for (int64_t j = 0; j < p.dv; ++j) {
        const double x = p.v[seen * p.dv + j];
        if (!p.log_values)
          vmax = std::max(vmax, std::abs(x));
        else if (std::isfinite(x))
          lvmax = std::max(lvmax, std::abs(x));
      }
    }
    double qmax = 0.0;
    for (int64_t d = 0; d < p.dk; ++d) qmax = std::max(qmax, std::abs(p.q[t * p.dk + d]));
    r.arg_mag[t] = qmax + kmax;
    r.lv_mag[t] = lvmax;
    r.v_mag[t] = vmax;
    r.n_vis[t] = visible(p, t);
  }
}

}  // namespace

HeadResult oracle_quadratic(const HeadProblem& p) {
  HeadResult r;
  r.y.assign(p.nq * p.dv, 0.0);
  r.log_d.assign(p.nq, 0.0);
  r.y_mag.assign(p.nq * p.dv, 0.0);
  fill_scales(p, r);
  std::vector<double> w;
  for (int64_t t = 0; t < p.nq; ++t) {
    double mx;
    const double log_d = weights(p, t, w, mx);
    r.log_d[t] = log_d;
    const double log_sum = log_d - mx;  // log of sum of the scaled weights
    for (int64_t j = 0; j < p.dv; ++j) {
      if (!p.log_values) {
        double num = 0.0, mag = 0.0;
        for (size_t s = 0; s < w.size(); ++s) {
          num += w[s] * p.v[s * p.dv + j];
          mag += w[s] * std::abs(p.v[s * p.dv + j]);
        }
        r.y[t * p.dv + j] = num / std::exp(log_sum);
        r.y_mag[t * p.dv + j] = mag / std::exp(log_sum);
      } else {
        double acc = kNegInf;
        for (size_t s = 0; s < w.size(); ++s)
          acc = logaddexp(acc, std::log(w[s]) + p.v[s * p.dv + j]);
        r.y[t * p.dv + j] = acc - log_sum;
      }
    }
  }
  return r;
}

HeadResult oracle_log_space(const HeadProblem& p) {
  const int64_t dk = p.dk, dv = p.dv;
  // Log-space states: hz [dk], hp / hn [dk, dv] for the positive / negative parts of v.
  std::vector<double> hz(dk, kNegInf), hp(dk * dv, kNegInf), hn(dk * dv, kNegInf);
  auto absorb = [&](int64_t s) {
    for (int64_t d = 0; d < dk; ++d) {
      const double kd = p.k[s * dk + d];
      hz[d] = logaddexp(hz[d], kd);
      for (int64_t j = 0; j < dv; ++j) {
        const double x = p.v[s * dv + j];
        if (p.log_values) {
          hp[d * dv + j] = logaddexp(hp[d * dv + j], kd + x);
        } else if (x > 0) {
          hp[d * dv + j] = logaddexp(hp[d * dv + j], kd + std::log(x));
        } else if (x < 0) {
          hn[d * dv + j] = logaddexp(hn[d * dv + j], kd + std::log(-x));
        }
      }
    }
  };
  HeadResult r;
  r.y.assign(p.nq * dv, 0.0);
  r.log_d.assign(p.nq, 0.0);
  r.y_mag.assign(p.nq * dv, 0.0);
  fill_scales(p, r);
  auto read = [&](int64_t t) {
    double lz = kNegInf;
    for (int64_t d = 0; d < dk; ++d) lz = logaddexp(lz, p.q[t * dk + d] + hz[d]);
    r.log_d[t] = lz;
    for (int64_t j = 0; j < dv; ++j) {
      double lp = kNegInf, ln = kNegInf;
      for (int64_t d = 0; d < dk; ++d) {
        lp = logaddexp(lp, p.q[t * dk + d] + hp[d * dv + j]);
        ln = logaddexp(ln, p.q[t * dk + d] + hn[d * dv + j]);
      }
      r.y[t * dv + j] = p.log_values ? lp - lz : std::exp(lp - lz) - std::exp(ln - lz);
      if (!p.log_values) r.y_mag[t * dv + j] = std::exp(lp - lz) + std::exp(ln - lz);
    }
  };
  if (p.causal) {
    int64_t absorbed = 0;
    for (int64_t t = 0; t < p.nq; ++t) {
      while (absorbed < visible(p, t)) absorb(absorbed++);
      read(t);
    }
  } else {
    for (int64_t s = 0; s < p.nk; ++s) absorb(s);
    for (int64_t t = 0; t < p.nq; ++t) read(t);
  }
  return r;
}

HeadGrads oracle_gradients(const HeadProblem& p, const std::vector<double>& gy_in) {
  const int64_t dk = p.dk, dv = p.dv;
  const HeadResult fwd = oracle_quadratic(p);
  HeadGrads g;
  g.gq.assign(p.nq * dk, 0.0);
  g.gk.assign(p.nk * dk, 0.0);
  g.gv.assign(p.nk * dv, 0.0);
  g.abs_gq.assign(p.nq * dk, 0.0);
  g.abs_gk.assign(p.nk * dk, 0.0);
  g.abs_gv.assign(p.nk * dv, 0.0);
  g.under_gq.assign(p.nq * dk, 0.0);
  g.under_gk.assign(p.nk * dk, 0.0);
  g.unit_gq.assign(p.nq * dk, 0.0);
  g.unit_gk.assign(p.nk * dk, 0.0);
  g.unit_gv.assign(p.nk * dv, 0.0);
  std::vector<double> cmax(dv, kNegInf);
  if (p.log_values)
    for (int64_t s = 0; s < p.nk; ++s)
      for (int64_t j = 0; j < dv; ++j) cmax[j] = std::max(cmax[j], p.v[s * dv + j]);
  double qmax = 0.0, kmax = 0.0;
  for (int64_t t = 0; t < p.nq; ++t)
    for (int64_t d = 0; d < dk; ++d)
      qmax = std::max(qmax, std::abs(p.q[t * dk + d]) + std::abs(fwd.log_d[t]));
  for (double x : p.k) kmax = std::max(kmax, std::abs(x));
  g.arg_mag = qmax + kmax;
  if (p.log_values)
    for (double x : p.v)
      if (std::isfinite(x)) g.lv_mag = std::max(g.lv_mag, std::abs(x));
  std::vector<double> vs(p.nk * dv);  // values in the linear domain
  for (size_t i = 0; i < vs.size(); ++i) vs[i] = p.log_values ? std::exp(p.v[i]) : p.v[i];
  std::vector<double> gt(dv);
  for (int64_t t = 0; t < p.nq; ++t) {
    // dL/dy_t in the linear domain, and c_t = y_t . g_t.
    double c = 0.0;
    for (int64_t j = 0; j < dv; ++j) {
      const double yj = fwd.y[t * dv + j];
      gt[j] = gy_in[t * dv + j];
      c += yj * gt[j];
    }
    // Log-values: an output of -inf (every visible value is 0) has no gradient; skip it.
    auto live = [&](int64_t j) { return fwd.y[t * dv + j] != kNegInf; };
    if (p.log_values) {
      c = 0.0;
      for (int64_t j = 0; j < dv; ++j)
        if (live(j)) c += gy_in[t * dv + j];
    }
    const int64_t ns = visible(p, t);
    for (int64_t s = 0; s < ns; ++s) {
      // r = v_s . g_t - c_t, and the magnitude of its terms, sum_j |v_sj g_tj| + |y_tj g_tj|.
      double vg = 0.0, r_abs = 0.0, r_under = 0.0;
      for (int64_t j = 0; j < dv; ++j) {
        if (p.log_values) {
          if (!live(j)) continue;
          const double term = std::exp(p.v[s * dv + j] - fwd.y[t * dv + j]) * gy_in[t * dv + j];
          vg += term;
          r_abs += std::abs(term) + std::abs(gy_in[t * dv + j]);
          r_under += std::exp(cmax[j] - fwd.y[t * dv + j]) * std::abs(gy_in[t * dv + j]);
        } else {
          vg += vs[s * dv + j] * gt[j];
          r_abs += std::abs(vs[s * dv + j] * gt[j]) + std::abs(fwd.y_mag[t * dv + j] * gt[j]);
        }
      }
      const double r = vg - c;
      double wsum = 0.0;
      for (int64_t d = 0; d < dk; ++d) {
        const double w = std::exp(p.q[t * dk + d] + p.k[s * dk + d] - fwd.log_d[t]);
        wsum += w;
        g.gq[t * dk + d] += w * r;
        g.gk[s * dk + d] += w * r;
        g.abs_gq[t * dk + d] += w * r_abs;
        g.abs_gk[s * dk + d] += w * r_abs;
        g.under_gq[t * dk + d] += w * r_under;
        g.under_gk[s * dk + d] += w * r_under;
        g.unit_gq[t * dk + d] += r_abs;
        g.unit_gk[s * dk + d] += r_abs;
      }
      for (int64_t j = 0; j < dv; ++j) {
        double unit = 0.0;
        if (!p.log_values)
          unit = gt[j];
        else if (live(j))
          unit = std::exp(p.v[s * dv + j] - fwd.y[t * dv + j]) * gy_in[t * dv + j];
        g.gv[s * dv + j] += wsum * unit;
        g.abs_gv[s * dv + j] += std::abs(wsum * unit);
        g.unit_gv[s * dv + j] += dk * std::abs(unit);
      }
    }
  }
  return g;
}

}  // namespace logattn::testing
