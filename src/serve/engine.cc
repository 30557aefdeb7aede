#include "serve/engine.h"

#include <algorithm>

#include "logattn/error.h"
#include "serve/text_stream.h"

namespace logattn::serve {

using Clock = std::chrono::steady_clock;

void Stream::push(Event e) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    events_.push_back(std::move(e));
  }
  cv_.notify_all();
}

bool Stream::pop(Event& e, std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return !events_.empty(); })) return false;
  e = std::move(events_.front());
  events_.pop_front();
  return true;
}

void Stream::cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
}

bool Stream::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

struct Engine::Active {
  Request req;
  std::shared_ptr<Stream> stream;
  std::unique_ptr<generate::Generator> own;  // without a conversation
  generate::Generator* gen = nullptr;
  bool conv = false;  // answering in req.conversation (acquired)
  uint64_t rng = 0;
  TextStream text{{}};  // set from req.stop at start
  int64_t produced = 0;
  size_t fed = 0;                // prompt tokens read so far (or reused)
  std::vector<int64_t> keep_at;  // where the prompt's read keeps a state for later prompts
  std::vector<TokenLogprob> prompt_logprobs;  // echo: the prompt's tokens', as they are read
  int32_t token = 0;
  bool finishing = false;
  bool echoed = false;
  std::string finish_reason;
  std::vector<TokenLogprob> logprobs;  // not yet sent
};

Engine::Engine(model::Model& model, const tokenizer::Tokenizer& tok, EngineConfig config)
    : model_(model),
      tok_(tok),
      config_(std::move(config)),
      prefix_(std::clamp<int64_t>(config_.prefix_cache_mb, 0, int64_t{1} << 20) * 1048576) {
  if (config_.max_batch < 1 || config_.max_batch > 1024)
    throw Error("serve: --max-batch must be in [1, 1024]");
  if (config_.max_queue < 0 || config_.max_queue > 100000)
    throw Error("serve: --max-queue must be in [0, 100000]");
  if (config_.prefix_cache_mb < 0 || config_.prefix_cache_mb > (int64_t{1} << 20))
    throw Error("serve: --prefix-cache-mb must be in [0, 2^20]");
  if (model.config().attention != model::AttentionKind::kLog)
    throw Error(
        "serve: the server runs log-attention models (constant-size states); this one "
        "is the softmax twin");
  state_bytes_ = generate::Generator::snapshot_bytes(model);
  store_ = open_store(model, config_.store);
  thread_ = std::thread([this] { run(); });
}

Engine::~Engine() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::shared_ptr<Stream> Engine::submit(Request r) {
  // The store is asked without holding the engine (it may be another machine).
  if (!r.conversation.empty()) {
    if (!store_) throw Error(kNoStore);
    const std::optional<bool> empty = store_->holds_no_text(r.conversation);
    if (!empty)
      throw Error("unknown conversation '" + r.conversation +
                  "' (create one with POST /v1/conversations)");
    if (r.prompt.empty() && *empty)
      throw Error("the conversation '" + r.conversation + "' holds no text yet: give a prompt");
  } else if (r.prompt.empty()) {
    throw Error("the prompt is empty");
  }
  std::lock_guard<std::mutex> lock(mu_);
  // Places: the batch's, then the queue's.
  if (metrics_.active + static_cast<int64_t>(pending_.size()) >=
      config_.max_batch + config_.max_queue) {
    ++metrics_.refused;
    return nullptr;
  }
  auto s = std::make_shared<Stream>();
  pending_.emplace_back(std::move(r), s);
  ++metrics_.requests;
  cv_.notify_all();
  return s;
}

