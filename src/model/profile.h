// Where a training step's or a generation step's time goes: wall time per operation of the
// model, forward and backward apart, gathered only while a Profile is attached (`logattn
// bench train --profile`, `logattn bench generate --profile`). Each operation names the
// kernel that runs it.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>

namespace logattn::model {

enum class Op : int {
  kEmbedding,     // token rows of the embedding (copies; backward: row sums)
  kPosition,      // EmbedPosition: Linear to (u, l) and the log-space recurrence
  kLayerNorm,     // every LayerNorm, the final one included
  kProjection,    // Linear to q, k, log v (W1)
  kPermute,       // token-major <-> head-major copies around the attention
  kAttention,     // log-attention (or the twin's softmax attention), all heads
  kFusedStep,     // one sequence's one-token step: W1 and the attention's step, head by head
  kMix,           // Linear after the attention (W2)
  kGlu,           // GLU
  kOut,           // Linear after GLU (W3)
  kResidual,      // residual additions
  kHead,          // logits = x embed^T (and its two backward products)
  kCrossEntropy,  // softmax cross-entropy and its gradient
  kCount
};

inline constexpr int kOpCount = static_cast<int>(Op::kCount);

const char* op_name(Op op);
// The kernel family of an operation: "gemm" (ops::gemm's backend), "attention kernel", ...
const char* op_kernel(Op op);

struct Profile {
  std::array<std::array<double, kOpCount>, 2> seconds{};  // [forward, backward][op]
};

}  // namespace logattn::model
