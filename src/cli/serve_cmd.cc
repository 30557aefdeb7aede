// `logattn serve`: the model behind an HTTP server in OpenAI's completions and chat formats, its
// conversations kept as constant-size states (serve/).
#include <cstdio>
#include <filesystem>
#include <optional>

#include "cli/commands.h"
#include "cli/load_model.h"
#include "cli/options.h"
#include "logattn/error.h"
#include "model/chat_template.h"
#include "serve/engine.h"
#include "serve/server.h"
#include "tokenizer/tokenizer.h"

namespace logattn::cli {

namespace {

struct ServeConfig {
  std::string model;
  std::string config;
  std::string gpt2_dir;
  std::string host = "127.0.0.1";
  int64_t port = 8080;
  serve::StoreConfig store;
  int64_t max_batch = serve::EngineConfig{}.max_batch;
  int64_t max_queue = serve::EngineConfig{}.max_queue;
  int64_t prefix_cache_mb = serve::EngineConfig{}.prefix_cache_mb;
  int64_t max_tokens = serve::RequestLimits{}.max_tokens;
  int64_t max_prompt_tokens = serve::RequestLimits{}.max_prompt_tokens;
  int64_t max_body_kb = serve::HttpLimits{}.max_body_bytes / 1024;
  int64_t max_connections = serve::HttpLimits{}.max_connections;
  std::string chat_template;
};

int run_serve(const ServeConfig& c) {
  if (c.model.empty()) throw Error("serve: --model is required");
  if (c.port < 0 || c.port > 65535) throw Error("serve: --port must be in [0, 65535]");
  if (c.max_tokens < 1 || c.max_tokens > (int64_t{1} << 24))
    throw Error("serve: --max-tokens must be in [1, 2^24]");
  if (c.max_prompt_tokens < 1 || c.max_prompt_tokens > (int64_t{1} << 26))
    throw Error("serve: --max-prompt-tokens must be in [1, 2^26]");
  if (c.max_body_kb < 1 || c.max_body_kb > (int64_t{1} << 20))
    throw Error("serve: --max-body-kb must be in [1, 2^20]");
  if (c.max_connections < 1 || c.max_connections > 65536)
    throw Error("serve: --max-connections must be in [1, 65536]");
  // A bad template file is refused before the model is read.
  std::optional<model::ChatTemplate> chat_template;
  if (!c.chat_template.empty())
    chat_template = model::ChatTemplate::from_file(c.chat_template, "serve: --chat-template");
  serve::block_stop_signals();  // before any thread starts
  model::Checkpoint info;
  auto [m, tok] = load_model_and_tokenizer("serve", c.model, c.config, c.gpt2_dir, &info);
  // The checkpoint's template, unless overridden; the plain dialogue one for a model without.
  if (!chat_template) {
    const auto it = info.metadata.find(model::kChatTemplateKey);
    chat_template =
        it == info.metadata.end()
            ? model::ChatTemplate::plain()
            : model::ChatTemplate::parse(it->second, "serve: the chat template of " + c.model);
  }
  serve::EngineConfig ec;
  ec.max_batch = c.max_batch, ec.max_queue = c.max_queue;
  ec.store = c.store, ec.prefix_cache_mb = c.prefix_cache_mb;
  serve::Engine engine(m, *tok, ec);
  // A shared store out of reach is no reason not to start: its requests get 503 until it is
  // back. Said once here, so that a mistyped address is seen at once.
  if (!c.store.redis_url.empty()) {
    try {
      engine.conversations()->count();
    } catch (const serve::StoreError& e) {
      std::fprintf(stderr, "logattn serve: warning: %s\n", e.what());
    }
  }
  serve::ServerConfig sc;
  sc.host = c.host, sc.port = static_cast<int>(c.port);
  sc.model_name = std::filesystem::path(c.model).stem().string();
  sc.request = {c.max_tokens, c.max_prompt_tokens};
  sc.http.max_body_bytes = c.max_body_kb * 1024;
  sc.http.max_connections = c.max_connections;
  sc.chat_template = *chat_template;
  return serve::serve(engine, *tok, sc);
}

}  // namespace

Runner add_serve_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "serve",
      "An HTTP server in OpenAI's completions and chat formats, with conversations kept as states");
  auto cfg = std::make_shared<ServeConfig>();
  auto table = std::make_shared<OptionTable>();
  table->add("--model", &cfg->model, "checkpoint (.safetensors; float32, bf16 or q8_0)")
      .add("--config", &cfg->config, "JSON model configuration, for checkpoints without one")
      .add("--gpt2-dir", &cfg->gpt2_dir, "folder of GPT-2's encoder.json and vocab.bpe")
      .add("--host", &cfg->host, "address to listen on (loopback by default)")
      .add("--port", &cfg->port, "port to listen on (0: a free one, printed)")
      .add("--conversations", &cfg->store.dir,
           "folder of the conversations' states (none: no conversations)")
      .add("--state-store", &cfg->store.redis_url,
           "redis://HOST:PORT[/DB]: conversations kept in Redis, shared by several servers "
           "(instead of --conversations)")
      .add("--state-prefix", &cfg->store.key_prefix, "the start of every key in Redis")
      .add("--state-ttl", &cfg->store.ttl_seconds,
           "seconds a conversation unchanged stays in Redis (0: for ever)")
      .add("--conversations-memory-mb", &cfg->store.memory_mb,
           "conversations' states kept in memory (the least recently used leave it)")
      .add("--keep-turns", &cfg->store.keep_turns,
           "states kept per conversation, one per turn (rewind and fork reach them)")
      .add("--prefix-cache-mb", &cfg->prefix_cache_mb,
           "prompts' states kept for exact reuse by prompts that begin alike (0: none)")
      .add("--max-batch", &cfg->max_batch, "sequences advanced together, one step per token")
      .add("--max-queue", &cfg->max_queue, "requests waiting for the batch; more get 429")
      .add("--max-tokens", &cfg->max_tokens, "the largest max_tokens a request may ask for")
      .add("--max-prompt-tokens", &cfg->max_prompt_tokens, "longer prompts get 400")
      .add("--max-body-kb", &cfg->max_body_kb, "larger request bodies get 413")
      .add("--chat-template", &cfg->chat_template,
           "JSON chat template for /v1/chat/completions (default: the checkpoint's, else plain "
           "dialogue; docs/serving.md)")
      .add("--max-connections", &cfg->max_connections,
           "connections served at once (a thread each; more wait their turn)");
  table->attach(cmd);
  return [cfg, cmd] { return cmd->parsed() ? run_serve(*cfg) : -1; };
}

}  // namespace logattn::cli
