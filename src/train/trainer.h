// The training loop: data, model, AdamW, schedule, evaluation, checkpoints, resume, logs.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "model/model.h"
#include "train/corpus.h"
#include "train/data.h"
#include "train/dist.h"

namespace logattn::train {

struct TrainConfig {
  std::string preset = "small";
  std::string model_config;  // JSON file; overrides the preset
  std::string init;          // checkpoint to start from (its configuration wins)
  std::string attention;     // "log" or "softmax" (the twin); empty: the configuration's
  std::string tokenizer;     // "bytes" or "gpt2"; empty: gpt2 if the vocabulary holds it
  std::string gpt2_dir;      // GPT-2's files (see tokenizer::load_tokenizer)
  std::string data = "/usr/share/games/fortunes";
  std::string tokens, val_tokens;  // .bin files instead of --data
  std::string out = "runs/default";
  int64_t steps = 600;
  double max_minutes = 0;  // stop early (cleanly) after this long; 0: no limit
  int64_t batch = 16;
  int64_t context = 0;  // 0: the model's
  int64_t accum = 1;
  bool overlap_reduce = false;  // see StepConfig
  double lr = 6e-4, min_lr = 6e-5;
  int64_t warmup = 50;
  double weight_decay = 0.1;
  double clip = 1.0;
  int64_t eval_every = 100;
  int64_t eval_batches = 16;
  uint64_t seed = 0;
  bool resume = false;
  std::string chat_template;  // JSON file recorded in the checkpoint (default: --init's, if any)
};

struct StepReport {
  int64_t step = 0, steps = 0;
  double loss = 0, val_loss = -1, lr = 0, tokens_per_s = 0, elapsed_s = 0, eta_s = 0;
  bool evaluated = false;
  double reduce_share = 0;  // of the step time so far, spent reducing gradients across processes
};

struct TrainResult {
  int64_t steps_done = 0;
  double last_loss = 0, val_loss = -1;
  std::string checkpoint;
  int stopped_by_signal = 0;  // SIGINT or SIGTERM: stopped after a checkpoint of that step
};

// Runs training; report is called after every step, data_progress (if any) while the text is
// tokenised (bytes done, bytes total). Throws logattn::Error on bad input.
TrainResult run_training(const TrainConfig& cfg,
                         const std::function<void(const StepReport&)>& report,
                         const std::function<void(int64_t, int64_t)>& data_progress = {});

// The tokenizer a run uses: the checkpoint's (--init), else the one asked for, else gpt2 if
// the model's vocabulary holds its 50,257 ids and bytes otherwise. Throws if the model's
// vocabulary is too small for it.
std::string resolve_tokenizer(const std::string& asked, const std::string& from_checkpoint,
                              int64_t model_vocab);

// Mean cross-entropy (nats/token) over windows of the model's context taken from tokens:
// `windows` windows evenly spaced (0: every non-overlapping window), batch at a time.
// With dist, each process evaluates its share of the windows and every process returns the
// mean over all.
double evaluate(model::Model& model, const TokenFile& tokens, int64_t context, int64_t windows,
                int64_t batch, const Dist* dist = nullptr);

}  // namespace logattn::train
