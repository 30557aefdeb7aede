// `logattn serve`: an HTTP server (cpp-httplib) in OpenAI's completions and chat formats over
// the engine (serve/engine.h): POST /v1/completions and /v1/chat/completions (stream:
// server-sent events), conversations
// (POST / GET /v1/conversations, GET / DELETE /v1/conversations/{id}), GET /health,
// GET /v1/models, GET /metrics (Prometheus text).
#pragma once

#include <cstdint>
#include <string>

#include "model/chat_template.h"
#include "serve/engine.h"
#include "serve/http.h"

namespace logattn::serve {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string model_name;             // what /v1/models lists and responses name
  int64_t max_tokens = 4096;          // the largest max_tokens a request may ask for
  int64_t max_prompt_tokens = 65536;  // longer prompts are refused
  int64_t max_body_bytes = 1 << 20;   // larger bodies get 413
  HttpLimits http;                    // connections: sizes, times, threads
  model::ChatTemplate chat_template;  // how /v1/chat/completions' messages become text
};

// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts afterwards;
// call it first, so that serve() alone takes them.
void block_stop_signals();

// The endpoints above on svr, over engine (every handler's work), and what svr needs to be
// made with for cfg.
void add_routes(GuardedServer& svr, Engine& engine, const tokenizer::Tokenizer& tok,
                const ServerConfig& cfg);
HttpLimits http_limits(const ServerConfig& cfg);
ErrorBody error_body();

// Serves until SIGINT or SIGTERM, then returns 0. Prints "listening on http://host:port"
// once listening (port 0: a free port, the one printed).
int serve(Engine& engine, const tokenizer::Tokenizer& tok, const ServerConfig& config);

}  // namespace logattn::serve
