// `logattn train`, `logattn eval`, and the default job (train the small preset on the
// embedded corpus for a few minutes, evaluate, show what it learned).
#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/progress.h"
#include "generate/generator.h"
#include "generate/sample.h"
#include "io/json.h"
#include "logattn/error.h"
#include "model/checkpoint.h"
#include "tokenizer/tokenizer.h"
#include "train/trainer.h"

namespace logattn::cli {

namespace {

std::string duration(double s) {
  const int64_t t = static_cast<int64_t>(s + 0.5);
  return t >= 60 ? fmt::format("{}m{:02}s", t / 60, t % 60) : fmt::format("{}s", t);
}

void declare_train_options(OptionTable& t, train::TrainConfig& c) {
  t.add("--preset", &c.preset, "model preset: small, paper or tiny")
      .add("--model-config", &c.model_config,
           "JSON model configuration (overrides --preset; with --init, for a checkpoint without "
           "one)")
      .add("--init", &c.init, "start from this checkpoint's weights and configuration")
      .add("--attention", &c.attention, "log (the paper's) or softmax (the conventional twin)")
      .add("--tokenizer", &c.tokenizer,
           "bytes or gpt2 (default: gpt2 if the model's vocabulary holds it, else bytes)")
      .add("--gpt2-dir", &c.gpt2_dir, "folder of GPT-2's encoder.json and vocab.bpe")
      .add("--data", &c.data, "text file or folder of text files, tokenised and cached")
      .add("--tokens", &c.tokens, "training tokens as a .bin file (uint16), instead of --data")
      .add("--val-tokens", &c.val_tokens, "validation tokens as a .bin file")
      .add("--out", &c.out, "run folder: checkpoint, resume state, log.jsonl, loss.svg")
      .add("--steps", &c.steps, "optimizer steps")
      .add("--max-minutes", &c.max_minutes, "stop cleanly after this many minutes (0: no limit)")
      .add("--batch", &c.batch, "sequences per micro-batch")
      .add("--context", &c.context, "tokens per sequence (0: the model's context)")
      .add("--accum", &c.accum, "micro-batches per optimizer step (gradient accumulation)")
      .add("--overlap-reduce", &c.overlap_reduce,
           "under mpirun: sum each layer's gradients across processes while the backward goes on")
      .add("--lr", &c.lr, "maximum learning rate")
      .add("--min-lr", &c.min_lr, "final learning rate of the cosine schedule")
      .add("--warmup", &c.warmup, "warm-up steps")
      .add("--weight-decay", &c.weight_decay, "AdamW weight decay (Linear and Embedding weights)")
      .add("--clip", &c.clip, "gradient clipping: maximum global norm (0: off)")
      .add("--eval-every", &c.eval_every, "steps between evaluations and checkpoints")
      .add("--eval-batches", &c.eval_batches, "validation batches per evaluation")
      .add("--seed", &c.seed, "random seed (initialisation, batches)")
      .add("--resume", &c.resume, "continue the run in --out from its resume state")
      .add("--chat-template", &c.chat_template,
           "JSON chat template to record in the checkpoint, for logattn serve's chat endpoint");
}

// Under mpirun, rank 0 alone prints; the others train silently.
train::TrainResult train_with_progress(const train::TrainConfig& c, const OptionTable& table) {
  const auto& dist = train::Dist::get();
  // Before anything else: processes started with different options would hang, crash in MPI
  // or mix settings silently.
  dist.require_same(table.items(), "train");
  if (!dist.root()) return train::run_training(c, [](const train::StepReport&) {});
  fmt::print("logattn train\nconfig: {} processes={} global-batch={}\n{}\n",
             table.describe() + " " + machine_config(), dist.size(),
             dist.size() * c.batch * c.accum, matrix_product_rate());
  if (dist.size() > 1) fmt::print("data parallel: {}\n", dist.describe());
  std::fflush(stdout);
  Progress progress("train", c.steps);
  double last_val = -1;
  int64_t reported = 0;
  const int64_t plain_every = std::max<int64_t>(1, c.steps / 20);
  std::unique_ptr<Progress> data_bar;
  auto data_progress = [&](int64_t done, int64_t total) {
    if (!data_bar) data_bar = std::make_unique<Progress>("tokenize", total);
    data_bar->update(done);
    if (done == total) data_bar->finish();
  };
  auto res = train::run_training(
      c,
      [&](const train::StepReport& r) {
        if (r.val_loss >= 0) last_val = r.val_loss;
        const std::string status = fmt::format(
            "step {}/{} loss {:.4f}{} | {:.0f} tok/s{} | {} left", r.step, r.steps, r.loss,
            last_val >= 0 ? fmt::format(" val {:.4f}", last_val) : "", r.tokens_per_s,
            dist.size() > 1 ? fmt::format(" | reduce {:.0f}%", 100 * r.reduce_share) : "",
            duration(r.eta_s));
        if (progress.on_terminal()) {
          progress.update(r.step, status);
        } else if (++reported == 10 || r.evaluated || r.step % plain_every == 0) {
          // The tenth step of this run gives a throughput past the warm-up early on.
          fmt::print("{}\n", status);
          std::fflush(stdout);
        }
      },
      data_progress);
  progress.finish();
  if (res.stopped_by_signal)
    fmt::print(
        "stopped by {} at step {}: checkpoint and resume file of that step written; "
        "continue with --resume\n",
        res.stopped_by_signal == SIGINT ? "SIGINT" : "SIGTERM", res.steps_done);
  fmt::print("trained {} steps; checkpoint {}; log {}/log.jsonl; curve {}/loss.svg\n",
             res.steps_done, res.checkpoint, c.out, c.out);
  return res;
}

struct EvalConfig {
  std::string model;
  std::string config;
  std::string gpt2_dir;
  std::string data;
  std::string tokens;
  int64_t batch = 8;
  int64_t context = 0;
  bool per_token = false;
  bool json = false;
};

// eval --per-token: the whole file as one text through the constant-size state (any length),
// each token's log-probability given all before it, as the server's echo gives them.
void print_per_token(model::Model& m, const train::TokenFile& tokens, const std::string& model) {
  std::vector<int32_t> ids(static_cast<size_t>(tokens.size()));
  for (int64_t i = 0; i < tokens.size(); ++i) ids[i] = tokens[i];
  generate::Generator g(m);
  std::vector<generate::TokenLogprob> lps;
  g.feed(ids, 512, lps, 0);
  nlohmann::json lp = nlohmann::json::array();
  double sum = 0;
  for (const auto& t : lps) {
    lp.push_back(std::isnan(t.logprob) ? nlohmann::json(nullptr) : nlohmann::json(t.logprob));
    if (!std::isnan(t.logprob)) sum -= t.logprob;
  }
  const int64_t scored = static_cast<int64_t>(lps.size()) - 1;
  const nlohmann::json out = {{"model", model},
                              {"tokens", ids},
                              {"token_logprobs", lp},
                              {"loss", scored > 0 ? sum / static_cast<double>(scored) : 0.0}};
  fmt::print("{}\n", io::dump_json(out));
}

int run_eval(const EvalConfig& e, const OptionTable& table) {
  if (e.model.empty()) throw Error("eval: --model is required");
  if (e.data.empty() == e.tokens.empty())
    throw Error("eval: give exactly one of --data and --tokens");
  model::Checkpoint info;
  model::Model m = model::load_checkpoint(e.model, &info, e.config);
  std::string bin = e.tokens;
  std::string tmp_dir;
  // Removed however this function ends (an error included).
  struct RemoveDir {
    const std::string& dir;
    ~RemoveDir() {
      std::error_code ec;
      if (!dir.empty()) std::filesystem::remove_all(dir, ec);
    }
  } remove_tmp{tmp_dir};
  if (!e.data.empty()) {
    // The checkpoint tokenizer's ids of the whole text (each file a document), in a
    // temporary folder.
    const auto tok = tokenizer::load_tokenizer(info.tokenizer, e.gpt2_dir);
    tmp_dir =
        (std::filesystem::temp_directory_path() / ("logattn-eval-" + std::to_string(::getpid())))
            .string();
    std::filesystem::create_directories(tmp_dir);
    const auto toks = train::encode_documents(e.data, *tok);
    if (toks.empty()) throw Error("eval: " + e.data + " is empty");
    bin = tmp_dir + "/eval.bin";
    train::write_tokens(bin, toks);
  }
  const int64_t T = e.context > 0 ? e.context : m.config().context;
  double loss;
  int64_t n;
  {
    train::TokenFile tokens(bin);
    n = tokens.size();
    for (int64_t i = 0; i < n; ++i)
      if (tokens[i] >= m.config().vocab)
        throw Error("eval: token id " + std::to_string(tokens[i]) + " is outside the vocabulary");
    if (e.per_token) {
      if (n < 1) throw Error("eval: the text is empty");
      print_per_token(m, tokens, e.model);
      return 0;
    }
    loss = train::evaluate(m, tokens, T, 0, e.batch);
  }
  if (e.json) {
    // The path through the JSON library: quotes or backslashes in it stay valid JSON.
    const nlohmann::json out = {{"model", e.model}, {"tokens", n}, {"context", T}, {"loss", loss}};
    fmt::print("{}\n", io::dump_json(out));
  } else {
    fmt::print(
        "config: {}\n{}: mean cross-entropy {:.4f} nats/token ({:.4f} bits) over {} tokens, "
        "context {}\n",
        table.describe() + " " + machine_config(), e.model, loss, loss / std::log(2.0), n, T);
  }
  return 0;
}

}  // namespace

Runner add_train_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("train", "Train the language model (GPT-2 or byte-level tokens)");
  auto cfg = std::make_shared<train::TrainConfig>();
  auto table = std::make_shared<OptionTable>();
  declare_train_options(*table, *cfg);
  table->attach(cmd);
  return [cfg, table, cmd]() -> int {
    if (!cmd->parsed()) return -1;
    const auto res = train_with_progress(*cfg, *table);
    // Stopped by a signal: the shell's convention, 128 + the signal's number.
    return res.stopped_by_signal ? 128 + res.stopped_by_signal : 0;
  };
}

