// One optimizer step, split as llm.c splits it so that the trainer, `bench train` and the
// tests share it: forward and backward of this process's share of the global batch, the
// explicit reduction of the gradients across processes (nothing to do in one process), then
// clipping and AdamW's update.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "model/model.h"
#include "train/adamw.h"
#include "train/async_sum.h"
#include "train/data.h"
#include "train/dist.h"

namespace logattn::train {

struct StepConfig {
  int64_t batch = 16;  // sequences per micro-batch in each process
  int64_t context = 128;
  int64_t accum = 1;  // micro-batches per step
  double clip = 1.0;  // maximum global gradient norm (0: off)
  // Several processes: each layer's gradients are summed across processes on a thread of
  // their own as soon as the backward has finished them, while it goes on with the layers
  // below (false: all of them after the backward). The sums are the same either way. It
  // pays only where that thread has a core the computation leaves free (README, "Training
  // on several machines").
  bool overlap_reduce = false;
};

struct StepResult {
  double loss = 0;       // mean over the global batch
  double grad_norm = 0;  // before clipping
  // Forward and backward (with the part of the reduction they hide when it overlaps), the
  // reduction's time not hidden behind them, clipping and AdamW.
  double compute_s = 0, reduce_s = 0, update_s = 0;
};

// Scratch kept from step to step.
struct StepBuffers {
  std::vector<int32_t> x, y;        // one micro-batch of the global batch
  std::vector<float> acc;           // gradients summed over micro-batches (accum > 1)
  std::unique_ptr<AsyncSum> async;  // the overlapped reduction's thread
};

// Forward and backward of `accum` micro-batches. Each draws the global batch (processes x
// batch windows) from the sampler, which every process keeps in step, and takes this
// process's slice: rank r the windows [r batch, (r + 1) batch). Leaves the gradient of this
// process's mean loss in m.grads() (the micro-batches' gradients, each scaled by 1 / accum,
// summed in order) and returns that mean loss. With c.overlap_reduce and several processes,
// the gradients' sums across processes are under way when it returns; reduce() completes them.
double forward_backward(model::Model& m, BatchSampler& sampler, const Dist& dist,
                        const StepConfig& c, StepBuffers& buf);

// The gradients' reduction: their mean over processes (sum, then times 1 / processes), and
// the loss's. One process: nothing changes.
void reduce(const Dist& dist, const StepConfig& c, model::Model& m, StepBuffers& buf, double& loss);

// Clips the global norm to c.clip and applies AdamW at lr; returns the norm before clipping.
double update(model::Model& m, AdamW& opt, const StepConfig& c, double lr);

// The three above, timed; step (counted from 1) names the step in errors. Throws
// logattn::Error, the same on every process, when the loss is not finite (before any
// update).
StepResult train_step(model::Model& m, AdamW& opt, BatchSampler& sampler, const Dist& dist,
                      const StepConfig& c, double lr, int64_t step, StepBuffers& buf);

}  // namespace logattn::train
