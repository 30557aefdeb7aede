#include "train/trainer.h"

#include <bit>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>

#include "io/files.h"
#include "io/safetensors.h"
#include "logattn/error.h"
#include "model/chat_template.h"
#include "model/checkpoint.h"
#include "tokenizer/tokenizer.h"
#include "train/adamw.h"
#include "train/plot.h"
#include "train/resume.h"
#include "train/step.h"
#include "util/checked.h"
#include "util/kill_point.h"

namespace logattn::train {

namespace fs = std::filesystem;

namespace {

// SIGINT / SIGTERM while training: the step in flight finishes, its checkpoint and resume
// file are written, and training returns (TrainResult::stopped_by_signal).
volatile std::sig_atomic_t g_stop_signal = 0;
void on_stop_signal(int sig) {
  g_stop_signal = sig;
}

// Installs the handlers for its lifetime, then puts the previous ones back.
class StopSignals {
 public:
  StopSignals() {
    g_stop_signal = 0;
    old_int_ = std::signal(SIGINT, on_stop_signal);
    old_term_ = std::signal(SIGTERM, on_stop_signal);
  }
  ~StopSignals() {
    std::signal(SIGINT, old_int_);
    std::signal(SIGTERM, old_term_);
  }

 private:
  void (*old_int_)(int) = nullptr;
  void (*old_term_)(int) = nullptr;
};

model::Model make_model(const TrainConfig& c, std::string* tokenizer, std::string* chat_template) {
  if (!c.init.empty()) {
    model::Checkpoint info;
    model::Model m = model::load_checkpoint(c.init, &info, c.model_config);
    const auto it = info.metadata.find(model::kChatTemplateKey);
    if (it != info.metadata.end()) *chat_template = it->second;
    if (m.weight_type() != ops::WeightType::kF32)
      throw Error("train: --init " + c.init + " holds " + ops::weight_type_name(m.weight_type()) +
                  " weights; training starts from a float32 checkpoint");
    *tokenizer = info.tokenizer;
    return m;
  }
  model::ModelConfig mc = model::ModelConfig::preset(c.preset);
  if (!c.model_config.empty()) {
    io::require_regular_file(c.model_config, "train: --model-config");
    std::ifstream in(c.model_config);
    if (!in) throw Error("train: cannot open model configuration " + c.model_config);
    try {
      mc = model::ModelConfig::from_json(nlohmann::json::parse(in));
    } catch (const nlohmann::json::exception& e) {
      throw Error("train: " + c.model_config + " is not valid JSON: " + e.what());
    }
  }
  if (!c.attention.empty()) mc.attention = model::parse_attention(c.attention, "train");
  model::Model m(mc);
  m.init(c.seed);
  return m;
}

// A fingerprint of a token file: its size and 64 blocks of 4 KiB spread over it (FNV-1a),
// cheap enough to compare across processes on files of any size.
uint64_t fingerprint(const TokenFile& t) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](uint64_t v) { h = (h ^ v) * 1099511628211ull; };
  mix(static_cast<uint64_t>(t.size()));
  const int64_t block = 2048, blocks = 64;
  for (int64_t k = 0; k < blocks; ++k) {
    const int64_t start = t.size() <= block ? 0 : k * (t.size() - block) / (blocks - 1);
    for (int64_t i = start; i < std::min(t.size(), start + block); ++i) mix(t[i]);
    if (t.size() <= block) break;
  }
  return h;
}

// Every process must train on the same tokens: the batches are drawn alike everywhere.
void require_same_data(const Dist& dist, const TokenFile& t, const char* what) {
  uint64_t lo = fingerprint(t), hi = lo;
  dist.min_max(&lo, &hi);
  if (lo != hi)
    throw Error(std::string("train: the ") + what + " tokens differ between processes (" +
                t.path() + " on rank " + std::to_string(dist.rank()) +
                "): every process must read the same data");
}

// Rank 0's weights, AdamW state, sampler state and step, given to every process: they start
// (or resume) alike, whatever each could read.
void share_training_state(const Dist& dist, model::Model& m, AdamW& opt, BatchSampler& sampler,
                          int64_t& step) {
  if (dist.size() == 1) return;
  for (auto* v : {&m.weights(), &opt.m(), &opt.v()})
    dist.broadcast(v->data(), static_cast<int64_t>(v->size() * sizeof(float)));
  dist.broadcast(&step, sizeof step);
  std::string rng = sampler.rng_state();
  dist.broadcast(rng);
  sampler.set_rng_state(rng);
  opt.set_step(step);
}

}  // namespace

