// Conventional causal softmax attention, the baseline twin of the log-attention model: the
// same log-value interface (values exp(log v), returns log y), scores q . k / sqrt(d_key).
// Quadratic in the sequence: the weights P [B, H, T, T] are kept for the backward.
#pragma once

#include <cstdint>
#include <vector>

namespace logattn::ops {

// q, k: [B, H, T, dk], lv: [B, H, T, dv] -> logy: [B, H, T, dv]; p: [B, H, T, T] (saved).
void softmax_attention_forward(int64_t B, int64_t H, int64_t T, int64_t dk, int64_t dv,
                               const float* q, const float* k, const float* lv, float* logy,
                               float* p);

// glogy: [B, H, T, dv] = dL/d(log y) -> gq, gk: [B, H, T, dk], glv: [B, H, T, dv].
void softmax_attention_backward(int64_t B, int64_t H, int64_t T, int64_t dk, int64_t dv,
                                const float* q, const float* k, const float* lv, const float* logy,
                                const float* p, const float* glogy, float* gq, float* gk,
                                float* glv);

// Generation: a key/value cache per head that grows with the context (the cost per token
// grows with it, unlike log-attention's constant state). Values are kept as log-values and
// scaled, exp(lv - c) with c the column maxima so far, so that products run in float32
// through BLAS; outputs whose scaled sums underflow are recomputed in float64, as in the
// forward.
struct SoftmaxCache {
  std::vector<float> k;   // [n, dk]
  std::vector<float> lv;  // [n, dv] log-values
  std::vector<float> vc;  // [n, dv] exp(lv - c)
  std::vector<float> c;   // [dv] column maxima of lv (-inf while a column holds only -inf)
  int64_t n = 0;
};

// Appends T tokens to each head's cache and attends their queries to it, causally (query t
// sees the cached keys and new keys up to t). T = 1 is the one-token step; a prompt goes in
// chunks. q, k: [B, H, T, dk], lv: [B, H, T, dv] -> logy: [B, H, T, dv]; caches[b * H + h].
void softmax_attention_extend(int64_t B, int64_t H, int64_t T, int64_t dk, int64_t dv,
                              const float* q, const float* k, const float* lv, float* logy,
                              SoftmaxCache* caches);

}  // namespace logattn::ops
