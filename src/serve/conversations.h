// Conversations and their states: what a store of conversations does, whichever keeps them.
// A conversation is a series of turns (what the user sent, the answer); the store keeps the
// state after each of its last turns, so that a request continues from the latest one and a
// conversation can be forked (a new one with a copy of its turns) and rewound (back to the
// state after an earlier turn) without its text being read again.
//
// Two stores: FolderStore (serve/folder_store.h), one server's folder; RedisStore
// (serve/redis_store.h), shared by any number of servers. Both keep the latest states of the
// most recently used conversations in memory, and both make every change whole or not at all,
// so that a killed server leaves each conversation at a turn it had.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "generate/generator.h"
#include "logattn/error.h"
#include "model/model.h"

namespace logattn::serve {

struct TurnInfo {
  int64_t turn = 0;
  int64_t tokens = -1;  // -1: not read since the server started
};

struct ConversationInfo {
  std::string id;
  std::string title;            // set by the client; empty: none
  int64_t turn = 0;             // the latest turn (0: no text yet)
  int64_t tokens = 0;           // in its state; -1: not read since the server started
  std::vector<TurnInfo> turns;  // the turns whose states are kept, oldest first
  bool in_memory = false;
};

// A store that cannot answer now, or a change that lost to another server's. Any other
// failure of a store is a logattn::Error (a damaged conversation names itself alone).
class StoreError : public Error {
 public:
  enum class Kind {
    kUnavailable,  // the store cannot be reached: try again later
    kConflict,     // the conversation changed meanwhile (another server): nothing was kept
  };
  StoreError(Kind kind, const std::string& what) : Error(what), kind_(kind) {}
  Kind kind() const { return kind_; }

 private:
  Kind kind_;
};

// Time spent moving states between memory and the store.
struct StoreStats {
  int64_t loads = 0, saves = 0;
  double load_seconds = 0, save_seconds = 0;
};

class ConversationStore {
 public:
  virtual ~ConversationStore() = default;

  enum class Result { kDone, kUnknown, kBusy, kNoSuchTurn };

  virtual std::string create() = 0;
  // Token counts not yet known are read from the turns' states (a damaged one throws
  // logattn::Error naming the conversation alone).
  virtual std::optional<ConversationInfo> info(const std::string& id) = 0;
  virtual std::vector<ConversationInfo> list() = 0;
  // The text of each turn up to the latest, oldest first (a turn whose record cannot be read
  // shows as empty). Throws logattn::Error for a damaged conversation; nullopt: unknown.
  struct TurnText {
    int64_t turn = 0;
    std::string user, assistant;
  };
  virtual std::optional<std::vector<TurnText>> texts(const std::string& id) = 0;
  // At most kMaxTitle bytes of UTF-8.
  virtual Result set_title(const std::string& id, const std::string& title) = 0;
  static constexpr size_t kMaxTitle = 200;
  virtual Result remove(const std::string& id) = 0;
  // A new conversation (its id in new_id) with id's kept turns up to `turn` (-1: all).
  virtual Result fork(const std::string& id, int64_t turn, std::string& new_id) = 0;
  // Back to the state after `turn` (0: no text); later turns are removed.
  virtual Result rewind(const std::string& id, int64_t turn) = 0;

  // The engine's side: a conversation answers one request at a time (on this server).
  virtual Result acquire(const std::string& id) = 0;
  // The latest turn's state, read from the store when not in memory; only while acquired.
  virtual generate::Generator& generator(const std::string& id) = 0;
  // Writes the generator's state as the next turn, with its text (what the user sent, the
  // answer), dropping the oldest state past keep_turns; then releases. Throws logattn::Error
  // (still releasing, and forgetting the state in memory) when it cannot be written.
  virtual void commit(const std::string& id, const std::string& user,
                      const std::string& assistant) = 0;
  // Ends a request that commits nothing; its state in memory (which it may have advanced) is
  // forgotten and read again by the next.
  virtual void release(const std::string& id) = 0;
  // Whether the conversation holds no text; nullopt: no such conversation.
  virtual std::optional<bool> holds_no_text(const std::string& id) = 0;

  virtual int64_t count() = 0;
  virtual int64_t in_memory() const = 0;
  virtual StoreStats stats() const = 0;
  virtual int64_t keep_turns() const = 0;

  // Turn numbers: far beyond any conversation; a larger one in a store is damage.
  static constexpr int64_t kMaxTurn = int64_t{1} << 40;

  // Conversation ids: 1 to 64 of [A-Za-z0-9_-].
  static bool valid_id(const std::string& id);
  // A new random id ("conv-" and 32 hex digits).
  static std::string random_id();
};

// Where conversations are kept: a folder, or a Redis server (not both); neither: none.
struct StoreConfig {
  std::string dir;                      // the folder store's folder
  std::string redis_url;                // redis://HOST:PORT[/DB]
  std::string key_prefix = "logattn:";  // Redis: every key starts with it
  int64_t ttl_seconds = 0;              // Redis: a conversation unchanged this long goes; 0: never
  int64_t memory_mb = 256;              // latest states kept in memory
  int64_t keep_turns = 16;              // states kept per conversation (rewind and fork reach them)
};

// Checks the settings every store takes (memory_mb, keep_turns); throws naming the option.
void check_store_settings(int64_t memory_mb, int64_t keep_turns);

// The error for a conversation whose stored values cannot be used: its id alone, never what
// they hold (`detail` goes to the server's log); `what` says where and what, e.g. "in the
// state store is damaged".
Error damaged_conversation(const std::string& id, const std::string& what,
                           const std::string& detail);

// The store cfg names, or null for neither. Throws logattn::Error for a bad setting.
std::unique_ptr<ConversationStore> open_store(model::Model& model, const StoreConfig& cfg);

}  // namespace logattn::serve
