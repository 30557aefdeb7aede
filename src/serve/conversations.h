// Conversations and their states. Each conversation is a folder in the conversations folder,
// holding the state after each of its last turns (`<turn>.safetensors`, the logattn-state
// format, written through a temporary name and a rename), the text of every turn
// (`<turn>.json`: what the user sent and the answer) and its title (`title.json`); the latest
// turn's state of the most recently used ones also stays in memory. A conversation can be forked (a
// new one with a copy of its turns) and rewound (back to the state after an earlier turn), so a
// client regenerates or edits its last message without the conversation being read again.
//
// Crash safety: every change is one rename, or a series of removals each of which leaves a
// consistent conversation (docs/design.md, "Conversations on disk"), so a kill at any moment
// leaves each conversation at a turn it had: a turn is written whole before it counts; a rewind
// removes the later turns newest first; a fork is copied under a temporary name and renamed;
// a deletion renames the folder away before removing it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "generate/generator.h"
#include "io/files.h"
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

class ConversationStore {
 public:
  // dir: created if absent, and locked while the store lives (one server per folder).
  // memory_mb: latest states kept in memory. keep_turns: states kept per conversation.
  ConversationStore(model::Model& model, std::string dir, int64_t memory_mb, int64_t keep_turns);
  ConversationStore(const ConversationStore&) = delete;
  ConversationStore& operator=(const ConversationStore&) = delete;

  enum class Result { kDone, kUnknown, kBusy, kNoSuchTurn };

  std::string create();
  // Token counts not yet known are read from the turns' files (a damaged one throws
  // logattn::Error naming the conversation alone).
  std::optional<ConversationInfo> info(const std::string& id);
  std::vector<ConversationInfo> list() const;  // without reading files
  // The text of each turn up to the latest, oldest first (a turn whose record cannot be read
  // shows as empty). Throws logattn::Error for a damaged conversation; nullopt: unknown.
  struct TurnText {
    int64_t turn = 0;
    std::string user, assistant;
  };
  std::optional<std::vector<TurnText>> texts(const std::string& id);
  // At most kMaxTitle bytes of UTF-8.
  Result set_title(const std::string& id, const std::string& title);
  static constexpr size_t kMaxTitle = 200;
  Result remove(const std::string& id);
  // A new conversation (its id in new_id) with id's kept turns up to `turn` (-1: all).
  Result fork(const std::string& id, int64_t turn, std::string& new_id);
  // Back to the state after `turn` (0: no text); later turns are removed.
  Result rewind(const std::string& id, int64_t turn);

  // The engine's side: a conversation answers one request at a time.
  Result acquire(const std::string& id);
  // The latest turn's state, read from the folder when not in memory; only while acquired.
  generate::Generator& generator(const std::string& id);
  // Writes the generator's state as the next turn, with its text (what the user sent, the
  // answer), dropping the oldest state past keep_turns; then releases. Throws logattn::Error
  // (still releasing) when it cannot be written.
  void commit(const std::string& id, const std::string& user, const std::string& assistant);
  void release(const std::string& id);
  // Whether the conversation holds no text; nullopt: no such conversation.
  std::optional<bool> holds_no_text(const std::string& id) const;

  int64_t count() const;
  int64_t in_memory() const;
  int64_t keep_turns() const { return keep_turns_; }

  // Conversation ids: 1 to 64 of [A-Za-z0-9_-].
  static bool valid_id(const std::string& id);

 private:
  struct Conversation {
    std::unique_ptr<generate::Generator> gen;  // the latest turn's state; null: not in memory
    std::vector<TurnInfo> turns;               // kept, oldest first
    std::string title;
    bool busy = false;
    std::list<std::string>::iterator lru;
    bool in_lru = false;
    int64_t turn() const { return turns.empty() ? 0 : turns.back().turn; }
    // Whether the state after turn t is here (0: the empty state always is).
    bool keeps(int64_t t) const {
      return t == 0 || std::any_of(turns.begin(), turns.end(),
                                   [&](const TurnInfo& k) { return k.turn == t; });
    }
  };
  // Under mu_: the conversation (nullptr: unknown); a damaged one throws.
  Conversation* find_locked(const std::string& id);
  // Under mu_: the conversation that a request, fork, rewind or rename may take now, or why
  // not (a damaged one throws).
  Result changeable(const std::string& id, Conversation*& c);
  std::string folder(const std::string& id) const;
  std::string turn_path(const std::string& id, int64_t turn) const;
  std::string text_path(const std::string& id, int64_t turn) const;
  void scan();                                         // the folder at start
  void touch(const std::string& id, Conversation& c);  // most recently used; evicts
  ConversationInfo info_of(const std::string& id, const Conversation& c) const;
  std::string new_id_locked() const;

  model::Model& model_;
  const std::string dir_;
  const int64_t memory_mb_, keep_turns_;
  int64_t state_bytes_ = 0;
  std::unique_ptr<io::FolderLock> lock_;

  mutable std::mutex mu_;
  std::map<std::string, Conversation> conversations_;
  std::list<std::string> lru_;  // in memory, most recent first
};

}  // namespace logattn::serve
