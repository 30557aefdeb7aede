// The folder store: each conversation is a folder in the conversations folder, holding the
// state after each of its last turns (`<turn>.safetensors`, the logattn-state format, written
// through a temporary name and a rename), the text of every turn (`<turn>.json`: what the user
// sent and the answer) and its title (`title.json`); the latest turn's state of the most
// recently used ones also stays in memory. One server owns the folder (it is locked).
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

#include "io/files.h"
#include "serve/conversations.h"

namespace logattn::serve {

class FolderStore : public ConversationStore {
 public:
  // dir: created if absent, and locked while the store lives (one server per folder).
  // memory_mb: latest states kept in memory. keep_turns: states kept per conversation.
  FolderStore(model::Model& model, std::string dir, int64_t memory_mb, int64_t keep_turns);
  FolderStore(const FolderStore&) = delete;
  FolderStore& operator=(const FolderStore&) = delete;

  std::string create() override;
  std::optional<ConversationInfo> info(const std::string& id) override;
  std::vector<ConversationInfo> list() override;  // without reading files
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
  StoreStats stats_;
};

}  // namespace logattn::serve
