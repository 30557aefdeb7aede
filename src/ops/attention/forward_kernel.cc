// Forward kernels of one head: chunked causal pass, key absorption, query read-out, and
// the one-token step. See head_kernels.h for the stability scheme.
#include <algorithm>
#include <cmath>
#include <limits>

#include "logattn/error.h"
#include "ops/attention/chunk_ops.h"
#include "ops/attention/head_kernels.h"
#include "ops/matmul.h"
#include "simd/vexp.h"

namespace logattn::attention {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Exact read-out of one query in float64, for log-values whose scaled numerator underflows:
// the state (already at references m, c) plus chunk tokens [0, n_vis).
// q: [dk], k: [n_vis, dk], lv: [n_vis, dv] (log-values), y: [dv] (log outputs).
void exact_log_row(const HeadDims& hd, const float* q, int64_t n_vis, const float* k,
                   const float* lv, HeadState st, float* y, std::vector<double>& dbl) {
  const int64_t dk = hd.dk, dv = hd.dv;
  dbl.assign(dk + n_vis, 0.0);
  double mx = -INFINITY;
  for (int64_t d = 0; d < dk; ++d)
    if (st.z[d] > 0.f) mx = std::max(mx, double(q[d]) + st.m[d]);
  for (int64_t s = 0; s < n_vis; ++s)
    for (int64_t d = 0; d < dk; ++d) mx = std::max(mx, double(q[d]) + k[s * dk + d]);
  double den = 0.0;
  for (int64_t d = 0; d < dk; ++d) {
    dbl[d] = st.z[d] > 0.f ? std::exp(double(q[d]) + st.m[d] - mx) : 0.0;
    den += dbl[d] * st.z[d];
  }
  for (int64_t s = 0; s < n_vis; ++s) {
    double w = 0.0;
    for (int64_t d = 0; d < dk; ++d) w += std::exp(double(q[d]) + k[s * dk + d] - mx);
    dbl[dk + s] = w;
    den += w;
  }
  for (int64_t j = 0; j < dv; ++j) {
    if (st.c[j] == kNegInf) {
      y[j] = kNegInf;
      continue;
    }
    double num = 0.0;
    for (int64_t d = 0; d < dk; ++d) num += dbl[d] * st.s[d * dv + j];
    for (int64_t s = 0; s < n_vis; ++s)
      num += dbl[dk + s] * std::exp(double(lv[s * dv + j]) - st.c[j]);
    y[j] = static_cast<float>(st.c[j] + std::log(num) - std::log(den));
  }
}

// Writes outputs of n queries from scaled numerators num [n, dv] and normalisers den [n].
// Log-value rows with an underflowing numerator are recomputed exactly: query t sees the
// state and chunk tokens [0, visible(t)).
template <typename Visible>
void write_outputs(const HeadDims& hd, int64_t n, const float* q, const float* k, const float* v,
                   Visible visible, HeadState st, ChunkBuffers& buf, float* y, float* log_d) {
  const int64_t dv = hd.dv;
  for (int64_t t = 0; t < n; ++t) {
    const float den = buf.den[t];
    const float* num = buf.num.data() + t * dv;
    float* yt = y + t * dv;
    if (log_d) log_d[t] = buf.rowmax[t] + std::log(den);
    if (!hd.log_values) {
      const float inv = 1.f / den;
      for (int64_t j = 0; j < dv; ++j) yt[j] = num[j] * inv;
      continue;
    }
    bool tiny = false;
    const float log_den = std::log(den);
    for (int64_t j = 0; j < dv; ++j) {
      if (st.c[j] == kNegInf) {
        yt[j] = kNegInf;
        continue;
      }
      tiny |= !(num[j] >= kTinyRatio * den);
      yt[j] = st.c[j] + std::log(num[j]) - log_den;
    }
    if (tiny) exact_log_row(hd, q + t * hd.dk, visible(t), k, v, st, yt, buf.dbl);
  }
}

void causal_chunk(const HeadDims& hd, int64_t n, const float* q, const float* k, const float* v,
                  float* y, float* log_d, HeadState st, ChunkBuffers& buf) {
  const int64_t dk = hd.dk, dv = hd.dv;
  const float gap = chunk_references(hd, n, k, v, st, buf.mc.data(), buf.cv.data());
  if (n > 1 && gap > kMaxGap) {
    const int64_t h = n / 2;
    causal_chunk(hd, h, q, k, v, y, log_d, st, buf);
    causal_chunk(hd, n - h, q + h * dk, k + h * dk, v + h * dv, y + h * dv,
                 log_d ? log_d + h : nullptr, st, buf);
    return;
  }
  rebase_keys(hd, st, buf.mc.data());
  if (hd.log_values) rebase_values(hd, st, buf.cv.data());
  const float* vals = scale_chunk(hd, n, k, v, st, buf);
  query_weights(hd, n, q, st.m, buf.p.data(), buf.rowmax.data());
  // a = p kc^T, masked to s <= t: the intra-chunk weights, scaled by exp(-rowmax[t]).
  float* a = buf.a.data();
  ops::gemm(false, true, n, n, dk, 1.f, buf.p.data(), dk, buf.kc.data(), dk, 0.f, a, n);
  for (int64_t t = 0; t < n; ++t) {
    float* row = a + t * n;
    std::fill(row + t + 1, row + n, 0.f);
    float den = 0.f;
    for (int64_t s = 0; s <= t; ++s) den += row[s];
    const float* pt = buf.p.data() + t * dk;
    for (int64_t d = 0; d < dk; ++d) den += pt[d] * st.z[d];
    buf.den[t] = den;
  }
  ops::gemm(false, false, n, dv, n, 1.f, a, n, vals, dv, 0.f, buf.num.data(), dv);
  ops::gemm(false, false, n, dv, dk, 1.f, buf.p.data(), dk, st.s, dv, 1.f, buf.num.data(), dv);
  write_outputs(
      hd, n, q, k, v, [](int64_t t) { return t + 1; }, st, buf, y, log_d);
  accumulate(hd, n, buf.kc.data(), vals, st);
}

}  // namespace

