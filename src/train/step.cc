#include "train/step.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

#include "logattn/error.h"

namespace logattn::train {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

double forward_backward(model::Model& m, BatchSampler& sampler, const Dist& dist,
                        const StepConfig& c, StepBuffers& buf) {
  const int64_t B = c.batch, T = c.context, global = B * dist.size();
  buf.x.resize(global * T), buf.y.resize(global * T);
  auto& g = m.grads();
  double loss = 0;
  for (int64_t a = 0; a < c.accum; ++a) {
    sampler.next(global, buf.x.data(), buf.y.data());
    const int64_t slice = dist.rank() * B * T;
    m.zero_grads();
    // Each micro-batch's gradient is scaled by 1 / accum (exactly when accum is a power of
    // two) and summed below in micro-batch order: N processes with --batch b then sum what
    // one process with --batch b --accum N does, in the same order.
    loss += m.forward(buf.x.data() + slice, buf.y.data() + slice, B, T, /*backward=*/true,
                      1.f / static_cast<float>(c.accum)) /
            static_cast<double>(c.accum);
    if (c.accum == 1) break;
    if (a == 0)
      buf.acc.assign(g.begin(), g.end());
    else
      for (size_t i = 0; i < g.size(); ++i) buf.acc[i] += g[i];
  }
  if (c.accum > 1) std::copy(buf.acc.begin(), buf.acc.end(), g.begin());
  return loss;
}

void reduce(const Dist& dist, model::Model& m, double& loss) {
  if (dist.size() == 1) return;
  auto& g = m.grads();
  dist.sum(g.data(), static_cast<int64_t>(g.size()));
  const float inv = 1.f / static_cast<float>(dist.size());
  for (float& x : g) x *= inv;
  dist.sum(&loss, 1);
  loss /= dist.size();
}

double update(model::Model& m, AdamW& opt, const StepConfig& c, double lr) {
  const double norm = clip_grad_norm(m.grads(), c.clip);
  opt.update(m.weights().data(), m.grads().data(), lr);
  return norm;
}

StepResult train_step(model::Model& m, AdamW& opt, BatchSampler& sampler, const Dist& dist,
                      const StepConfig& c, double lr, int64_t step, StepBuffers& buf) {
  StepResult r;
  auto t0 = Clock::now();
  r.loss = forward_backward(m, sampler, dist, c, buf);
  r.compute_s = seconds_since(t0);
  t0 = Clock::now();
  reduce(dist, m, r.loss);
  r.reduce_s = seconds_since(t0);
  if (!std::isfinite(r.loss))
    throw Error("train: the loss became " + std::to_string(r.loss) + " at step " +
                std::to_string(step) + "; lower --lr or check the data");
  t0 = Clock::now();
  r.grad_norm = update(m, opt, c, lr);
  r.update_s = seconds_since(t0);
  return r;
}

}  // namespace logattn::train
