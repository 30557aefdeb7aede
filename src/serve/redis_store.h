// The Redis store: conversations kept in one Redis server that any number of logattn servers
// share, so that any of them continues any conversation, exactly. A conversation is one hash,
// `<prefix>conversation:<id>`, with the fields
//   version    incremented by every change of its turns (a commit, a rewind)
//   turns      the kept turns and their token counts, oldest first ("1:57 2:113")
//   title      set by the client
//   state:<t>  the state after turn t (the logattn-state format, as the folder store's files)
//   text:<t>   turn t's text ({"user": ..., "assistant": ...})
// and the set `<prefix>conversations` lists the ids. Each change is one Lua script, so Redis
// applies it whole or not at all; a turn is committed only if the conversation is still at the
// version its request started from, so that two servers answering the same conversation at
// once commit one turn and the other answers a conflict. Every value read is validated as a
// file would be: a damaged one is refused with a message naming the conversation.
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "serve/conversations.h"
#include "serve/redis_client.h"

namespace logattn::serve {

class RedisStore : public ConversationStore {
 public:
  // Uses cfg's redis_url, key_prefix, ttl_seconds, memory_mb and keep_turns; throws
  // logattn::Error for a bad setting. Connects at the first use.
  RedisStore(model::Model& model, const StoreConfig& cfg);

  std::string create() override;
  std::optional<ConversationInfo> info(const std::string& id) override;
  std::vector<ConversationInfo> list() override;
  std::optional<std::vector<TurnText>> texts(const std::string& id) override;
  Result set_title(const std::string& id, const std::string& title) override;
  Result remove(const std::string& id) override;
  Result fork(const std::string& id, int64_t turn, std::string& new_id) override;
  Result rewind(const std::string& id, int64_t turn) override;
  Result acquire(const std::string& id) override;
  generate::Generator& generator(const std::string& id) override;
  void commit(const std::string& id, const std::string& user,
              const std::string& assistant) override;
  void release(const std::string& id) override;
  std::optional<bool> holds_no_text(const std::string& id) override;
  int64_t count() override;
  int64_t in_memory() const override;
  StoreStats stats() const override;
  int64_t keep_turns() const override { return keep_turns_; }

 private:
  // A conversation's hash but its states and texts.
  struct Meta {
    int64_t version = 0;
    std::vector<TurnInfo> turns;  // kept, oldest first
    std::string title;
    int64_t turn() const { return turns.empty() ? 0 : turns.back().turn; }
    bool keeps(int64_t t) const;
  };
  // What this server knows of a conversation.
  struct Local {
    bool busy = false;                         // answering a request here
    Meta acquired;                             // while busy: the version it started from
    std::unique_ptr<generate::Generator> gen;  // the latest state, at version gen_version
    int64_t gen_version = -1;
    std::list<std::string>::iterator lru;
    bool in_lru = false;
  };
  // The conversation up to `turn`: the turns it keeps, and the fields of later turns (their
  // states and texts) that go (a rewind drops them; a fork's copy leaves them out).
  struct Cut {
    std::vector<TurnInfo> kept;
    std::vector<std::string> drops;
  };
  static Cut cut_at(const Meta& m, int64_t turn);
  // An HMGET of version, turns and title (the version present) as a Meta; throws
  // logattn::Error naming what is damaged.
  static Meta parse_meta(const RedisClient::Reply& r);
  enum class Update { kDone, kChanged, kGone };
  using Fields = std::vector<std::pair<std::string, std::string_view>>;

  std::string key(const std::string& id) const;
  std::optional<Meta> read_meta(const std::string& id);
  // Sets and deletes fields of id's hash if it is still at `version` (then a new version if
  // bump), refreshing its time to live.
  Update update(const std::string& id, int64_t version, bool bump, const Fields& sets,
                const std::vector<std::string>& deletes);
  // Runs change(meta) -> (Result, Update) again while another server changed the
  // conversation in between; kBusy when it keeps changing.
  template <typename F>
  Result retried(const std::string& id, F change);
  ConversationInfo info_of(const std::string& id, const Meta& m);
  bool busy(const std::string& id);
  void forget_locked(const std::string& id);
  void touch_locked(const std::string& id, Local& l);

  model::Model& model_;
  RedisClient redis_;
  const std::string prefix_;
  const int64_t ttl_, memory_mb_, keep_turns_;
  int64_t state_bytes_ = 0;

  mutable std::mutex mu_;
  std::map<std::string, Local> local_;
  std::list<std::string> lru_;  // with a state in memory, most recent first
  StoreStats stats_;
};

}  // namespace logattn::serve
