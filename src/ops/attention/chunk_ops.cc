// Building blocks shared by the forward and backward kernels of one head.
#include "ops/attention/chunk_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "ops/matmul.h"
#include "simd/vexp.h"

namespace logattn::attention {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
}  // namespace
// Moves the state's key references to mc (mc >= m): rows of s and z scale by exp(m - mc).
void rebase_keys(const HeadDims& hd, HeadState st, const float* mc) {
  for (int64_t d = 0; d < hd.dk; ++d) {
    if (mc[d] == st.m[d]) continue;
    const float f = st.m[d] == kNegInf ? 0.f : std::exp(st.m[d] - mc[d]);
    st.z[d] *= f;
    float* row = st.s + d * hd.dv;
    for (int64_t j = 0; j < hd.dv; ++j) row[j] *= f;
    st.m[d] = mc[d];
  }
}

// Moves the state's log-value references to cv (cv >= c): columns of s scale by exp(c - cv).
void rebase_values(const HeadDims& hd, HeadState st, const float* cv) {
  for (int64_t j = 0; j < hd.dv; ++j) {
    if (cv[j] == st.c[j]) continue;  // also both -inf: nothing seen in this column yet
    const float g = st.c[j] == kNegInf ? 0.f : std::exp(st.c[j] - cv[j]);
    for (int64_t d = 0; d < hd.dk; ++d) st.s[d * hd.dv + j] *= g;
    st.c[j] = cv[j];
  }
}

// References for tokens [0, n): mc = max(m, keys) per key feature, cv = max(c, log-values)
// per value feature. Returns the largest gap between a reference and what the first token
// of the range sees (the state and itself).
float chunk_references(const HeadDims& hd, int64_t n, const float* k, const float* v, HeadState st,
                       float* mc, float* cv) {
  float gap = 0.f;
  for (int64_t d = 0; d < hd.dk; ++d) mc[d] = st.m[d];
  for (int64_t s = 0; s < n; ++s)
    for (int64_t d = 0; d < hd.dk; ++d) mc[d] = std::max(mc[d], k[s * hd.dk + d]);
  for (int64_t d = 0; d < hd.dk; ++d) gap = std::max(gap, mc[d] - std::max(st.m[d], k[d]));
  if (!hd.log_values) return gap;
  for (int64_t j = 0; j < hd.dv; ++j) cv[j] = st.c[j];
  for (int64_t s = 0; s < n; ++s)
    for (int64_t j = 0; j < hd.dv; ++j) cv[j] = std::max(cv[j], v[s * hd.dv + j]);
  for (int64_t j = 0; j < hd.dv; ++j) {
    const float first = std::max(st.c[j], v[j]);
    if (cv[j] != kNegInf) gap = std::max(gap, first == kNegInf ? INFINITY : cv[j] - first);
  }
  return gap;
}

// kc[s, :] = exp(k[s, :] - m); for log-values vc[s, :] = exp(v[s, :] - c) (0 in columns
// that have seen only -inf). Returns the values to use: vc, or v itself when signed.
const float* scale_chunk(const HeadDims& hd, int64_t n, const float* k, const float* v,
                         HeadState st, ChunkBuffers& buf) {
  for (int64_t s = 0; s < n; ++s)
    simd::exp_sub(k + s * hd.dk, st.m, buf.kc.data() + s * hd.dk, hd.dk);
  if (!hd.log_values) return v;
  float* cref = buf.cref.data();
  for (int64_t j = 0; j < hd.dv; ++j) cref[j] = st.c[j] == kNegInf ? 0.f : st.c[j];
  for (int64_t s = 0; s < n; ++s)
    simd::exp_sub(v + s * hd.dv, cref, buf.vc.data() + s * hd.dv, hd.dv);
  return buf.vc.data();
}

// s += kc^T vals, z += column sums of kc, over n tokens.
void accumulate(const HeadDims& hd, int64_t n, const float* kc, const float* vals, HeadState st) {
  ops::gemm(true, false, hd.dk, hd.dv, n, 1.f, kc, hd.dk, vals, hd.dv, 1.f, st.s, hd.dv);
  for (int64_t s = 0; s < n; ++s)
    for (int64_t d = 0; d < hd.dk; ++d) st.z[d] += kc[s * hd.dk + d];
}

// p[t, :] = exp(q[t, :] + m - rowmax[t]) with rowmax[t] = max_d (q[t, d] + m[d]).
void query_weights(const HeadDims& hd, int64_t n, const float* q, const float* m, float* p,
                   float* rowmax) {
  for (int64_t t = 0; t < n; ++t) {
    float* pt = p + t * hd.dk;
    float mx = kNegInf;
    for (int64_t d = 0; d < hd.dk; ++d) {
      pt[d] = q[t * hd.dk + d] + m[d];
      mx = std::max(mx, pt[d]);
    }
    for (int64_t d = 0; d < hd.dk; ++d) pt[d] -= mx;
    simd::exp(pt, pt, hd.dk);
    rowmax[t] = mx;
  }
}

}  // namespace logattn::attention
