// Kernels over one attention head. They take raw row-major arrays and dimensions; shape
// checks, batching and threading live in attention.cc.
//
// Stability (docs/design.md section 1): each chunk uses per-feature references mc (keys) and cv
// (log-values) that are maxima over the state and the chunk. A query early in a chunk may
// see only keys far below mc; when the gap between mc and what the chunk's first query
// sees exceeds kMaxGap the chunk is split in two (recursively; a chunk of one token has no
// gap), so the normaliser of every query is at least exp(-kMaxGap) in scaled units and
// never underflows. For log-values, an output whose scaled numerator falls below
// kTinyRatio of its normaliser is recomputed in float64 from the state and the chunk.
#pragma once

#include <cstdint>
#include <vector>

namespace logattn::attention {

inline constexpr float kMaxGap = 30.f;
inline constexpr float kTinyRatio = 1e-25f;

struct HeadDims {
  int64_t dk = 0;
  int64_t dv = 0;
  bool log_values = false;
};

// One head's state (see AttentionState): m [dk], z [dk], c [dv], s [dk, dv].
struct HeadState {
  float* m;
  float* z;
  float* c;
  float* s;
};

// Scratch buffers of one thread, kept across calls (attention.cc holds one per thread) so
// that repeated calls do not pay for fresh pages: O(chunk^2 + chunk (dk + dv)) for the
// forward; the backward's per-head arrays (folded queries, centred or scaled values) are
// O(n (dk + dv)) and stay at the largest size a thread has used.
struct ChunkBuffers {
  std::vector<float> kc, vc, p, a, num, den, rowmax, mc, cv, cref, t1, t2;
  std::vector<double> dbl;
  std::vector<float> head_q, head_c, head_v, head_y;  // backward_head, per head
  std::vector<float> log_v, log_y, log_g;             // log-value backward, per head
  std::vector<float> state;                           // a head's state when none is given
  void reserve(int64_t chunk, const HeadDims& hd);
};

// Causal forward over n tokens continuing from st (updated to after the last key).
// q: [n, dk], k: [n, dk], v: [n, dv], y: [n, dv], log_d: [n] or nullptr.
void causal_forward_head(const HeadDims& hd, int64_t n, int64_t chunk, const float* q,
                         const float* k, const float* v, float* y, float* log_d, HeadState st,
                         ChunkBuffers& buf);

// Adds n keys and values to st. k: [n, dk], v: [n, dv].
void absorb_head(const HeadDims& hd, int64_t n, int64_t chunk, const float* k, const float* v,
                 HeadState st, ChunkBuffers& buf);

// Reads n queries against st (every query sees every key in it).
// q: [n, dk], y: [n, dv], log_d: [n] or nullptr.
void readout_head(const HeadDims& hd, int64_t n, int64_t chunk, const float* q, float* y,
                  float* log_d, HeadState st, ChunkBuffers& buf);

// One token: absorb k, v, then read q. q: [dk], k: [dk], v: [dv], y: [dv], log_d: [1] or
// nullptr. work: at least 2 (dk + dv) floats.
void step_head(const HeadDims& hd, const float* q, const float* k, const float* v, float* y,
               float* log_d, HeadState st, float* work);

// Backward of the signed-value forward (log-values are reduced to it in attention.cc).
// q, k: [n, dk], v, y, gy: [n, dv], log_d: [n]; gq, gk: [n, dk], gv: [n, dv].
// st_in: the forward's starting state (copied; gradients do not flow into it), its
// references m and z being what it was; s scaled with c = 0.
// center_values: subtract the mean value first (exact; better conditioned for signed values).
void backward_head(const HeadDims& hd, bool causal, bool center_values, int64_t n_q, int64_t n_k,
                   int64_t chunk, const float* q, const float* k, const float* v, const float* y,
                   const float* log_d, const float* gy, float* gq, float* gk, float* gv,
                   const float* st_m, const float* st_z, const float* st_s, ChunkBuffers& buf);

}  // namespace logattn::attention