Metrics Engine::metrics() const {
  // The store is asked first, without holding the engine; one out of reach leaves the last
  // count it gave, so that the metrics stay readable.
  if (store_) {
    try {
      stored_ = store_->count();
    } catch (const StoreError&) {
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  Metrics m = metrics_;
  m.queued = static_cast<int64_t>(pending_.size());
  m.conversations_in_memory = store_ ? store_->in_memory() : 0;
  if (store_) m.store = store_->stats();
  m.conversations_stored = stored_;
  m.state_bytes_in_memory = m.conversations_in_memory * state_bytes_;
  return m;
}

void Engine::start(Active& a) {
  a.rng = a.req.seed;
  a.text = TextStream(a.req.stop);
  if (a.conv) {
    a.gen = &store_->generator(a.req.conversation);
  } else {
    a.own = std::make_unique<generate::Generator>(model_);
    a.gen = a.own.get();
  }
  // A prompt read from the empty state may start from a kept prefix and keep its own (but
  // for scoring, which needs the logits of every position).
  if (a.gen->empty() && !a.req.prompt.empty() && !a.req.scores_prompt()) {
    a.fed = static_cast<size_t>(prefix_.start(a.req.prompt, *a.gen));
    a.keep_at = prefix_.keep_points(a.req.prompt, static_cast<int64_t>(a.fed));
  }
}

bool Engine::read_prompt(Active& a) {
  const size_t n = a.req.prompt.size();
  if (a.fed < n) {
    // One piece per step, as `generate` reads a prompt: the batch's other sequences go on
    // between the pieces of a long one.
    const std::span<const int32_t> prompt(a.req.prompt);
    size_t end = std::min(n, a.fed + static_cast<size_t>(kPromptPiece));
    if (!a.keep_at.empty()) end = std::min(end, static_cast<size_t>(a.keep_at.front()));
    if (a.req.scores_prompt())
      a.gen->feed(prompt.subspan(a.fed, end - a.fed), kPromptPiece, a.prompt_logprobs,
                  a.req.logprobs);
    else
      a.gen->feed(prompt.subspan(a.fed, end - a.fed), kPromptPiece);
    prompt_tokens_read_ += static_cast<int64_t>(end - a.fed);
    a.fed = end;
    if (!a.keep_at.empty() && static_cast<size_t>(a.keep_at.front()) == end) {
      prefix_.keep(prompt.first(end), *a.gen);
      a.keep_at.erase(a.keep_at.begin());
    }
  }
  if (a.fed < n) return false;
  if (a.gen->empty()) throw Error("the prompt is empty");
  if (a.req.echo && !a.echoed) {
    // The prompt first, as the client sent it (tokens are whole bytes of it).
    a.echoed = true;
    Event e;
    for (const int32_t t : a.req.prompt) e.text += tok_.token_bytes(t);
    e.logprobs = std::move(a.prompt_logprobs);
    a.stream->push(std::move(e));
  }
  return true;
}

void Engine::sample(Active& a) {
  const int64_t V = model_.config().vocab;
  a.token = generate::pick_token(a.gen->last_logits().data(), V, a.req.sample, a.rng);
  if (a.req.logprobs >= 0)
    a.logprobs.push_back(
        generate::token_logprob(a.gen->last_logits().data(), V, a.token, a.req.logprobs));
  ++a.produced;
  const std::string_view bytes =
      a.token < tok_.vocab_size() ? tok_.token_bytes(a.token) : std::string_view();
  const bool last = a.produced >= a.req.max_tokens || a.stream->cancelled();
  Event e;
  e.text = a.text.add(bytes, last);
  if (a.text.stopped())
    a.finishing = true, a.finish_reason = "stop";
  else if (last)
    a.finishing = true, a.finish_reason = "length";
  if (!e.text.empty()) {
    e.logprobs = std::move(a.logprobs);
    a.logprobs.clear();
    a.stream->push(std::move(e));
  }
}

void Engine::finish(Active& a) {
  Event e;
  e.done = true;
  e.finish_reason = a.finish_reason;
  e.prompt_tokens = static_cast<int64_t>(a.req.prompt.size());
  e.completion_tokens = a.produced;
  e.logprobs = std::move(a.logprobs);
  if (a.conv) {
    a.conv = false;  // committed or released, whatever happens
    // Written through: a kill loses no answered turn.
    store_->commit(a.req.conversation, a.req.user_text, a.text.text());
  }
  std::lock_guard<std::mutex> lock(mu_);
  metrics_.prompt_tokens += e.prompt_tokens;
  metrics_.completion_tokens += e.completion_tokens;
  a.stream->push(std::move(e));
}

Failure failure_of(const std::exception& e) {
  const auto* s = dynamic_cast<const StoreError*>(&e);
  if (!s) return Failure::kServer;
  return s->kind() == StoreError::Kind::kConflict ? Failure::kConflict : Failure::kUnavailable;
}

void Engine::fail(Active& a, const std::exception& why) {
  Event e;
  e.done = true, e.error = why.what(), e.failure = failure_of(why);
  if (a.conv) store_->release(a.req.conversation);
  a.conv = false;
  std::lock_guard<std::mutex> lock(mu_);
  ++metrics_.failed;
  a.stream->push(std::move(e));
}

void Engine::run() {
  std::vector<std::unique_ptr<Active>> active;
  generate::Generator::Batch batch;
  for (;;) {
    std::vector<std::unique_ptr<Active>> joining;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !pending_.empty() || !active.empty(); });
      if (stop_) return;
      // Requests join in order, but for one whose conversation is answering another.
      for (auto it = pending_.begin();
           it != pending_.end() &&
           static_cast<int64_t>(active.size() + joining.size()) < config_.max_batch;) {
        bool conv = false;
        if (!it->first.conversation.empty()) {
          std::string gone;
          Failure failure = Failure::kServer;
          try {
            switch (store_->acquire(it->first.conversation)) {
              case ConversationStore::Result::kDone:
                conv = true;
                break;
              case ConversationStore::Result::kBusy:  // answering another: waits its turn
                ++it;
                continue;
              default:
                gone = "the conversation was deleted";
            }
          } catch (const Error& e) {
            gone = e.what(), failure = failure_of(e);
          }
          if (!gone.empty()) {
            Event e;
            e.done = true, e.error = gone, e.failure = failure;
            it->second->push(std::move(e));
            it = pending_.erase(it);
            continue;
          }
        }
        auto a = std::make_unique<Active>();
        a->req = std::move(it->first);
        a->stream = std::move(it->second);
        a->conv = conv;
        joining.push_back(std::move(a));
        it = pending_.erase(it);
      }
      metrics_.active = static_cast<int64_t>(active.size() + joining.size());
    }
    const auto t0 = Clock::now();
    for (auto& a : joining) {
      try {
        start(*a);
        active.push_back(std::move(a));
      } catch (const std::exception& ex) {
        fail(*a, ex);
      }
    }
    std::vector<Active*> ready;
    for (auto& a : active) {
      try {
        if (!read_prompt(*a)) continue;
        if (a->req.max_tokens > 0) {
          ready.push_back(a.get());
          continue;
        }
        a->finishing = true, a->finish_reason = "length";  // scoring: nothing to generate
        finish(*a);
      } catch (const std::exception& ex) {
        fail(*a, ex);
        a->finishing = true;
      }
    }
    std::erase_if(active, [](const auto& a) { return a->finishing; });
    if (ready.empty()) {
      std::lock_guard<std::mutex> lock(mu_);
      publish_locked(static_cast<int64_t>(active.size()));
      continue;
    }
    std::vector<generate::Generator*> gens;
    std::vector<int32_t> tokens;
    for (Active* a : ready) {
      sample(*a);
      gens.push_back(a->gen);
      tokens.push_back(a->token);
    }
    // Every sequence reads its token, the finishing ones too: a conversation's state then
    // ends after its last token, as `generate` leaves it.
    try {
      generate::Generator::step_together(gens, tokens, batch);
    } catch (const std::exception& ex) {
      for (auto& a : active) fail(*a, ex);
      active.clear();
      std::lock_guard<std::mutex> lock(mu_);
      publish_locked(0);
      continue;
    }
    for (Active* a : ready)
      if (a->finishing) {
        try {
          finish(*a);
        } catch (const std::exception& ex) {
          fail(*a, ex);
        }
      }
    std::erase_if(active, [](const auto& a) { return a->finishing; });
    std::lock_guard<std::mutex> lock(mu_);
    ++metrics_.steps;
    metrics_.step_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
    publish_locked(static_cast<int64_t>(active.size()));
  }
}

void Engine::publish_locked(int64_t active) {
  metrics_.active = active;
  metrics_.prefix = prefix_.stats();
  metrics_.prompt_tokens_read = prompt_tokens_read_;
}

}  // namespace logattn::serve