void ChunkBuffers::reserve(int64_t chunk, const HeadDims& hd) {
  const int64_t c = std::max<int64_t>(chunk, 1);
  kc.resize(c * hd.dk);
  p.resize(c * hd.dk);
  vc.resize(c * hd.dv);
  a.resize(c * c);
  num.resize(c * hd.dv);
  den.resize(c);
  rowmax.resize(c);
  mc.resize(hd.dk);
  cv.resize(hd.dv);
  cref.resize(hd.dv);
  t1.resize(c * std::max(hd.dk, hd.dv));
  t2.resize(c * std::max(hd.dk, hd.dv));
}

void causal_forward_head(const HeadDims& hd, int64_t n, int64_t chunk, const float* q,
                         const float* k, const float* v, float* y, float* log_d, HeadState st,
                         ChunkBuffers& buf) {
  buf.reserve(chunk, hd);
  for (int64_t t0 = 0; t0 < n; t0 += chunk) {
    const int64_t len = std::min(chunk, n - t0);
    causal_chunk(hd, len, q + t0 * hd.dk, k + t0 * hd.dk, v + t0 * hd.dv, y + t0 * hd.dv,
                 log_d ? log_d + t0 : nullptr, st, buf);
  }
}

void absorb_head(const HeadDims& hd, int64_t n, int64_t chunk, const float* k, const float* v,
                 HeadState st, ChunkBuffers& buf) {
  buf.reserve(chunk, hd);
  for (int64_t t0 = 0; t0 < n; t0 += chunk) {
    const int64_t len = std::min(chunk, n - t0);
    const float* kk = k + t0 * hd.dk;
    const float* vv = v + t0 * hd.dv;
    chunk_references(hd, len, kk, vv, st, buf.mc.data(), buf.cv.data());
    rebase_keys(hd, st, buf.mc.data());
    if (hd.log_values) rebase_values(hd, st, buf.cv.data());
    accumulate(hd, len, buf.kc.data(), scale_chunk(hd, len, kk, vv, st, buf), st);
  }
}

