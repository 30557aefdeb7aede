#include "train/adamw.h"

#include <cmath>

namespace logattn::train {

AdamW::AdamW(const model::ParamLayout& layout, AdamWConfig cfg)
    : cfg_(cfg), decay_(layout.total(), 0), m_(layout.total(), 0.f), v_(layout.total(), 0.f) {
  for (const auto& p : layout.params())
    if (p.decay) std::fill(decay_.begin() + p.offset, decay_.begin() + p.offset + p.size, 1);
}

void AdamW::update(float* w, const float* g, double lr) {
  ++step_;
  const double bc1 = 1.0 - std::pow(cfg_.beta1, static_cast<double>(step_));
  const double bc2 = 1.0 - std::pow(cfg_.beta2, static_cast<double>(step_));
  const float b1 = static_cast<float>(cfg_.beta1), b2 = static_cast<float>(cfg_.beta2);
  const float step_size = static_cast<float>(lr / bc1);
  const float bc2_sqrt = static_cast<float>(std::sqrt(bc2));
  const float eps = static_cast<float>(cfg_.eps);
  const float shrink = static_cast<float>(1.0 - lr * cfg_.weight_decay);
  const int64_t n = static_cast<int64_t>(m_.size());
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    if (decay_[i]) w[i] *= shrink;
    m_[i] = b1 * m_[i] + (1.f - b1) * g[i];
    v_[i] = b2 * v_[i] + (1.f - b2) * g[i] * g[i];
    w[i] -= step_size * m_[i] / (std::sqrt(v_[i]) / bc2_sqrt + eps);
  }
}

double clip_grad_norm(std::vector<float>& g, double max_norm) {
  double s = 0.0;
  for (float x : g) s += double(x) * x;  // in order: deterministic
  const double norm = std::sqrt(s);
  if (max_norm > 0 && norm > max_norm) {
    const float f = static_cast<float>(max_norm / (norm + 1e-6));
    for (float& x : g) x *= f;
  }
  return norm;
}

double learning_rate(int64_t step, int64_t warmup, int64_t total, double max_lr, double min_lr) {
  if (warmup > 0 && step < warmup) return max_lr * static_cast<double>(step + 1) / warmup;
  if (step >= total) return min_lr;
  const double span = std::max<int64_t>(1, total - warmup);
  const double progress = static_cast<double>(step - warmup) / span;
  return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + std::cos(M_PI * progress));
}

}  // namespace logattn::train
