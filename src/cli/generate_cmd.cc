// `logattn generate`: stream a continuation of a prompt, one token at a time through the
// model's constant-size state; the state saves to and loads from a file.
#include <fmt/format.h>

#include <cstdio>
#include <fstream>
#include <iterator>

#include "cli/commands.h"
#include "cli/load_model.h"
#include "cli/options.h"
#include "generate/generator.h"
#include "io/files.h"
#include "logattn/error.h"
#include "model/checkpoint.h"
#include "tokenizer/tokenizer.h"

namespace logattn::cli {

std::pair<model::Model, std::unique_ptr<tokenizer::Tokenizer>> load_model_and_tokenizer(
    const std::string& what, const std::string& path, const std::string& config_json,
    const std::string& gpt2_dir, model::Checkpoint* info_out) {
  model::Checkpoint info;
  model::Model m = model::load_checkpoint(path, &info, config_json);
  if (info_out) *info_out = info;
  auto tok = tokenizer::load_tokenizer(info.tokenizer, gpt2_dir);
  if (tok->vocab_size() > m.config().vocab)
    throw Error(what + ": " + path + ": the " + info.tokenizer + " tokenizer's " +
                std::to_string(tok->vocab_size()) + " ids do not fit the model's vocabulary of " +
                std::to_string(m.config().vocab));
  return {std::move(m), std::move(tok)};
}

namespace {

struct GenerateConfig {
  std::string model;
  std::string config;
  std::string prompt;
  std::string prompt_file;
  std::string prompts_file;
  int64_t tokens = 200;
  double temperature = 0.8;
  int64_t top_k = 0;
  double top_p = 1.0;
  uint64_t seed = 0;
  std::string save_state;
  std::string load_state;
  std::string gpt2_dir;
};

// A token's text; ids the model may emit past the tokenizer's vocabulary (padding) print
// nothing.
std::string_view token_text(const tokenizer::Tokenizer& tok, int32_t id) {
  return id < tok.vocab_size() ? tok.token_bytes(id) : std::string_view();
}

// --prompts-file: one prompt per line, generated together; completions printed in order.
int run_batch(const GenerateConfig& c, const generate::SampleOptions& so) {
  if (!c.prompt.empty() || !c.prompt_file.empty() || !c.load_state.empty() || !c.save_state.empty())
    throw Error("generate: --prompts-file goes without --prompt, --prompt-file and states");
  io::require_regular_file(c.prompts_file, "generate: --prompts-file");
  std::ifstream in(c.prompts_file, std::ios::binary);
  if (!in) throw Error("generate: cannot read " + c.prompts_file);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) lines.push_back(line);
  if (lines.empty()) throw Error("generate: " + c.prompts_file + " holds no prompts");
  auto [m, tok] = load_model_and_tokenizer("generate", c.model, c.config, c.gpt2_dir);
  std::vector<std::vector<int32_t>> prompts;
  for (const auto& l : lines) prompts.push_back(tok->encode(l));
  const auto out = generate::generate_batch(m, prompts, c.tokens, so, c.seed);
  for (size_t i = 0; i < lines.size(); ++i) {
    std::string text;
    for (const int32_t id : out[i]) text += token_text(*tok, id);
    std::printf("=== %zu ===\n%s%s\n", i + 1, lines[i].c_str(), text.c_str());
  }
  return 0;
}

int run_generate(const GenerateConfig& c) {
  if (c.model.empty()) throw Error("generate: --model is required");
  if (c.tokens < 0) throw Error("generate: -n must be at least 0");
  if (!(c.temperature >= 0)) throw Error("generate: --temperature must be at least 0");
  if (!(c.top_p > 0 && c.top_p <= 1)) throw Error("generate: --top-p must be in (0, 1]");
  generate::SampleOptions so;
  so.temperature = c.temperature;
  so.top_k = c.top_k;
  so.top_p = c.top_p;
  if (!c.prompts_file.empty()) return run_batch(c, so);
  std::string prompt = c.prompt;
  if (!c.prompt_file.empty()) {
    if (!prompt.empty()) throw Error("generate: give --prompt or --prompt-file, not both");
    io::require_regular_file(c.prompt_file, "generate: --prompt-file");
    std::ifstream in(c.prompt_file, std::ios::binary);
    if (!in) throw Error("generate: cannot read " + c.prompt_file);
    prompt.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  if (prompt.empty() && c.load_state.empty())
    throw Error("generate: the prompt is empty (give --prompt, --prompt-file or --load-state)");
  auto [m, tok] = load_model_and_tokenizer("generate", c.model, c.config, c.gpt2_dir);
  generate::Generator gen(m);
  if (!c.load_state.empty()) gen.load(c.load_state);
  if (!prompt.empty()) {
    gen.feed(tok->encode(prompt));
    std::fwrite(prompt.data(), 1, prompt.size(), stdout);
  }
  uint64_t rng = c.seed;
  for (int64_t i = 0; i < c.tokens; ++i) {
    const std::string_view piece = token_text(*tok, gen.next(so, rng));
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
  }
  std::fputc('\n', stdout);
  if (!c.save_state.empty()) {
    gen.save(c.save_state);
    std::fprintf(stderr, "logattn: state after %lld tokens saved to %s\n",
                 static_cast<long long>(gen.tokens()), c.save_state.c_str());
  }
  return 0;
}

}  // namespace

Runner add_generate_command(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("generate", "Continue a prompt at constant time and memory per token");
  auto cfg = std::make_shared<GenerateConfig>();
  auto table = std::make_shared<OptionTable>();
  table->add("--model", &cfg->model, "checkpoint (.safetensors)")
      .add("--config", &cfg->config, "JSON model configuration, for checkpoints without one")
      .add("--prompt", &cfg->prompt, "text to continue")
      .add("--prompt-file", &cfg->prompt_file, "file holding the text to continue")
      .add("--prompts-file", &cfg->prompts_file, "one prompt per line, generated together (batch)")
      .add("-n,--tokens", &cfg->tokens, "tokens to generate")
      .add("--temperature", &cfg->temperature, "sampling temperature (0: greedy)")
      .add("--top-k", &cfg->top_k, "sample among the k most likely tokens (0: all)")
      .add("--top-p", &cfg->top_p, "sample among the most likely tokens holding this probability")
      .add("--seed", &cfg->seed, "random seed of the sampling")
      .add("--save-state", &cfg->save_state, "save the state after the text to this file")
      .add("--load-state", &cfg->load_state,
           "start from a saved state (the prompt, if any, continues it)")
      .add("--gpt2-dir", &cfg->gpt2_dir, "folder of GPT-2's encoder.json and vocab.bpe");
  table->attach(cmd);
  return [cfg, cmd] { return cmd->parsed() ? run_generate(*cfg) : -1; };
}

}  // namespace logattn::cli