std::string resolve_tokenizer(const std::string& asked, const std::string& from_checkpoint,
                              int64_t model_vocab) {
  std::string name = asked;
  if (!from_checkpoint.empty()) {
    if (!asked.empty() && asked != from_checkpoint)
      throw Error("train: --tokenizer " + asked + ", but the checkpoint's tokenizer is " +
                  from_checkpoint);
    name = from_checkpoint;
  }
  if (name.empty()) name = tokenizer::default_tokenizer(model_vocab);
  const int64_t need = tokenizer::vocab_size_of(name);
  if (model_vocab < need)
    throw Error("train: the model's vocabulary (" + std::to_string(model_vocab) +
                ") is smaller than the " + name + " tokenizer's (" + std::to_string(need) +
                "); use --preset paper or a configuration with a larger vocab");
  return name;
}

double evaluate(model::Model& model, const TokenFile& tokens, int64_t context, int64_t windows,
                int64_t batch, const Dist* dist) {
  const int64_t T = context;
  if (T < 1 || batch < 1) throw Error("evaluate: the context and the batch must be at least 1");
  util::checked_product({batch, T, model.config().vocab}, "evaluate: batch x context x vocab");
  if (tokens.size() < T + 1)
    throw Error("evaluate: " + tokens.path() + " holds " + std::to_string(tokens.size()) +
                " tokens, fewer than the context (" + std::to_string(T) + ") + 1");
  const int64_t span = tokens.size() - T;  // window offsets in [0, span)
  const int64_t all = (tokens.size() - 1) / T;
  const int64_t n = windows > 0 ? std::min(windows, span) : all;
  std::vector<int64_t> offsets(n);
  for (int64_t i = 0; i < n; ++i) offsets[i] = windows > 0 ? i * span / n : i * T;
  // Several processes: each evaluates its share of the windows.
  const int64_t ranks = dist ? dist->size() : 1, rank = dist ? dist->rank() : 0;
  const int64_t lo = rank * n / ranks, hi = (rank + 1) * n / ranks;
  std::vector<int32_t> x(batch * T), y(batch * T);
  double total = 0;
  for (int64_t i = lo; i < hi; i += batch) {
    const int64_t b = std::min(batch, hi - i);
    for (int64_t j = 0; j < b; ++j)
      for (int64_t t = 0; t < T; ++t) {
        x[j * T + t] = tokens[offsets[i + j] + t];
        y[j * T + t] = tokens[offsets[i + j] + t + 1];
      }
    total += model.forward(x.data(), y.data(), b, T, false) * b;
  }
  if (dist) dist->sum(&total, 1);
  return total / static_cast<double>(n);
}

