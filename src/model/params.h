// The model's parameters in one contiguous float buffer, each a named view with the
// reference's state_dict name and shape (docs/design.md section 2), in the reference's order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"

namespace logattn::model {

struct ParamInfo {
  std::string name;
  std::vector<int64_t> shape;
  int64_t offset = 0;
  int64_t size = 0;
  bool decay = false;   // AdamW weight decay: Linear and Embedding weights only
  bool matrix = false;  // a weight matrix (2-D): stored typed when the model's weights are
};

// Float32 weights: every parameter in one float buffer, offsets into it. Typed weights
// (matrices_apart): the vectors (LayerNorm, biases) in the float buffer, the matrices in a
// store of their own with offsets counted in elements of that store, so that a matrix's
// offset indexes its elements whatever their type (and, every matrix holding a multiple of
// 32 elements per row, offset / 32 indexes q8_0's scales).
class ParamLayout {
 public:
  explicit ParamLayout(const ModelConfig& cfg, bool matrices_apart = false);
  const std::vector<ParamInfo>& params() const { return params_; }
  int64_t total() const { return total_; }                // floats in the float buffer
  int64_t matrix_total() const { return matrix_total_; }  // elements of the matrices apart
  bool matrices_apart() const { return matrices_apart_; }
  const ParamInfo& find(const std::string& name) const;  // throws if absent
  // "name[i]" of the element at a buffer index, for messages.
  std::string name_of(int64_t index) const;

  // Offsets of the tensors the model uses (indices into the buffer).
  struct Layer {
    int64_t ln_w, ln_b, w1, b1, w2, b2, w3;
    int64_t end;  // float32 weights: one past the layer's last parameter, layer l is [ln_w, end)
  };
  int64_t embed = 0, pos_w = 0, pos_b = 0, lnf_w = 0, lnf_b = 0;
  std::vector<Layer> layers;

 private:
  int64_t add(std::string name, std::vector<int64_t> shape, bool decay);
  std::vector<ParamInfo> params_;
  int64_t total_ = 0, matrix_total_ = 0;
  bool matrices_apart_ = false;
};

// The reference's initialisation: embedding uniform(-1, 1) / sqrt(d_emb); Linear weights
// and biases uniform(+-1/sqrt(fan_in)) (PyTorch's default); LayerNorm weight 1, bias 0.
void init_params(const ModelConfig& cfg, const ParamLayout& layout, uint64_t seed, float* w);

}  // namespace logattn::model
