// Backward kernel of one head, signed values (docs/design.md section 1, Gradients).
//
// With folded queries qf_td = q_td - log D_t, every weight exp(qf_td + k_sd) of a pair the
// mask keeps is at most 1, and with r_ts = v_s . g_t - c_t, c_t = y_t . g_t:
//   dq_td = sum_s exp(qf_td + k_sd) r_ts,  dk_sd = sum_t exp(qf_td + k_sd) r_ts,
//   dv_s  = sum_t sum_d exp(qf_td + k_sd) g_t.
// dq is a forward scan with the forward's key state; dk and dv a reverse scan with a state of
// the queries: mq [dk] (running maximum of qf), rs [dk, dv] = sum_t exp(qf_t - mq) g_t^T and
// us [dk] = sum_t exp(qf_t - mq) c_t. Chunks split on the same gap rule as the forward.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "logattn/error.h"
#include "ops/attention/chunk_ops.h"
#include "ops/attention/head_kernels.h"
#include "ops/matmul.h"
#include "simd/vexp.h"

namespace logattn::attention {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Grads {
  const float* qf;  // [n_q, dk] folded queries
  const float* ct;  // [n_q] y_t . g_t
  const float* k;   // [n_k, dk]
  const float* v;   // [n_k, dv]
  const float* gy;  // [n_q, dv]
  float* gq;        // [n_q, dk]
  float* gk;        // [n_k, dk]
  float* gv;        // [n_k, dv]
};

// t [n, dk] += gy s^T - ct z^T, then gq = pp * t. pp: [n, dk] = exp(qf + m).
void dq_from_state(const HeadDims& hd, int64_t n, const float* pp, const float* gy, const float* ct,
                   HeadState st, float* t, float* gq) {
  ops::gemm(false, true, n, hd.dk, hd.dv, 1.f, gy, hd.dv, st.s, hd.dv, 1.f, t, hd.dk);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t d = 0; d < hd.dk; ++d)
      gq[i * hd.dk + d] = pp[i * hd.dk + d] * (t[i * hd.dk + d] - ct[i] * st.z[d]);
}

// t [n, dk] += v rs^T - us; gk = e * t; gv [n, dv] += e rs. e: [n, dk] = exp(k + mq).
void dkv_from_state(const HeadDims& hd, int64_t n, const float* e, const float* v, HeadState rq,
                    float* t, float* gk, float* gv) {
  ops::gemm(false, true, n, hd.dk, hd.dv, 1.f, v, hd.dv, rq.s, hd.dv, 1.f, t, hd.dk);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t d = 0; d < hd.dk; ++d)
      gk[i * hd.dk + d] = e[i * hd.dk + d] * (t[i * hd.dk + d] - rq.z[d]);
  ops::gemm(false, false, n, hd.dv, hd.dk, 1.f, e, hd.dk, rq.s, hd.dv, 1.f, gv, hd.dv);
}

// rs += pq^T gy, us += pq^T ct over n queries. pq: [n, dk] = exp(qf - mq).
void accumulate_queries(const HeadDims& hd, int64_t n, const float* pq, const float* gy,
                        const float* ct, HeadState rq) {
  ops::gemm(true, false, hd.dk, hd.dv, n, 1.f, pq, hd.dk, gy, hd.dv, 1.f, rq.s, hd.dv);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t d = 0; d < hd.dk; ++d) rq.z[d] += pq[i * hd.dk + d] * ct[i];
}

// r [n, n] = gy v^T - ct (rows t, columns s), zero where s > t.
void masked_r(const HeadDims& hd, int64_t n, const float* gy, const float* v, const float* ct,
              float* r) {
  ops::gemm(false, true, n, n, hd.dv, 1.f, gy, hd.dv, v, hd.dv, 0.f, r, n);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t s = 0; s <= t; ++s) r[t * n + s] -= ct[t];
    std::fill(r + t * n + t + 1, r + (t + 1) * n, 0.f);
  }
}

// Forward scan over n tokens (causal): dq with the key state st.
void dq_chunk(const HeadDims& hd, int64_t n, Grads g, HeadState st, ChunkBuffers& buf) {
  const int64_t dk = hd.dk;
  const float gap = chunk_references(hd, n, g.k, nullptr, st, buf.mc.data(), nullptr);
  if (n > 1 && gap > kMaxGap) {
    const int64_t h = n / 2;
    dq_chunk(hd, h, g, st, buf);
    Grads g2 = g;
    g2.qf += h * dk, g2.ct += h, g2.k += h * dk, g2.v += h * hd.dv, g2.gy += h * hd.dv;
    g2.gq += h * dk;
    dq_chunk(hd, n - h, g2, st, buf);
    return;
  }
  rebase_keys(hd, st, buf.mc.data());
  scale_chunk(hd, n, g.k, g.v, st, buf);  // buf.kc = exp(k - m)
  float* pp = buf.p.data();
  for (int64_t i = 0; i < n; ++i) simd::exp_add(g.qf + i * dk, st.m, pp + i * dk, dk);
  masked_r(hd, n, g.gy, g.v, g.ct, buf.a.data());
  float* t = buf.t1.data();
  ops::gemm(false, false, n, dk, n, 1.f, buf.a.data(), n, buf.kc.data(), dk, 0.f, t, dk);
  dq_from_state(hd, n, pp, g.gy, g.ct, st, t, g.gq);
  accumulate(hd, n, buf.kc.data(), g.v, st);
}

