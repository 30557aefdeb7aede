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
  const bool overlap = c.overlap_reduce && dist.size() > 1;
  if (overlap && !buf.async) buf.async = std::make_unique<AsyncSum>(dist);
  // Completes the gradients of [begin, end) (adding the earlier micro-batches' sum) and,
  // when overlapping, starts their sum across processes.
  auto finished = [&](int64_t begin, int64_t end) {
    if (c.accum > 1)
      for (int64_t i = begin; i < end; ++i) g[i] = buf.acc[i] + g[i];
    if (overlap && end > begin) buf.async->start(g.data() + begin, end - begin);
  };
  double loss = 0;
  for (int64_t a = 0; a < c.accum; ++a) {
    const bool last = a + 1 == c.accum;
    sampler.next(global, buf.x.data(), buf.y.data());
    const int64_t slice = dist.rank() * B * T;
    m.zero_grads();
    if (last && overlap) {
      const auto& layers = m.layout().layers;
      m.set_layer_grads_ready([&](int64_t l) { finished(layers[l].ln_w, layers[l].end); });
    }
    try {
      // Each micro-batch's gradient is scaled by 1 / accum (exactly when accum is a power of
      // two) and summed in micro-batch order: N processes with --batch b then sum what one
      // process with --batch b --accum N does, in the same order.
      loss += m.forward(buf.x.data() + slice, buf.y.data() + slice, B, T, /*backward=*/true,
                        1.f / static_cast<float>(c.accum)) /
              static_cast<double>(c.accum);
    } catch (const std::exception& e) {
      // The other processes wait in the sums already started for this one's: end the job.
      if (overlap && last) Dist::fail_job(e.what());
      throw;
    }
    if (last) break;
    if (a == 0)
      buf.acc.assign(g.begin(), g.end());
    else
      for (size_t i = 0; i < g.size(); ++i) buf.acc[i] += g[i];
  }
  if (c.accum > 1 || overlap) {
    m.set_layer_grads_ready({});
    // What the per-layer calls did not cover: the embedding and EmbedPosition before the
    // layers, the final LayerNorm after them (everything when not overlapping).
    const auto& layers = m.layout().layers;
    const int64_t total = static_cast<int64_t>(g.size());
    if (!overlap || layers.empty()) {
      finished(0, total);
    } else {
      finished(0, layers.front().ln_w);
      finished(layers.back().end, total);
    }
  }
  return loss;
}

void reduce(const Dist& dist, const StepConfig& c, model::Model& m, StepBuffers& buf,
            double& loss) {
  if (dist.size() == 1) return;
  auto& g = m.grads();
  if (c.overlap_reduce)
    buf.async->finish();
  else
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
  reduce(dist, c, m, buf, r.loss);
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