void readout_head(const HeadDims& hd, int64_t n, int64_t chunk, const float* q, float* y,
                  float* log_d, HeadState st, ChunkBuffers& buf) {
  buf.reserve(chunk, hd);
  const int64_t dk = hd.dk, dv = hd.dv;
  for (int64_t t0 = 0; t0 < n; t0 += chunk) {
    const int64_t len = std::min(chunk, n - t0);
    const float* qq = q + t0 * dk;
    query_weights(hd, len, qq, st.m, buf.p.data(), buf.rowmax.data());
    for (int64_t t = 0; t < len; ++t) {
      float den = 0.f;
      for (int64_t d = 0; d < dk; ++d) den += buf.p[t * dk + d] * st.z[d];
      buf.den[t] = den;
    }
    ops::gemm(false, false, len, dv, dk, 1.f, buf.p.data(), dk, st.s, dv, 0.f, buf.num.data(), dv);
    write_outputs(
        hd, len, qq, nullptr, nullptr, [](int64_t) { return int64_t{0}; }, st, buf, y + t0 * dv,
        log_d ? log_d + t0 : nullptr);
  }
}

void step_head(const HeadDims& hd, const float* q, const float* k, const float* v, float* y,
               float* log_d, HeadState st, float* work) {
  const int64_t dk = hd.dk, dv = hd.dv;
  // Absorb: only features whose maximum moves need a rescale.
  for (int64_t d = 0; d < dk; ++d) {
    if (k[d] > st.m[d]) {
      const float f = st.m[d] == kNegInf ? 0.f : std::exp(st.m[d] - k[d]);
      st.z[d] *= f;
      for (int64_t j = 0; j < dv; ++j) st.s[d * dv + j] *= f;
      st.m[d] = k[d];
    }
  }
  if (hd.log_values) {
    for (int64_t j = 0; j < dv; ++j) {
      if (v[j] > st.c[j]) {
        const float g = st.c[j] == kNegInf ? 0.f : std::exp(st.c[j] - v[j]);
        for (int64_t d = 0; d < dk; ++d) st.s[d * dv + j] *= g;
        st.c[j] = v[j];
      }
    }
  }
  // work: kc [dk], p [dk], values [dv], accumulator [dv]. The update of s and the read-out
  // share one pass over s (memory, not arithmetic, bounds this step), over contiguous rows
  // so that the loops vectorise.
  float* __restrict kc = work;
  float* __restrict p = work + dk;
  float* __restrict vals = work + 2 * dk;
  float* __restrict acc = work + 2 * dk + dv;
  simd::exp_sub(k, st.m, kc, dk);
  if (hd.log_values) {
    for (int64_t j = 0; j < dv; ++j) vals[j] = st.c[j] == kNegInf ? 0.f : st.c[j];
    simd::exp_sub(v, vals, vals, dv);
  } else {
    std::copy(v, v + dv, vals);
  }
  float mx = kNegInf;
  for (int64_t d = 0; d < dk; ++d) {
    p[d] = q[d] + st.m[d];
    mx = std::max(mx, p[d]);
  }
  for (int64_t d = 0; d < dk; ++d) p[d] -= mx;
  simd::exp(p, p, dk);
  float den = 0.f;
  std::fill(acc, acc + dv, 0.f);
  for (int64_t d = 0; d < dk; ++d) {
    st.z[d] += kc[d];
    den += p[d] * st.z[d];
    float* __restrict row = st.s + d * dv;
    const float kd = kc[d], pd = p[d];
    for (int64_t j = 0; j < dv; ++j) {
      row[j] += kd * vals[j];
      acc[j] += pd * row[j];
    }
  }
  if (log_d) *log_d = mx + std::log(den);
  std::copy(acc, acc + dv, y);
  if (!hd.log_values) {
    for (int64_t j = 0; j < dv; ++j) y[j] /= den;
    return;
  }
  bool tiny = false;
  for (int64_t j = 0; j < dv; ++j) tiny |= st.c[j] != kNegInf && !(y[j] >= kTinyRatio * den);
  simd::log(y, y, dv);
  const float log_den = std::log(den);
  for (int64_t j = 0; j < dv; ++j) y[j] = st.c[j] == kNegInf ? kNegInf : st.c[j] + y[j] - log_den;
  if (tiny) {
    std::vector<double> dbl;
    exact_log_row(hd, q, 0, nullptr, nullptr, st, y, dbl);
  }
}

}  // namespace logattn::attention
