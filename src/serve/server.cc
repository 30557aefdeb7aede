#include "serve/server.h"

#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <thread>

#include "chat_page.h"
#include "io/json.h"
#include "logattn/error.h"
#include "serve/http.h"
#include "serve/request.h"

namespace logattn::serve {

namespace {

using json = nlohmann::json;

void send_error(httplib::Response& res, int status, const std::string& message,
                const char* type = nullptr) {
  res.status = status;
  res.set_content(error_json(message, type ? type : error_type(status)), "application/json");
}

// The status of a request that failed: the store's refusals are the client's to retry.
int status_of(Failure f) {
  return f == Failure::kConflict ? 409 : f == Failure::kUnavailable ? 503 : 500;
}

void send_too_large(httplib::Response& res, int64_t max_bytes) {
  send_error(res, 413,
             "the request body is larger than this server accepts (" + std::to_string(max_bytes) +
                 " bytes; see --max-body-kb)");
}

// A POST's body, read whatever its Content-Type says (JSON is JSON) and whatever its
// transfer encoding, up to the limit; false (with 413 sent) past it.
bool read_body(const httplib::Request& req, const httplib::ContentReader& reader, int64_t max_bytes,
               std::string& body, httplib::Response& res) {
  // A request with neither a length nor chunks has no body (RFC 9112, 6.3).
  if (!req.has_header("Content-Length") &&
      req.get_header_value("Transfer-Encoding").find("chunked") == std::string::npos)
    return true;
  bool too_large = false;
  const bool ok = reader([&](const char* data, size_t n) {
    if (static_cast<int64_t>(body.size() + n) > max_bytes) {
      too_large = true;
      return false;
    }
    body.append(data, n);
    return true;
  });
  if (!ok) close_connection_after_response();  // the rest of the body is still unread
  if (too_large) {
    send_too_large(res, max_bytes);
    return false;
  }
  if (!ok) {
    send_error(res, 400, "the request body could not be read");
    return false;
  }
  return true;
}

std::string completion_id(Api api) {
  static std::atomic<uint64_t> next{0};
  return std::string(api == Api::kChat ? "chatcmpl-" : "cmpl-") +
         std::to_string(std::chrono::system_clock::now().time_since_epoch().count()) + "-" +
         std::to_string(next++);
}

int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Waits for a stream's next event; a request always ends (its max_tokens bound it).
Event next_event(Stream& s) {
  Event e;
  while (!s.pop(e, std::chrono::milliseconds(1000))) {
  }
  return e;
}

// A token's text: its bytes (ids past the tokenizer's, in a padded vocabulary, have none).
std::string token_text(const tokenizer::Tokenizer& tok, int32_t id) {
  return id < tok.vocab_size() ? std::string(tok.token_bytes(id)) : std::string();
}

std::vector<LogprobEntry> logprob_entries(const tokenizer::Tokenizer& tok,
                                          const std::vector<TokenLogprob>& lps) {
  std::vector<LogprobEntry> out;
  for (const auto& lp : lps) {
    LogprobEntry e{token_text(tok, lp.token), lp.logprob, {}};
    for (const auto& [id, v] : lp.top) e.top.emplace_back(token_text(tok, id), v);
    out.push_back(std::move(e));
  }
  return out;
}

// Answers a parsed request (either API) through the engine: one response, or server-sent
// events; the formats are request.h's.
void handle_completion(Engine& engine, const tokenizer::Tokenizer& tok, const ServerConfig& cfg,
                       const Completion& c, httplib::Response& res) {
  const bool with_logprobs = c.req.logprobs >= 0;
  std::vector<std::shared_ptr<Stream>> streams;
  try {
    for (int64_t i = 0; i < c.n; ++i) {
      Request r = c.req;
      r.seed = c.req.seed + static_cast<uint64_t>(i);
      auto s = engine.submit(std::move(r));
      if (!s) {
        for (auto& other : streams) other->cancel();
        return send_error(res, 429, "the server is busy: the request queue is full; retry later");
      }
      streams.push_back(std::move(s));
    }
  } catch (const StoreError& e) {
    for (auto& other : streams) other->cancel();
    return send_error(res, status_of(failure_of(e)), e.what());
  } catch (const Error& e) {
    for (auto& other : streams) other->cancel();
    return send_error(res, 400, e.what());
  }
  const ResponseHead head{c.api, completion_id(c.api), now_seconds(), cfg.model_name,
                          c.req.conversation};
  if (!c.stream) {
    std::vector<Choice> choices;
    Usage usage;
    for (auto& stream : streams) {
      std::string text;
      std::vector<LogprobEntry> entries;
      for (;;) {
        Event e = next_event(*stream);
        text += e.text;
        for (auto& entry : logprob_entries(tok, e.logprobs)) entries.push_back(std::move(entry));
        if (!e.done) continue;
        if (!e.error.empty()) return send_error(res, status_of(e.failure), e.error);
        usage.prompt_tokens = e.prompt_tokens;
        usage.completion_tokens += e.completion_tokens;
        choices.push_back({text, e.finish_reason, with_logprobs, std::move(entries)});
        break;
      }
    }
    res.set_content(response_json(head, choices, usage), "application/json");
    return;
  }
  // Server-sent events: one per piece of text, in choice order as they come; then [DONE].
  res.set_header("Cache-Control", "no-cache");
  const bool include_usage = c.include_usage;
  res.set_chunked_content_provider(
      "text/event-stream",
      [streams, head, include_usage, with_logprobs, &tok](size_t, httplib::DataSink& sink) {
        Usage usage;
        std::vector<bool> done(streams.size(), false), started(streams.size(), false);
        std::vector<size_t> offsets(streams.size(), 0);  // of each choice's next token
        size_t left = streams.size();
        auto send = [&](const std::string& data) {
          const std::string line = "data: " + data + "\n\n";
          return sink.write(line.data(), line.size());
        };
        while (left > 0) {
          for (size_t i = 0; i < streams.size(); ++i) {
            if (done[i]) continue;
            Event e;
            if (!streams[i]->pop(e, std::chrono::milliseconds(20))) continue;
            const bool first = !started[i];
            started[i] = true;
            if (e.done) {
              done[i] = true, --left;
              if (!e.error.empty()) {
                send(error_json(e.error, error_type(status_of(e.failure))));
                continue;
              }
              usage.prompt_tokens = e.prompt_tokens;
              usage.completion_tokens += e.completion_tokens;
            }
            const auto entries = logprob_entries(tok, e.logprobs);
            const size_t offset = offsets[i];
            for (const auto& entry : entries) offsets[i] += entry.token.size();
            if (!send(chunk_json(head, i, e.text, e.done ? e.finish_reason : "", first,
                                 with_logprobs ? &entries : nullptr, offset))) {
              for (auto& s : streams) s->cancel();  // the client has gone
              return false;
            }
          }
        }
        if (include_usage) send(usage_chunk_json(head, usage));
        const std::string end = "data: [DONE]\n\n";
        sink.write(end.data(), end.size());
        sink.done();
        return true;
      },
      [streams](bool success) {
        if (!success)
          for (auto& s : streams) s->cancel();
      });
}

std::string prometheus(const Metrics& m, int64_t state_bytes) {
  std::string s;
  auto metric = [&](const char* name, const char* type, const char* help, double v) {
    s += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" +
         name + " " + json(v).dump() + "\n";
  };
  metric("logattn_requests_total", "counter", "Completion requests accepted.", m.requests);
  metric("logattn_requests_refused_total", "counter", "Requests refused: queue full (429).",
         m.refused);
  metric("logattn_requests_failed_total", "counter", "Requests that ended in an error.", m.failed);
  metric("logattn_prompt_tokens_total", "counter", "Prompt tokens read.", m.prompt_tokens);
  metric("logattn_completion_tokens_total", "counter", "Tokens generated.", m.completion_tokens);
  metric("logattn_steps_total", "counter", "Batched steps taken.", m.steps);
  metric("logattn_busy_seconds_total", "counter", "Seconds spent in prompts and steps.",
         m.step_seconds);
  metric("logattn_completion_tokens_per_second", "gauge",
         "Tokens generated per busy second, since the start.",
         m.step_seconds > 0 ? m.completion_tokens / m.step_seconds : 0.0);
  metric("logattn_queue_length", "gauge", "Requests waiting for a place in the batch.", m.queued);
  metric("logattn_active_sequences", "gauge", "Sequences in the batch.", m.active);
  metric("logattn_conversations_in_memory", "gauge", "Conversations whose state is in memory.",
         m.conversations_in_memory);
  metric("logattn_conversations_on_disk", "gauge",
         "Conversations in the store (the folder, or Redis), as last counted.",
         m.conversations_stored);
  metric("logattn_state_loads_total", "counter",
         "Conversation states read from the store (not in memory).", m.store.loads);
  metric("logattn_state_load_seconds_total", "counter", "Seconds spent reading them.",
         m.store.load_seconds);
  metric("logattn_state_saves_total", "counter", "Turns written to the store.", m.store.saves);
  metric("logattn_state_save_seconds_total", "counter", "Seconds spent writing them.",
         m.store.save_seconds);
  metric("logattn_conversation_state_bytes", "gauge", "Bytes of one conversation's state.",
         state_bytes);
  metric("logattn_prefix_lookups_total", "counter",
         "Prompts read from the empty state, looked up in the prefix cache.", m.prefix.lookups);
  metric("logattn_prefix_hits_total", "counter", "Prompts that started from a kept prefix.",
         m.prefix.hits);
  metric("logattn_prompt_tokens_reused_total", "counter",
         "Prompt tokens not read again (their state was kept).", m.prefix.tokens_reused);
  metric("logattn_prompt_tokens_read_total", "counter", "Prompt tokens read through the model.",
         m.prompt_tokens_read);
  metric("logattn_prefix_cache_entries", "gauge", "States kept in the prefix cache.",
         m.prefix.entries);
  metric("logattn_prefix_cache_bytes", "gauge",
         "Bytes held by the prefix cache (states, their logits and tokens).", m.prefix.bytes);
  metric("logattn_prefix_cache_evictions_total", "counter",
         "Kept states dropped to stay within --prefix-cache-mb.", m.prefix.evictions);
  return s;
}

sigset_t stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  return signals;
}

}  // namespace