// Reverse scan over n tokens (causal), last to first: dk and dv with the query state rq.
void dkv_chunk(const HeadDims& hd, int64_t n, Grads g, HeadState rq, ChunkBuffers& buf) {
  const int64_t dk = hd.dk, dv = hd.dv;
  float* mqc = buf.mc.data();
  float gap = 0.f;
  for (int64_t d = 0; d < dk; ++d) mqc[d] = rq.m[d];
  for (int64_t i = 0; i < n; ++i)
    for (int64_t d = 0; d < dk; ++d) mqc[d] = std::max(mqc[d], g.qf[i * dk + d]);
  for (int64_t d = 0; d < dk; ++d)
    gap = std::max(gap, mqc[d] - std::max(rq.m[d], g.qf[(n - 1) * dk + d]));
  if (n > 1 && gap > kMaxGap) {
    const int64_t h = n / 2;
    Grads g2 = g;
    g2.qf += h * dk, g2.ct += h, g2.k += h * dk, g2.v += h * dv, g2.gy += h * dv;
    g2.gk += h * dk, g2.gv += h * dv;
    dkv_chunk(hd, n - h, g2, rq, buf);
    dkv_chunk(hd, h, g, rq, buf);
    return;
  }
  rebase_keys(hd, rq, mqc);
  float* pq = buf.p.data();
  float* e = buf.kc.data();
  for (int64_t i = 0; i < n; ++i) {
    simd::exp_sub(g.qf + i * dk, rq.m, pq + i * dk, dk);
    simd::exp_add(g.k + i * dk, rq.m, e + i * dk, dk);
  }
  float* r = buf.a.data();
  masked_r(hd, n, g.gy, g.v, g.ct, r);
  float* t = buf.t1.data();
  ops::gemm(true, false, n, dk, n, 1.f, r, n, pq, dk, 0.f, t, dk);
  // a' [t, s] = sum_d pq_td e_sd for s <= t; gv = a'^T gy.
  float* w = buf.t2.data();
  LOGATTN_CHECK(static_cast<int64_t>(buf.t2.size()) >= n * n || n <= 1);
  ops::gemm(false, true, n, n, dk, 1.f, pq, dk, e, dk, 0.f, w, n);
  for (int64_t i = 0; i < n; ++i) std::fill(w + i * n + i + 1, w + (i + 1) * n, 0.f);
  ops::gemm(true, false, n, dv, n, 1.f, w, n, g.gy, dv, 0.f, g.gv, dv);
  dkv_from_state(hd, n, e, g.v, rq, t, g.gk, g.gv);
  accumulate_queries(hd, n, pq, g.gy, g.ct, rq);
}

}  // namespace

