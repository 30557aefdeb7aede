// The serving engine: completion requests advance together, one batched step per token
// (continuous batching: a request joins or leaves between steps), on one thread that owns
// the model. A prompt read from the empty state may start from a kept prefix (PrefixCache);
// a conversation's request starts from its latest turn's state and commits the next turn
// (ConversationStore).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "generate/generator.h"
#include "io/files.h"
#include "model/model.h"
#include "serve/conversations.h"
#include "serve/prefix_cache.h"
#include "tokenizer/tokenizer.h"

namespace logattn::serve {

struct EngineConfig {
  int64_t max_batch = 16;         // sequences advanced together
  int64_t max_queue = 64;         // requests waiting for a place in the batch; more are refused
  StoreConfig store;              // where conversations are kept (none: no conversations)
  int64_t prefix_cache_mb = 512;  // prompts' states kept for exact prefix reuse; 0: none
};

struct Request {
  std::vector<int32_t> prompt;  // may be empty when continuing a conversation
  int64_t max_tokens = 16;
  generate::SampleOptions sample;
  uint64_t seed = 0;
  std::vector<std::string> stop;  // the completion ends before the first of these
  std::string conversation;       // empty: none
  // Log-probabilities of the sampled tokens, each with this many most likely alternatives
  // (0 to 20); -1: none.
  int64_t logprobs = -1;
  // The prompt's text comes first in the answer (with its tokens' log-probabilities when
  // logprobs is asked for); max_tokens may then be 0 (scoring a text).
  bool echo = false;
  // What the user sent, as a conversation's turn records it (the prompt, or the messages'
  // text).
  std::string user_text;
  // Scoring the prompt: every prompt token's log-probability is wanted.
  bool scores_prompt() const { return echo && logprobs >= 0; }
};

using generate::TokenLogprob;

// What a request's client receives, in order: text as it is produced (whole UTF-8
// characters; text that may begin a stop string is held back), then one event with done.
// What a request for a conversation is told by a server that keeps none.
inline constexpr const char* kNoStore =
    "conversations need a store: start the server with --conversations DIR or --state-store "
    "redis://HOST:PORT";

// Why a request failed: the server's fault, a conversation changed meanwhile by another
// request, or the conversations' store out of reach.
enum class Failure { kServer, kConflict, kUnavailable };
Failure failure_of(const std::exception& e);

struct Event {
  std::string text;
  bool done = false;
  std::string finish_reason;  // "length" or "stop"
  std::string error;          // the request failed (done is set too)
  Failure failure = Failure::kServer;
  int64_t prompt_tokens = 0, completion_tokens = 0;
  std::vector<TokenLogprob> logprobs;  // of the tokens sampled since the previous event
};

// One request's events, from the engine's thread to the client's.
class Stream {
 public:
  void push(Event e);
  // The next event, waiting at most `timeout`; false if none came.
  bool pop(Event& e, std::chrono::milliseconds timeout);
  // The client has gone: the engine ends the request at its next step.
  void cancel();
  bool cancelled() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Event> events_;
  bool cancelled_ = false;
};

struct Metrics {
  int64_t requests = 0, refused = 0, failed = 0;
  int64_t prompt_tokens = 0, completion_tokens = 0;
  int64_t prompt_tokens_read = 0;  // through the model (the rest were reused)
  int64_t steps = 0;
  double step_seconds = 0;  // time in batched steps and prompts
  int64_t queued = 0, active = 0;
  int64_t conversations_in_memory = 0, conversations_stored = 0;
  StoreStats store;
  int64_t state_bytes_in_memory = 0;
  PrefixCacheStats prefix;
};

class Engine {
 public:
  Engine(model::Model& model, const tokenizer::Tokenizer& tok, EngineConfig config);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Queues a request; nullptr when the queue is full. Throws logattn::Error for a request
  // that cannot run (an unknown conversation, no prompt to start from).
  std::shared_ptr<Stream> submit(Request r);

  // The conversations; null when the server has no conversations folder.
  ConversationStore* conversations() { return store_.get(); }
  // Bytes of one sequence's state (the same for every conversation of this model).
  int64_t state_bytes() const { return state_bytes_; }
  // Bytes a key/value cache of this model's shape (float32 keys and values of every layer and
  // head) would add per token: what a conversation's state is compared with.
  int64_t kv_bytes_per_token() const {
    const auto& c = model_.config();
    return c.n_layers * c.n_heads * (c.d_key + c.d_val) * int64_t{sizeof(float)};
  }
  Metrics metrics() const;

 private:
  struct Active;
  void run();
  void start(Active& a);
  // Reads the next piece of a's prompt; true once all of it is read.
  bool read_prompt(Active& a);
  static constexpr int64_t kPromptPiece = 512;
  static_assert(kPromptPiece % model::Model::kPromptBlock == 0);
  void sample(Active& a);
  void finish(Active& a);
  void fail(Active& a, const std::exception& why);  // ends a with an error event
  // Under mu_: what the engine's thread alone counts, and the batch's size, into metrics_.
  void publish_locked(int64_t active);
  model::Model& model_;
  const tokenizer::Tokenizer& tok_;
  const EngineConfig config_;
  int64_t state_bytes_ = 0;
  std::unique_ptr<ConversationStore> store_;
  PrefixCache prefix_;                      // the engine's thread's alone
  int64_t prompt_tokens_read_ = 0;          // the engine's thread's alone
  mutable std::atomic<int64_t> stored_{0};  // conversations in the store, as last counted

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<Request, std::shared_ptr<Stream>>> pending_;
  Metrics metrics_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace logattn::serve
