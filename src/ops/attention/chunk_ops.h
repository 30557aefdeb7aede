// Building blocks shared by the forward and backward kernels of one head.
#pragma once

#include <cstdint>

#include "ops/attention/head_kernels.h"

namespace logattn::attention {

// Moves a state's key references to mc (mc >= m): rows of s and z scale by exp(m - mc).
// Also serves the backward's reverse state (m: query maxima, z: sums of c, s: sums of g).
void rebase_keys(const HeadDims& hd, HeadState st, const float* mc);

// Moves the state's log-value references to cv (cv >= c): columns of s scale by exp(c - cv).
void rebase_values(const HeadDims& hd, HeadState st, const float* cv);

// References for tokens [0, n): mc [dk] = max(m, k), and for log-values cv [dv] = max(c, v).
// Returns the largest gap between a reference and what token 0 sees (the state and itself).
// k: [n, dk], v: [n, dv].
float chunk_references(const HeadDims& hd, int64_t n, const float* k, const float* v, HeadState st,
                       float* mc, float* cv);

// kc [n, dk] = exp(k - m); for log-values vc [n, dv] = exp(v - c) (0 in columns that have
// seen only -inf). Returns the values to use: buf.vc, or v itself when signed.
const float* scale_chunk(const HeadDims& hd, int64_t n, const float* k, const float* v,
                         HeadState st, ChunkBuffers& buf);

// s [dk, dv] += kc^T vals, z [dk] += column sums of kc. kc: [n, dk], vals: [n, dv].
void accumulate(const HeadDims& hd, int64_t n, const float* kc, const float* vals, HeadState st);

// p [n, dk] = exp(q + m - rowmax), rowmax [n] = max_d (q[t, d] + m[d]). q: [n, dk].
void query_weights(const HeadDims& hd, int64_t n, const float* q, const float* m, float* p,
                   float* rowmax);

}  // namespace logattn::attention