TrainResult run_training(const TrainConfig& c, const std::function<void(const StepReport&)>& report,
                         const std::function<void(int64_t, int64_t)>& data_progress) {
  if (c.steps < 1) throw Error("train: --steps must be at least 1");
  if (c.batch < 1 || c.accum < 1) throw Error("train: --batch and --accum must be at least 1");
  if (c.eval_every < 1) throw Error("train: --eval-every must be at least 1");
  if (!(c.lr > 0) || !(c.min_lr >= 0) || !std::isfinite(c.lr) || !std::isfinite(c.min_lr))
    throw Error("train: --lr must be positive and --min-lr at least 0, both finite");
  if (!(c.clip >= 0) || !std::isfinite(c.clip))
    throw Error("train: --clip must be finite and at least 0 (0: no clipping)");
  if (!(c.weight_decay >= 0) || !std::isfinite(c.weight_decay))
    throw Error("train: --weight-decay must be finite and at least 0");
  if (!(c.max_minutes >= 0) || !std::isfinite(c.max_minutes))
    throw Error("train: --max-minutes must be finite and at least 0 (0: no limit)");
  if (c.warmup < 0) throw Error("train: --warmup must be at least 0");
  if (c.eval_batches < 1) throw Error("train: --eval-batches must be at least 1");
  if (c.steps > util::kMaxCount) throw Error("train: --steps is more than 2^62");
  // The chat template the checkpoint records: --chat-template's (checked before anything
  // else is read), else --init's.
  std::string chat_template;
  if (!c.chat_template.empty())
    chat_template =
        model::ChatTemplate::from_file(c.chat_template, "train: --chat-template").to_json();
  const Dist& dist = Dist::get();
  const bool root = dist.root();
  // Rank 0 alone writes the run folder: checkpoint, resume file, log, curve, data cache.
  std::optional<io::FolderLock> lock;
  if (root) {
    std::error_code ec;
    fs::create_directories(c.out, ec);
    if (ec) throw Error("train: cannot create the run folder " + c.out + ": " + ec.message());
    // One writer per run folder: a second train here would interleave checkpoints and logs.
    // Taking the lock is also the first write there: a folder that cannot be written is
    // refused before any data is read or step trained.
    lock.emplace(c.out, "train");
    io::remove_stale_temporaries(c.out);  // of a run that was killed mid-write
  }
  std::string ckpt_tokenizer, init_chat_template;
  model::Model m = make_model(c, &ckpt_tokenizer, &init_chat_template);
  if (chat_template.empty()) chat_template = init_chat_template;
  const std::string tok_name = resolve_tokenizer(c.tokenizer, ckpt_tokenizer, m.config().vocab);
  // The model as each process built it (--init and --model-config name files, which may
  // differ between machines).
  Dist::Items model_items;
  const nlohmann::json model_json = m.config().to_json();
  for (const auto& [key, value] : model_json.items())
    model_items.emplace_back("the model's " + key, value.dump());
  model_items.emplace_back("the tokenizer", tok_name);
  dist.require_same(model_items, "train");
  const nlohmann::json train_config = train_config_json(c, tok_name, dist.size());
  const int64_t T = c.context > 0 ? c.context : m.config().context;
  // The logits of a micro-batch are the largest buffer: batch x context x vocab floats.
  util::checked_product({c.batch, T, m.config().vocab}, "train: batch x context x vocab");
  // Data: rank 0 tokenises --data into the run folder; the others read what it wrote.
  std::string train_path = c.tokens, val_path = c.val_tokens;
  if (train_path.empty()) {
    if (root) {
      const auto tok = tokenizer::load_tokenizer(tok_name, c.gpt2_dir);
      TokenizeOptions topt;
      topt.progress = data_progress;
      const auto split = prepare_tokens(c.data, c.out + "/data", *tok, topt);
      train_path = split.train;
      if (val_path.empty()) val_path = split.val;
    }
    dist.broadcast(train_path);
    dist.broadcast(val_path);
  }
  TokenFile train_tokens(train_path);
  std::optional<TokenFile> val_tokens;
  if (!val_path.empty()) val_tokens.emplace(val_path);
  auto check_ids = [&](const TokenFile& t) {
    for (int64_t i = 0; i < t.size(); ++i)
      if (t[i] >= m.config().vocab)
        throw Error("train: " + t.path() + " has token id " + std::to_string(t[i]) + " at " +
                    std::to_string(i) + ", outside the model's vocabulary of " +
                    std::to_string(m.config().vocab));
  };
  check_ids(train_tokens);
  if (val_tokens) check_ids(*val_tokens);
  require_same_data(dist, train_tokens, "training");
  if (val_tokens) require_same_data(dist, *val_tokens, "validation");
  BatchSampler sampler(train_tokens, T, c.seed + 1);
  AdamW opt(m.layout(), AdamWConfig{0.9, 0.95, 1e-8, c.weight_decay});
  const std::string ckpt = c.out + "/model.safetensors", resume = c.out + "/resume.safetensors";
  const std::string log_path = c.out + "/log.jsonl";
  int64_t step = 0;
  if (c.resume && root) {
    if (!fs::exists(resume)) throw Error("train: --resume, but " + resume + " does not exist");
    step = load_resume(resume, m, opt, sampler, train_config);
  }
  share_training_state(dist, m, opt, sampler, step);
  if (step > c.steps)
    throw Error("train: the run in " + c.out + " has trained " + std::to_string(step) +
                " steps and --steps is " + std::to_string(c.steps) +
                ": nothing to train; give a larger --steps to continue it");
  // The log restarts with the run, or continues up to the resumed step.
  KeptLog kept;
  std::optional<LogAppender> log;
  if (root) {
    if (c.resume) kept = read_log(log_path, step);
    io::write_file_atomic(log_path, kept.text);
    log.emplace(log_path);
  }
  Series& train_series = kept.train;
  Series& val_series = kept.val;

  const int64_t B = c.batch;
  const StepConfig step_config{B, T, c.accum, c.clip, c.overlap_reduce};
  StepBuffers buffers;
  const auto t_start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  };
  const int64_t first = step;
  const StopSignals stop_signals;
  TrainResult res;
  double val_loss = -1, reduce_s = 0, step_s = 0;
  while (step < c.steps) {
    const double lr = learning_rate(step, c.warmup, c.steps, c.lr, c.min_lr);
    const StepResult sr = train_step(m, opt, sampler, dist, step_config, lr, step + 1, buffers);
    ++step;
    reduce_s += sr.reduce_s;
    step_s += sr.compute_s + sr.reduce_s + sr.update_s;
    // A non-finite weight (an update blown up by a huge --lr) must never reach a checkpoint:
    // the run stops here, the last good checkpoint kept. Inf and NaN are the floats whose
    // exponent bits are all ones; an integer OR over them vectorises.
    uint32_t non_finite = 0;
    for (const float w : m.weights())
      non_finite |= (std::bit_cast<uint32_t>(w) & 0x7f800000u) == 0x7f800000u;
    if (non_finite)
      for (size_t i = 0; i < m.weights().size(); ++i)
        if (!std::isfinite(m.weights()[i]))
          throw Error("train: a weight became " + std::to_string(m.weights()[i]) + " at step " +
                      std::to_string(step) + " (" + m.layout().name_of(static_cast<int64_t>(i)) +
                      "); the checkpoint of the last evaluation is kept; lower --lr");
    // Every process stops after the same step: a signal or the time limit seen by any.
    const int signal = g_stop_signal;
    const bool stop_now =
        dist.any(signal != 0 || (c.max_minutes > 0 && elapsed() > c.max_minutes * 60));
    const bool eval_now = step % c.eval_every == 0 || step == c.steps || stop_now;
    StepReport r;
    r.step = step, r.steps = c.steps, r.loss = sr.loss, r.lr = lr;
    r.elapsed_s = elapsed();
    r.tokens_per_s = static_cast<double>((step - first) * B * T * c.accum * dist.size()) /
                     std::max(1e-9, r.elapsed_s);
    r.eta_s = r.elapsed_s / static_cast<double>(step - first) * static_cast<double>(c.steps - step);
    r.reduce_share = reduce_s / std::max(1e-9, step_s);
    nlohmann::json line = {{"step", step},
                           {"loss", sr.loss},
                           {"lr", lr},
                           {"grad_norm", sr.grad_norm},
                           {"tokens_per_s", r.tokens_per_s},
                           {"elapsed_s", r.elapsed_s}};
    train_series.push_back({double(step), sr.loss});
    if (eval_now) {
      if (val_tokens) {
        val_loss = evaluate(m, *val_tokens, T, c.eval_batches * B, B, &dist);
        line["val_loss"] = val_loss;
        val_series.push_back({double(step), val_loss});
        r.val_loss = val_loss;
      }
      r.evaluated = true;
    }
    if (root) {
      // The step's line first, then its checkpoint: killed between the two, the run resumes
      // from the previous checkpoint and drops the lines after it (read_log).
      log->append(line.dump() + "\n");
      util::kill_point("log", step);
      if (eval_now) {
        log->sync();
        std::map<std::string, std::string> checkpoint_metadata = {{"step", std::to_string(step)}};
        if (!chat_template.empty()) checkpoint_metadata[model::kChatTemplateKey] = chat_template;
        // Both files written whole before either is renamed: a failed write (disk full)
        // leaves the previous pair, never a checkpoint and a resume file of different steps.
        auto ckpt_file = model::stage_checkpoint(ckpt, m, tok_name, checkpoint_metadata);
        auto resume_file = stage_resume(resume, m, opt, sampler, train_config, step);
        ckpt_file->commit();
        util::kill_point("checkpoint", step);
        resume_file->commit();
        util::kill_point("resume", step);
        io::write_file_atomic(c.out + "/loss.svg",
                              loss_svg(train_series, val_series, "logattn: " + c.out));
      }
      report(r);
    }
    res.last_loss = sr.loss;
    if (signal) res.stopped_by_signal = signal;
    if (stop_now) break;
  }
  res.steps_done = step;
  res.val_loss = val_loss;
  res.checkpoint = ckpt;
  return res;
}

}  // namespace logattn::train
