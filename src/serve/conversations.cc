#include "serve/conversations.h"

#include <algorithm>
#include <cstdio>
#include <random>

#include "serve/folder_store.h"
#include "serve/redis_store.h"

namespace logattn::serve {

bool ConversationStore::valid_id(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
  });
}

std::string ConversationStore::random_id() {
  std::random_device rd;
  std::string id = "conv-";
  for (int i = 0; i < 4; ++i) {
    char b[9];
    std::snprintf(b, sizeof b, "%08x", rd());
    id += b;
  }
  return id;
}

void check_store_settings(int64_t memory_mb, int64_t keep_turns) {
  if (memory_mb < 1 || memory_mb > (int64_t{1} << 20))
    throw Error("serve: --conversations-memory-mb must be in [1, 2^20]");
  if (keep_turns < 1 || keep_turns > 1024) throw Error("serve: --keep-turns must be in [1, 1024]");
}

Error damaged_conversation(const std::string& id, const std::string& what,
                           const std::string& detail) {
  std::fprintf(stderr, "logattn serve: conversation %s: %s\n", id.c_str(), detail.c_str());
  return Error("the state of conversation '" + id + "' " + what +
               "; DELETE the conversation to remove it");
}

std::unique_ptr<ConversationStore> open_store(model::Model& model, const StoreConfig& cfg) {
  if (!cfg.dir.empty() && !cfg.redis_url.empty())
    throw Error("serve: give --conversations DIR or --state-store URL, not both");
  if (!cfg.redis_url.empty()) return std::make_unique<RedisStore>(model, cfg);
  if (!cfg.dir.empty())
    return std::make_unique<FolderStore>(model, cfg.dir, cfg.memory_mb, cfg.keep_turns);
  return nullptr;
}

}  // namespace logattn::serve
