// AdamW with PyTorch's semantics (decoupled weight decay applied as p *= 1 - lr * wd before
// the Adam update), per-parameter decay groups, global-norm gradient clipping, and the
// learning-rate schedule: linear warm-up, then cosine from max to min.
#pragma once

#include <cstdint>
#include <vector>

#include "model/params.h"

namespace logattn::train {

struct AdamWConfig {
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8, weight_decay = 0.1;
};

class AdamW {
 public:
  AdamW(const model::ParamLayout& layout, AdamWConfig cfg);
  // One update of w with gradients g at learning rate lr; step counts from 1.
  void update(float* w, const float* g, double lr);
  int64_t step() const { return step_; }
  std::vector<float>& m() { return m_; }
  std::vector<float>& v() { return v_; }
  void set_step(int64_t s) { step_ = s; }

 private:
  AdamWConfig cfg_;
  std::vector<uint8_t> decay_;  // per element: 1 where weight decay applies
  std::vector<float> m_, v_;
  int64_t step_ = 0;
};

// Scales g so that its global L2 norm is at most max_norm (if max_norm > 0); returns the
// norm before clipping.
double clip_grad_norm(std::vector<float>& g, double max_norm);

// Warm-up (linear from 0) for `warmup` steps, then cosine from max_lr to min_lr at `total`.
double learning_rate(int64_t step, int64_t warmup, int64_t total, double max_lr, double min_lr);

}  // namespace logattn::train
