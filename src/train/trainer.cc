#include "train/trainer.h"

#include <bit>
#include <chrono>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/files.h"
#include "io/safetensors.h"
#include "logattn/error.h"
#include "model/checkpoint.h"
#include "tokenizer/tokenizer.h"
#include "train/adamw.h"
#include "train/plot.h"
#include "train/resume.h"
#include "util/checked.h"

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

model::Model make_model(const TrainConfig& c, std::string* tokenizer) {
  if (!c.init.empty()) {
    model::Checkpoint info;
    model::Model m = model::load_checkpoint(c.init, &info, c.model_config);
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
  if (!c.attention.empty()) {
    mc.attention = c.attention;
    mc.validate();
  }
  model::Model m(mc);
  m.init(c.seed);
  return m;
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
                int64_t batch) {
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
  std::vector<int32_t> x(batch * T), y(batch * T);
  double total = 0;
  for (int64_t i = 0; i < n; i += batch) {
    const int64_t b = std::min(batch, n - i);
    for (int64_t j = 0; j < b; ++j)
      for (int64_t t = 0; t < T; ++t) {
        x[j * T + t] = tokens[offsets[i + j] + t];
        y[j * T + t] = tokens[offsets[i + j] + t + 1];
      }
    total += model.forward(x.data(), y.data(), b, T, false) * b;
  }
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
  std::error_code ec;
  fs::create_directories(c.out, ec);
  if (ec) throw Error("train: cannot create the run folder " + c.out + ": " + ec.message());
  // One writer per run folder: a second train here would interleave checkpoints and logs.
  // Taking the lock is also the first write there: a folder that cannot be written is
  // refused before any data is read or step trained.
  const io::FolderLock lock(c.out, "train");
  // Temporary files of a run that was killed mid-write: the files they were to replace are
  // intact, so they are garbage.
  for (const auto& e : fs::directory_iterator(c.out))
    if (e.path().filename().string().find(".tmp.") != std::string::npos) fs::remove(e.path());
  std::string ckpt_tokenizer;
  model::Model m = make_model(c, &ckpt_tokenizer);
  const std::string tok_name = resolve_tokenizer(c.tokenizer, ckpt_tokenizer, m.config().vocab);
  const nlohmann::json train_config = train_config_json(c, tok_name);
  const int64_t T = c.context > 0 ? c.context : m.config().context;
  // The logits of a micro-batch are the largest buffer: batch x context x vocab floats.
  util::checked_product({c.batch, T, m.config().vocab}, "train: batch x context x vocab");
  // Data.
  std::string train_path = c.tokens, val_path = c.val_tokens;
  if (train_path.empty()) {
    const auto tok = tokenizer::load_tokenizer(tok_name, c.gpt2_dir);
    TokenizeOptions topt;
    topt.progress = data_progress;
    const auto split = prepare_tokens(c.data, c.out + "/data", *tok, topt);
    train_path = split.train;
    if (val_path.empty()) val_path = split.val;
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
  BatchSampler sampler(train_tokens, T, c.seed + 1);
  AdamW opt(m.layout(), AdamWConfig{0.9, 0.95, 1e-8, c.weight_decay});
  const std::string ckpt = c.out + "/model.safetensors", resume = c.out + "/resume.safetensors";
  const std::string log_path = c.out + "/log.jsonl";
  int64_t step = 0;
  if (c.resume) {
    if (!fs::exists(resume)) throw Error("train: --resume, but " + resume + " does not exist");
    step = load_resume(resume, m, opt, sampler, train_config);
    if (step > c.steps)
      throw Error("train: the run in " + c.out + " has trained " + std::to_string(step) +
                  " steps and --steps is " + std::to_string(c.steps) +
                  ": nothing to train; give a larger --steps to continue it");
  }
  // The log restarts with the run, or continues up to the resumed step.
  KeptLog kept = c.resume ? read_log(log_path, step) : KeptLog{};
  Series& train_series = kept.train;
  Series& val_series = kept.val;
  io::write_file_atomic(log_path, kept.text);
  std::ofstream log(log_path, std::ios::app);

  const int64_t B = c.batch;
  std::vector<int32_t> x(B * T), y(B * T);
  const auto t_start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  };
  const int64_t first = step;
  const StopSignals stop_signals;
  TrainResult res;
  double val_loss = -1;
  while (step < c.steps) {
    m.zero_grads();
    double loss = 0;
    for (int64_t a = 0; a < c.accum; ++a) {
      sampler.next(B, x.data(), y.data());
      loss +=
          m.forward(x.data(), y.data(), B, T, true, 1.f / static_cast<float>(c.accum)) / c.accum;
    }
    if (!std::isfinite(loss))
      throw Error("train: the loss became " + std::to_string(loss) + " at step " +
                  std::to_string(step + 1) + "; lower --lr or check the data");
    const double norm = clip_grad_norm(m.grads(), c.clip);
    const double lr = learning_rate(step, c.warmup, c.steps, c.lr, c.min_lr);
    opt.update(m.weights().data(), m.grads().data(), lr);
    ++step;
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
    const int signal = g_stop_signal;
    const bool stop_for_time = signal != 0 || (c.max_minutes > 0 && elapsed() > c.max_minutes * 60);
    const bool eval_now = step % c.eval_every == 0 || step == c.steps || stop_for_time;
    StepReport r;
    r.step = step, r.steps = c.steps, r.loss = loss, r.lr = lr;
    r.elapsed_s = elapsed();
    r.tokens_per_s =
        static_cast<double>((step - first) * B * T * c.accum) / std::max(1e-9, r.elapsed_s);
    r.eta_s = r.elapsed_s / static_cast<double>(step - first) * static_cast<double>(c.steps - step);
    nlohmann::json line = {{"step", step},
                           {"loss", loss},
                           {"lr", lr},
                           {"grad_norm", norm},
                           {"tokens_per_s", r.tokens_per_s},
                           {"elapsed_s", r.elapsed_s}};
    train_series.push_back({double(step), loss});
    if (eval_now) {
      if (val_tokens) {
        val_loss = evaluate(m, *val_tokens, T, c.eval_batches * B, B);
        line["val_loss"] = val_loss;
        val_series.push_back({double(step), val_loss});
        r.val_loss = val_loss;
      }
      r.evaluated = true;
      // Both files written whole before either is renamed: a failed write (disk full)
      // leaves the previous pair, never a checkpoint and a resume file of different steps.
      auto ckpt_file = model::stage_checkpoint(ckpt, m, tok_name, {{"step", std::to_string(step)}});
      auto resume_file = stage_resume(resume, m, opt, sampler, train_config, step);
      ckpt_file->commit();
      resume_file->commit();
      io::write_file_atomic(c.out + "/loss.svg",
                            loss_svg(train_series, val_series, "logattn: " + c.out));
    }
    log << line.dump() << "\n";
    log.flush();
    if (!log)
      throw Error("train: cannot write " + log_path + " (disk full?) at step " +
                  std::to_string(step));
    res.last_loss = loss;
    report(r);
    if (signal) res.stopped_by_signal = signal;
    if (stop_for_time) break;
  }
  res.steps_done = step;
  res.val_loss = val_loss;
  res.checkpoint = ckpt;
  return res;
}

}  // namespace logattn::train
