// Quantized copies of a float32 model for inference: every weight matrix stored as bf16 or
// q8_0 (ops/typed_matrix.h), LayerNorm parameters and biases kept float32.
#pragma once

#include "model/model.h"

namespace logattn::model {

// Throws logattn::Error if m is already typed (quantize its float32 checkpoint instead) or
// if q8_0's blocks of 32 do not divide a matrix's rows.
Model quantize_model(const Model& m, ops::WeightType type);

}  // namespace logattn::model
