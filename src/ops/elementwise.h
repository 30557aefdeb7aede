// Small row-wise operations of the model: linear layers on top of gemm, GLU, the
// cross-entropy, and the log-space linear recurrence of EmbedPosition.
#pragma once

#include <cstdint>

namespace logattn::ops {

// sums [d] += column sums of x [n, d].
void column_sums(int64_t n, int64_t d, const float* x, float* sums);

// y [n, out] += b [out], row by row.
void add_bias(int64_t n, int64_t out, const float* b, float* y);
// y [n, out] = x [n, in] w^T (w: [out, in], PyTorch's layout) + b [out] (b may be null).
void linear_forward(int64_t n, int64_t in, int64_t out, const float* x, const float* w,
                    const float* b, float* y);
// dx [n, in] (= or += when accumulate; skipped if null), dw [out, in] +=, db [out] += (if
// not null).
void linear_backward(int64_t n, int64_t in, int64_t out, const float* x, const float* w,
                     const float* dy, float* dx, float* dw, float* db, bool accumulate);

// GLU over the last dim: g [n, 2d] -> y [n, d] = g[:, :d] * sigmoid(g[:, d:]).
void glu_forward(int64_t n, int64_t d, const float* g, float* y);
void glu_backward(int64_t n, int64_t d, const float* g, const float* dy, float* dg);

// Mean cross-entropy of logits [n, v] against targets [n] (in [0, v)); dlogits [n, v] =
// (softmax - onehot) * scale, when dlogits is not null. Returns the mean loss (nats).
double cross_entropy(int64_t n, int64_t v, const float* logits, const int32_t* targets,
                     float* dlogits, float scale);

// EmbedPosition's recurrence, per row b and feature j, t = 0..n-1:
//   h_t = logaddexp(log a_t + h_{t-1}, l_t),  log a_t = logsigmoid(u_t),
// with h_{-1} = h0[b, j] (0 for no earlier context). ul: [B, n, 2d] (u then l per token),
// h: [B, n, d].
void log_recurrence_forward(int64_t batch, int64_t n, int64_t d, const float* ul, const float* h0,
                            float* h);
// dh: [B, n, d] -> dul: [B, n, 2d]. (h0 is a constant.)
void log_recurrence_backward(int64_t batch, int64_t n, int64_t d, const float* ul, const float* h0,
                             const float* h, const float* dh, float* dul);

}  // namespace logattn::ops
