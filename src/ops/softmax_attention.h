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

// Generation: one token per head against a key/value cache that grows by it (the cost per
// token grows with the context, unlike log-attention's constant state).
// q, k: [B, H, dk], lv: [B, H, dv] -> logy: [B, H, dv]; cache_k[b * H + h]: [n, dk] and
// cache_v[b * H + h]: [n, dv] are appended to.
void softmax_attention_step(int64_t B, int64_t H, int64_t dk, int64_t dv, const float* q,
                            const float* k, const float* lv, float* logy,
                            std::vector<float>* cache_k, std::vector<float>* cache_v);

}  // namespace logattn::ops