void block_stop_signals() {
  const sigset_t signals = stop_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

namespace {

// Owns the thread that takes SIGINT / SIGTERM (blocked in every thread: block_stop_signals)
// and stops the server; joined however serve() ends.
class StopOnSignal {
 public:
  explicit StopOnSignal(GuardedServer& svr)
      : thread_([this, &svr] {
          sigset_t signals = stop_signals();
          int sig = 0;
          sigwait(&signals, &sig);
          // httplib's stop() does nothing before the server listens: a signal that comes
          // between binding and listening would be lost. Ask again until serve() is done.
          while (!done_) {
            svr.shut_down();
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
          }
        }) {}
  ~StopOnSignal() {
    done_ = true;
    pthread_kill(thread_.native_handle(), SIGTERM);  // out of sigwait, if no signal came
    thread_.join();
  }

 private:
  std::atomic<bool> done_{false};  // before thread_: set before the thread starts
  std::thread thread_;
};

}  // namespace

void add_routes(GuardedServer& svr, Engine& engine, const tokenizer::Tokenizer& tok,
                const ServerConfig& cfg) {
  const int64_t max_body = cfg.http.max_body_bytes;
  const RequestLimits limits = cfg.request;
  // Both APIs: the body read, parsed by its format, answered by the engine.
  auto answer = [&, max_body](auto parse) {
    return [&, max_body, parse](const httplib::Request& req, httplib::Response& res,
                                const httplib::ContentReader& reader) {
      std::string body;
      if (!read_body(req, reader, max_body, body, res)) return;
      Completion c;
      try {
        c = parse(body);
      } catch (const Error& e) {
        return send_error(res, 400, e.what());
      }
      handle_completion(engine, tok, cfg, c, res);
    };
  };
  svr.Post("/v1/completions", answer([&, limits](const std::string& body) {
             return parse_completion(body, tok, limits);
           }));
  svr.Post("/v1/chat/completions", answer([&, limits](const std::string& body) {
             return parse_chat_completion(body, tok, limits, cfg.chat_template);
           }));
  svr.Get("/health", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"status":"ok"})", "application/json");
  });
  svr.Get("/v1/models", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(io::dump_json({{"object", "list"},
                                   {"data", json::array({{{"id", cfg.model_name},
                                                          {"object", "model"},
                                                          {"created", 0},
                                                          {"owned_by", "logattn"}}})}}),
                    "application/json");
  });
  // The chat page (src/serve/web/chat.html, compiled in).
  svr.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-cache");
    res.set_content(kChatPage.data(), kChatPage.size(), "text/html; charset=utf-8");
  });
  svr.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(prometheus(engine.metrics(), engine.state_bytes()),
                    "text/plain; version=0.0.4");
  });
  // The conversation endpoints: 404 for an unknown one (or without a conversations folder),
  // 409 while it answers a request, 400 for a turn whose state is not kept, 500 (naming the
  // conversation alone) when its files are damaged.
  // (The routes outlive this function: they hold these helpers by value.)
  auto conversation_call = [&engine](httplib::Response& res, const std::string& id, auto call) {
    ConversationStore* store = engine.conversations();
    if (!store) return send_error(res, 404, kNoStore);
    if (!ConversationStore::valid_id(id))
      return send_error(res, 404, "unknown conversation '" + id + "'");
    try {
      call(*store);
    } catch (const Error& e) {
      send_error(res, status_of(failure_of(e)), e.what());
    }
  };
  auto result_error = [](httplib::Response& res, ConversationStore::Result r, const std::string& id,
                         int64_t turn) {
    if (r == ConversationStore::Result::kDone) return true;
    if (r == ConversationStore::Result::kUnknown)
      send_error(res, 404, "unknown conversation '" + id + "'");
    else if (r == ConversationStore::Result::kBusy)
      send_error(res, 409, "the conversation '" + id + "' is answering a request now");
    else
      send_error(res, 400,
                 "the conversation '" + id + "' has no kept turn " + std::to_string(turn) +
                     " (GET it to see its turns; the server keeps the last --keep-turns)");
    return false;
  };
  auto send_conversation = [&engine](httplib::Response& res, ConversationStore& store,
                                     const std::string& id) {
    const auto info = store.info(id);
    if (!info) return send_error(res, 404, "unknown conversation '" + id + "'");
    res.set_content(conversation_json(*info, engine.state_bytes(), engine.kv_bytes_per_token()),
                    "application/json");
  };
  svr.Post("/v1/conversations",
           [&, max_body, send_conversation](const httplib::Request& req, httplib::Response& res,
                                            const httplib::ContentReader& reader) {
             std::string body;  // no fields yet; read so that the connection stays in step
             if (!read_body(req, reader, max_body, body, res)) return;
             ConversationStore* store = engine.conversations();
             if (!store) return send_error(res, 400, kNoStore);
             try {
               const std::string id = store->create();
               send_conversation(res, *store, id);
             } catch (const Error& e) {
               send_error(res, status_of(failure_of(e)), e.what());
             }
           });
  svr.Get("/v1/conversations", [&](const httplib::Request&, httplib::Response& res) {
    ConversationStore* store = engine.conversations();
    try {
      res.set_content(
          conversation_list_json(store ? store->list() : std::vector<ConversationInfo>{}),
          "application/json");
    } catch (const Error& e) {
      send_error(res, status_of(failure_of(e)), e.what());
    }
  });
  svr.Get(R"(/v1/conversations/([^/]+))", [conversation_call, send_conversation](
                                              const httplib::Request& req, httplib::Response& res) {
    const std::string id = req.matches[1];
    conversation_call(res, id,
                      [&](ConversationStore& store) { send_conversation(res, store, id); });
  });
  svr.Delete(
      R"(/v1/conversations/([^/]+))",
      [conversation_call, result_error](const httplib::Request& req, httplib::Response& res) {
        const std::string id = req.matches[1];
        conversation_call(res, id, [&](ConversationStore& store) {
          if (result_error(res, store.remove(id), id, 0))
            res.set_content(
                io::dump_json({{"id", id}, {"object", "conversation.deleted"}, {"deleted", true}}),
                "application/json");
        });
      });
  // Each turn's text, for a page that shows the conversation.
  svr.Get(R"(/v1/conversations/([^/]+)/messages)",
          [conversation_call](const httplib::Request& req, httplib::Response& res) {
            const std::string id = req.matches[1];
            conversation_call(res, id, [&](ConversationStore& store) {
              const auto texts = store.texts(id);
              if (!texts) return send_error(res, 404, "unknown conversation '" + id + "'");
              res.set_content(turn_texts_json(*texts), "application/json");
            });
          });
  // Rename: {"title": "..."}.
  svr.Patch(R"(/v1/conversations/([^/]+))",
            [max_body, conversation_call, result_error, send_conversation](
                const httplib::Request& req, httplib::Response& res,
                const httplib::ContentReader& reader) {
              std::string body;
              if (!read_body(req, reader, max_body, body, res)) return;
              const std::string id = req.matches[1];
              std::string title;
              try {
                title = parse_title(body);
              } catch (const Error& e) {
                return send_error(res, 400, e.what());
              }
              conversation_call(res, id, [&](ConversationStore& store) {
                ConversationStore::Result r;
                try {
                  r = store.set_title(id, title);
                } catch (const Error& e) {
                  return send_error(res, 400, e.what());
                }
                if (result_error(res, r, id, 0)) send_conversation(res, store, id);
              });
            });
  // POST /v1/conversations/{id}/<op> with {"turn": K}: op(store, id, turn) answers.
  auto turn_route = [&svr, max_body, conversation_call](const char* pattern, bool required,
                                                        auto op) {
    svr.Post(pattern, [=](const httplib::Request& req, httplib::Response& res,
                          const httplib::ContentReader& reader) {
      std::string body;
      if (!read_body(req, reader, max_body, body, res)) return;
      const std::string id = req.matches[1];
      int64_t turn;
      try {
        turn = parse_turn(body, required);
      } catch (const Error& e) {
        return send_error(res, 400, e.what());
      }
      conversation_call(res, id, [&](ConversationStore& store) { op(res, store, id, turn); });
    });
  };
  // Fork: a new conversation with the turns up to {"turn": K} (default: all).
  turn_route(
      R"(/v1/conversations/([^/]+)/fork)", /*required=*/false,
      [=](httplib::Response& res, ConversationStore& store, const std::string& id, int64_t turn) {
        std::string new_id;
        if (result_error(res, store.fork(id, turn, new_id), id, turn))
          send_conversation(res, store, new_id);
      });
  // Rewind: back to the state after {"turn": K} (0: no text); later turns are removed.
  turn_route(
      R"(/v1/conversations/([^/]+)/rewind)", /*required=*/true,
      [=](httplib::Response& res, ConversationStore& store, const std::string& id, int64_t turn) {
        if (result_error(res, store.rewind(id, turn), id, turn)) send_conversation(res, store, id);
      });
  // A declared length over the limit is refused before any of the body is read.
  svr.set_pre_routing_handler([max_body](const httplib::Request& req, httplib::Response& res) {
    const std::string declared = req.get_header_value("Content-Length");
    if (declared.empty() || (declared.find_first_not_of("0123456789") == std::string::npos &&
                             declared.size() <= 18 && std::stoll(declared) <= max_body))
      return httplib::Server::HandlerResponse::Unhandled;
    close_connection_after_response();
    if (declared.find_first_not_of("0123456789") != std::string::npos)
      send_error(res, 400, "the Content-Length header is not a number");
    else
      send_too_large(res, max_body);
    return httplib::Server::HandlerResponse::Handled;
  });
  // A handler's unexpected exception is a 500 with a message, never a dropped connection.
  svr.set_exception_handler(
      [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "unknown error";
        try {
          std::rethrow_exception(ep);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        send_error(res, 500, "internal error: " + what);
      });
  // httplib's own refusals (no route, a body too large, a malformed request) get a message
  // in the same format; the handlers' errors keep theirs.
  svr.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413)
      send_error(res, 413, "the request body is larger than this server accepts");
    else if (res.status == 404)
      send_error(res, 404, "no such endpoint");
    else
      send_error(res, res.status,
                 "the request was refused (HTTP " + std::to_string(res.status) + ")");
  });
}

ErrorBody error_body() {
  return [](int status, const std::string& message) {
    return error_json(message, error_type(status));
  };
}

int serve(Engine& engine, const tokenizer::Tokenizer& tok, const ServerConfig& cfg) {
  raise_open_file_limit();
  GuardedServer svr(cfg.http, error_body());
  add_routes(svr, engine, tok, cfg);
  const StopOnSignal stopper(svr);
  const int port = svr.bind_listener(cfg.host, cfg.port);
  std::printf("logattn serve: listening on http://%s:%d (model %s)\n", cfg.host.c_str(), port,
              cfg.model_name.c_str());
  std::fflush(stdout);
  svr.listen_after_bind();
  std::printf("logattn serve: stopped\n");
  return 0;
}

}  // namespace logattn::serve
