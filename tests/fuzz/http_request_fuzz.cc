// Whole HTTP requests as bytes (request line, headers, chunked or sized bodies, several on one
// connection) through the server's connection layer and endpoints, over a micro model: any
// bytes get a response with a status or a closed connection, never a crash, a hang or a leak.
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "fuzz_util.h"
#include "model/config.h"
#include "model/model.h"
#include "serve/engine.h"
#include "serve/server.h"
#include "tokenizer/tokenizer.h"

namespace {

using namespace logattn;

struct Served {
  model::Model model;
  std::unique_ptr<tokenizer::Tokenizer> tok;
  std::unique_ptr<serve::Engine> engine;
  serve::ServerConfig cfg;
  std::unique_ptr<serve::GuardedServer> svr;

  Served()
      : model(model::ModelConfig::from_json(nlohmann::json::parse(fuzz::kMicroConfig))),
        tok(tokenizer::load_tokenizer("bytes", "")) {
    model.init(0);
    engine = std::make_unique<serve::Engine>(model, *tok, serve::EngineConfig{});
    cfg.model_name = "micro";
    cfg.request = {8, 64};
    cfg.http.max_body_bytes = 4096;
    cfg.http.head_seconds = cfg.http.request_seconds = cfg.http.io_seconds = 1;
    cfg.http.max_head_bytes = 2048;
    svr = std::make_unique<serve::GuardedServer>(cfg.http, serve::error_body());
    serve::add_routes(*svr, *engine, *tok, cfg);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Served served;
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) std::abort();
  // The client: sends the bytes, ends its side, reads the answer until the server closes.
  std::thread client([&] {
    for (size_t done = 0; done < size;) {
      const ssize_t n = ::send(fds[0], data + done, size - done, MSG_NOSIGNAL);
      if (n <= 0) break;  // the server has answered and closed
      done += static_cast<size_t>(n);
    }
    ::shutdown(fds[0], SHUT_WR);
    char buf[4096];
    while (::recv(fds[0], buf, sizeof buf, 0) > 0) {
    }
    ::close(fds[0]);
  });
  served.svr->serve_connection(fds[1]);  // closes fds[1]
  client.join();
  // The engine ends a request whose client has gone at its next step: wait for that, so that
  // no input's work runs into the next one's, nor past the fuzzer's exit (where the matrix
  // libraries' code is unmapped under a still-running step).
  for (;;) {
    const auto m = served.engine->metrics();
    if (m.active == 0 && m.queued == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return 0;
}