void backward_head(const HeadDims& hd_in, bool causal, bool center_values, int64_t n_q, int64_t n_k,
                   int64_t chunk, const float* q, const float* k, const float* v, const float* y,
                   const float* log_d, const float* gy, float* gq, float* gk, float* gv,
                   const float* st_m, const float* st_z, const float* st_s, ChunkBuffers& buf) {
  const HeadDims hd{hd_in.dk, hd_in.dv, false};
  const int64_t dk = hd.dk, dv = hd.dv;
  buf.reserve(chunk, hd);
  buf.t2.resize(std::max<int64_t>(buf.t2.size(), chunk * chunk));
  // Values enter only through r_ts = v_s . g_t - y_t . g_t, which is unchanged when the same
  // mu is subtracted from every v_s and y_t. Centring on the mean value lessens the
  // cancellation in r (y_t is an average of the v_s), so float32 resolves small gradients.
  // (Not for values scaled from log-values: there rows with small y carry large g, and a
  // shift would add, then cancel, mu . g in every term.)
  std::vector<float> mu(dv, 0.f);
  std::vector<float>& vs = buf.head_v;
  std::vector<float>& ys = buf.head_y;
  vs.resize(n_k * dv);
  ys.resize(n_q * dv);
  for (int64_t s = 0; s < n_k; ++s)
    for (int64_t j = 0; j < dv; ++j) mu[j] += v[s * dv + j];
  for (int64_t j = 0; j < dv; ++j) mu[j] = center_values ? mu[j] / static_cast<float>(n_k) : 0.f;
  for (int64_t s = 0; s < n_k; ++s)
    for (int64_t j = 0; j < dv; ++j) vs[s * dv + j] = v[s * dv + j] - mu[j];
  for (int64_t i = 0; i < n_q; ++i)
    for (int64_t j = 0; j < dv; ++j) ys[i * dv + j] = y[i * dv + j] - mu[j];
  v = vs.data();
  // O(n (dk + dv)) saved per head: folded queries, c_t and the centred values above.
  std::vector<float>& qf = buf.head_q;
  std::vector<float>& ct = buf.head_c;
  qf.resize(n_q * dk);
  ct.resize(n_q);
  for (int64_t i = 0; i < n_q; ++i) {
    float c = 0.f;
    for (int64_t j = 0; j < dv; ++j) c += ys[i * dv + j] * gy[i * dv + j];
    ct[i] = c;
    for (int64_t d = 0; d < dk; ++d) qf[i * dk + d] = q[i * dk + d] - log_d[i];
  }
  // Key state (forward scan) and query state (reverse scan), each dk x dv.
  std::vector<float> km(dk, kNegInf), kz(dk, 0.f), ks(dk * dv, 0.f), kc0(dv, 0.f);
  if (st_m) {
    std::copy(st_m, st_m + dk, km.begin());
    std::copy(st_z, st_z + dk, kz.begin());
    for (int64_t d = 0; d < dk; ++d)
      for (int64_t j = 0; j < dv; ++j) ks[d * dv + j] = st_s[d * dv + j] - kz[d] * mu[j];
  }
  std::vector<float> qm(dk, kNegInf), qz(dk, 0.f), qs(dk * dv, 0.f);
  const HeadState kst{km.data(), kz.data(), kc0.data(), ks.data()};
  const HeadState qst{qm.data(), qz.data(), kc0.data(), qs.data()};
  Grads g{qf.data(), ct.data(), k, v, gy, gq, gk, gv};

  if (causal) {
    for (int64_t t0 = 0; t0 < n_q; t0 += chunk) {
      const int64_t len = std::min(chunk, n_q - t0);
      Grads gc{g.qf + t0 * dk, g.ct + t0,    k + t0 * dk,  v + t0 * dv,
               gy + t0 * dv,   gq + t0 * dk, gk + t0 * dk, gv + t0 * dv};
      dq_chunk(hd, len, gc, kst, buf);
    }
    const int64_t last = ((n_q - 1) / chunk) * chunk;
    for (int64_t t0 = last; t0 >= 0; t0 -= chunk) {
      const int64_t len = std::min(chunk, n_q - t0);
      Grads gc{g.qf + t0 * dk, g.ct + t0,    k + t0 * dk,  v + t0 * dv,
               gy + t0 * dv,   gq + t0 * dk, gk + t0 * dk, gv + t0 * dv};
      dkv_chunk(hd, len, gc, qst, buf);
    }
    return;
  }
  // Non-causal: every query sees every key. dq from the state of all keys.
  absorb_head(hd, n_k, chunk, k, v, kst, buf);
  for (int64_t t0 = 0; t0 < n_q; t0 += chunk) {
    const int64_t len = std::min(chunk, n_q - t0);
    float* pp = buf.p.data();
    for (int64_t i = 0; i < len; ++i)
      simd::exp_add(qf.data() + (t0 + i) * dk, km.data(), pp + i * dk, dk);
    std::fill(buf.t1.begin(), buf.t1.begin() + len * dk, 0.f);
    dq_from_state(hd, len, pp, gy + t0 * dv, ct.data() + t0, kst, buf.t1.data(), gq + t0 * dk);
  }
  // dk, dv from the state of all queries.
  for (int64_t t0 = 0; t0 < n_q; t0 += chunk) {
    const int64_t len = std::min(chunk, n_q - t0);
    const float* qq = qf.data() + t0 * dk;
    float* mqc = buf.mc.data();
    for (int64_t d = 0; d < dk; ++d) mqc[d] = qm[d];
    for (int64_t i = 0; i < len; ++i)
      for (int64_t d = 0; d < dk; ++d) mqc[d] = std::max(mqc[d], qq[i * dk + d]);
    rebase_keys(hd, qst, mqc);
    for (int64_t i = 0; i < len; ++i)
      simd::exp_sub(qq + i * dk, qm.data(), buf.p.data() + i * dk, dk);
    accumulate_queries(hd, len, buf.p.data(), gy + t0 * dv, ct.data() + t0, qst);
  }
  for (int64_t s0 = 0; s0 < n_k; s0 += chunk) {
    const int64_t len = std::min(chunk, n_k - s0);
    float* e = buf.kc.data();
    for (int64_t i = 0; i < len; ++i) simd::exp_add(k + (s0 + i) * dk, qm.data(), e + i * dk, dk);
    std::fill(buf.t1.begin(), buf.t1.begin() + len * dk, 0.f);
    std::fill(gv + s0 * dv, gv + (s0 + len) * dv, 0.f);
    dkv_from_state(hd, len, e, v + s0 * dv, qst, buf.t1.data(), gk + s0 * dk, gv + s0 * dv);
  }
}

}  // namespace logattn::attention
