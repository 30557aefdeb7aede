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
#include "serve/request.h"

namespace logattn::serve {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string model_name;             // what /v1/models lists and responses name
  RequestLimits request;              // max_tokens and prompt lengths
  HttpLimits http;                    // connections: sizes (the body's too), times, threads
  model::ChatTemplate chat_template;  // how /v1/chat/completions' messages become text
};

// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts afterwards;
// call it first, so that serve() alone takes them.
void block_stop_signals();

// The endpoints above on svr (made with cfg.http and error_body()), over engine.
void add_routes(GuardedServer& svr, Engine& engine, const tokenizer::Tokenizer& tok,
                const ServerConfig& cfg);
ErrorBody error_body();

// Serves until SIGINT or SIGTERM, then returns 0. Prints "listening on http://host:port"
// once listening (port 0: a free port, the one printed).
int serve(Engine& engine, const tokenizer::Tokenizer& tok, const ServerConfig& config);

}  // namespace logattn::serve
