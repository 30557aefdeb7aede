#include "model/profile.h"

namespace logattn::model {

const char* op_name(Op op) {
  switch (op) {
    case Op::kEmbedding:
      return "embedding";
    case Op::kPosition:
      return "position (Linear + recurrence)";
    case Op::kLayerNorm:
      return "LayerNorm";
    case Op::kProjection:
      return "Linear to q, k, log v";
    case Op::kPermute:
      return "head permutes";
    case Op::kAttention:
      return "attention";
    case Op::kFusedStep:
      return "Linear to q, k, log v + attention step";
    case Op::kMix:
      return "Linear after attention";
    case Op::kGlu:
      return "GLU";
    case Op::kOut:
      return "Linear after GLU";
    case Op::kResidual:
      return "residual adds";
    case Op::kHead:
      return "head (logits)";
    case Op::kCrossEntropy:
      return "cross-entropy";
    case Op::kCount:
      break;
  }
  return "?";
}

const char* op_kernel(Op op) {
  switch (op) {
    case Op::kProjection:
    case Op::kMix:
    case Op::kOut:
    case Op::kHead:
      return "gemm";
    case Op::kPosition:
      return "gemm + SLEEF";
    case Op::kAttention:
      return "logattn chunks (gemm inside)";
    case Op::kFusedStep:
      return "one-row kernel + step";
    case Op::kGlu:
    case Op::kCrossEntropy:
      return "SLEEF exp";
    default:
      return "logattn loops";
  }
}

}  // namespace logattn::model