Runner add_eval_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "eval", "Mean cross-entropy (nats per token) of a checkpoint on a text or .bin file");
  auto cfg = std::make_shared<EvalConfig>();
  auto table = std::make_shared<OptionTable>();
  table->add("--model", &cfg->model, "checkpoint (.safetensors)")
      .add("--config", &cfg->config, "JSON model configuration, for checkpoints without one")
      .add("--data", &cfg->data, "text file or folder (tokenised as the checkpoint says)")
      .add("--gpt2-dir", &cfg->gpt2_dir, "folder of GPT-2's encoder.json and vocab.bpe")
      .add("--tokens", &cfg->tokens, "token .bin file (uint16)")
      .add("--batch", &cfg->batch, "windows per batch")
      .add("--context", &cfg->context, "tokens per window (0: the model's context)")
      .add("--per-token", &cfg->per_token,
           "the whole text as one sequence (any length): JSON of each token's log-probability "
           "given all before it, as serve's echo gives them")
      .add("--json", &cfg->json, "print JSON");
  table->attach(cmd);
  return [cfg, table, cmd] { return cmd->parsed() ? run_eval(*cfg, *table) : -1; };
}

Runner add_demo_command(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("demo",
                         "The default job: train the small preset on the fortunes corpus for a few "
                         "minutes, evaluate it, and show a sample of what it learned");
  auto cfg = std::make_shared<train::TrainConfig>();
  cfg->out = "runs/demo";
  // About two minutes on two cores: 1000 steps of 8 x 128 bytes.
  cfg->steps = 1000;
  cfg->batch = 8;
  cfg->context = 128;
  cfg->lr = 2e-3;
  cfg->min_lr = 2e-4;
  cfg->warmup = 50;
  cfg->eval_every = 100;
  cfg->eval_batches = 8;
  cfg->max_minutes = 5;
  auto table = std::make_shared<OptionTable>();
  declare_train_options(*table, *cfg);
  table->attach(cmd);
  return [cfg, table, cmd]() -> int {
    if (!cmd->parsed()) return -1;
    const auto res = train_with_progress(*cfg, *table);
    if (res.stopped_by_signal) return 128 + res.stopped_by_signal;
    model::Model m = model::load_checkpoint(res.checkpoint);
    fmt::print("validation loss {:.4f} nats/byte (a uniform guess is {:.4f})\n", res.val_loss,
               std::log(256.0));
    generate::SampleOptions so;
    so.tokens = 300;
    so.seed = cfg->seed;
    const std::string prompt = "The ";
    fmt::print("sample (temperature {}):\n----\n{}{}\n----\n", so.temperature, prompt,
               generate::sample_bytes_windowed(m, prompt, so));
    return 0;
  };
}

}  // namespace logattn::cli
