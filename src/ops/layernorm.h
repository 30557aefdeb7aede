// LayerNorm over the last dimension (PyTorch's nn.LayerNorm, eps 1e-5).
#pragma once

#include <cstdint>

namespace logattn::ops {

inline constexpr float kLayerNormEps = 1e-5f;

// x: [n, d] -> y: [n, d]; mean, rstd: [n] (saved for the backward). w, b: [d].
void layernorm_forward(int64_t n, int64_t d, const float* x, const float* w, const float* b,
                       float* y, float* mean, float* rstd);

// dy: [n, d] -> dx: [n, d] (dx += when accumulate), dw, db: [d] (always +=).
void layernorm_backward(int64_t n, int64_t d, const float* x, const float* w, const float* mean,
                        const float* rstd, const float* dy, float* dx, float* dw, float* db,
                        bool accumulate);

}  // namespace logattn::ops
