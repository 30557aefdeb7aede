#include "serve/folder_store.h"

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "io/json.h"
#include "io/safetensors.h"
#include "logattn/error.h"
#include "util/checked.h"
#include "util/kill_point.h"

namespace logattn::serve {

namespace fs = std::filesystem;

namespace {

// What an entry of the folder is. Only a regular file is ever read and only a real folder is
// ever entered: a link could point anywhere on the machine, a FIFO would block the reader.
enum class Kind { kNone, kRegular, kFolder, kOther };

Kind kind_of(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return Kind::kNone;
  return S_ISREG(st.st_mode) ? Kind::kRegular : S_ISDIR(st.st_mode) ? Kind::kFolder : Kind::kOther;
}

Error damaged(const std::string& id, const std::string& detail) {
  return damaged_conversation(id, "in the conversations folder is damaged or not a regular file",
                              detail);
}

// Runs read() on a turn's state file of conversation id, refusing anything but a regular file.
template <typename F>
auto read_turn_file(const std::string& id, const std::string& path, F read) {
  try {
    if (kind_of(path) != Kind::kRegular) throw Error(path + " is not a regular file");
    return read();
  } catch (const Error& e) {
    throw damaged(id, e.what());
  }
}

// "<turn><ext>" -> turn; 0 for any other name.
int64_t turn_of(const std::string& name, const std::string& ext = ".safetensors") {
  if (name.size() <= ext.size() || name.size() > ext.size() + 13 || !name.ends_with(ext) ||
      name[0] == '0')
    return 0;
  int64_t t = 0;
  for (size_t i = 0; i + ext.size() < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return 0;
    t = t * 10 + (name[i] - '0');
  }
  return t <= ConversationStore::kMaxTurn ? t : 0;
}

// A small JSON file of the conversation's folder (a turn's text, the title), or null when it
// is absent, not a regular file, too large or not JSON.
nlohmann::json read_small_json(const std::string& path) {
  std::error_code ec;
  if (kind_of(path) != Kind::kRegular || fs::file_size(path, ec) > (size_t{1} << 22) || ec)
    return nullptr;
  std::ifstream f(path, std::ios::binary);
  return nlohmann::json::parse(f, nullptr, /*allow_exceptions=*/false);
}

std::string read_title(const std::string& folder) {
  const auto j = read_small_json((fs::path(folder) / "title.json").string());
  return j.is_object() && j.contains("title") && j["title"].is_string()
             ? j["title"].get<std::string>().substr(0, ConversationStore::kMaxTitle)
             : std::string();
}

}  // namespace

FolderStore::FolderStore(model::Model& model, std::string dir, int64_t memory_mb,
                         int64_t keep_turns)
    : model_(model), dir_(std::move(dir)), memory_mb_(memory_mb), keep_turns_(keep_turns) {
  check_store_settings(memory_mb_, keep_turns_);
  state_bytes_ = generate::Generator::snapshot_bytes(model);
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (!fs::is_directory(dir_))
    throw Error("serve: --conversations " + dir_ + " is not a folder we can create");
  // Another server writing the same states would overwrite this one's (and lose its
  // temporaries to the cleaning below).
  lock_ = std::make_unique<io::FolderLock>(dir_, "serve: --conversations");
  io::remove_stale_temporaries(dir_);
  scan();
}

std::string FolderStore::folder(const std::string& id) const {
  return (fs::path(dir_) / id).string();
}

std::string FolderStore::turn_path(const std::string& id, int64_t turn) const {
  return (fs::path(dir_) / id / (std::to_string(turn) + ".safetensors")).string();
}

std::string FolderStore::text_path(const std::string& id, int64_t turn) const {
  return (fs::path(dir_) / id / (std::to_string(turn) + ".json")).string();
}

void FolderStore::scan() {
  // The layout of logattn 0.2 (<id>.safetensors, <id>.empty beside each other) moves into
  // folders: a state becomes turn 1. Each step is a rename or a removal that a kill leaves
  // consistent, and is done again at the next start.
  for (const auto& e : fs::directory_iterator(dir_)) {
    const std::string name = e.path().filename().string();
    for (const std::string ext : {".safetensors", ".empty"}) {
      if (!name.ends_with(ext) || !valid_id(name.substr(0, name.size() - ext.size()))) continue;
      const std::string id = name.substr(0, name.size() - ext.size());
      std::error_code ec;
      if (kind_of(folder(id)) == Kind::kNone) fs::create_directory(folder(id), ec);
      if (kind_of(folder(id)) != Kind::kFolder) continue;
      if (ext == ".safetensors" && kind_of(turn_path(id, 1)) == Kind::kNone)
        fs::rename(e.path(), turn_path(id, 1), ec);
      else if (ext == ".empty")
        fs::remove(e.path(), ec);
    }
  }
  for (const auto& e : fs::directory_iterator(dir_)) {
    const std::string id = e.path().filename().string();
    if (!valid_id(id)) continue;
    Conversation& c = conversations_[id];
    if (kind_of(folder(id)) != Kind::kFolder) continue;  // listed; refused when used
    io::remove_stale_temporaries(folder(id));
    std::vector<int64_t> texts;
    for (const auto& f : fs::directory_iterator(folder(id))) {
      const std::string name = f.path().filename().string();
      if (const int64_t t = turn_of(name); t > 0) c.turns.push_back({t});
      if (const int64_t t = turn_of(name, ".json"); t > 0) texts.push_back(t);
    }
    std::sort(c.turns.begin(), c.turns.end(),
              [](const TurnInfo& a, const TurnInfo& b) { return a.turn < b.turn; });
    // More than kept: a kill came between writing a turn and removing the oldest.
    while (static_cast<int64_t>(c.turns.size()) > keep_turns_) {
      std::error_code ec;
      fs::remove(turn_path(id, c.turns.front().turn), ec);
      c.turns.erase(c.turns.begin());
    }
    // A turn's text past the latest state: a kill came between writing it and the state.
    for (const int64_t t : texts)
      if (t > c.turn()) {
        std::error_code ec;
        fs::remove(text_path(id, t), ec);
      }
    c.title = read_title(folder(id));
  }
}

std::string FolderStore::new_id_locked() const {
  for (;;) {
    std::string id = random_id();
    if (!conversations_.count(id) && kind_of(folder(id)) == Kind::kNone) return id;
  }
}

std::string FolderStore::create() {
  std::string id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = new_id_locked();
    conversations_[id].busy = true;  // reserved while its folder is made
  }
  std::error_code ec;
  fs::create_directory(folder(id), ec);
  std::lock_guard<std::mutex> lock(mu_);
  if (ec) {
    conversations_.erase(id);
    throw Error("cannot make a conversation's folder in " + dir_ + ": " + ec.message());
  }
  conversations_[id].busy = false;
  return id;
}

ConversationInfo FolderStore::info_of(const std::string& id, const Conversation& c) const {
  ConversationInfo info;
  info.id = id;
  info.turns = c.turns;
  info.turn = c.turn();
  info.tokens = c.turns.empty() ? 0 : c.turns.back().tokens;
  info.in_memory = c.gen != nullptr;
  info.title = c.title;
  return info;
}

FolderStore::Conversation* FolderStore::find_locked(const std::string& id) {
  const auto it = conversations_.find(id);
  if (it == conversations_.end()) return nullptr;
  if (kind_of(folder(id)) != Kind::kFolder) throw damaged(id, folder(id) + " is not a folder");
  return &it->second;
}

std::optional<ConversationInfo> FolderStore::info(const std::string& id) {
  std::vector<int64_t> unknown;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const Conversation* c = find_locked(id);
    if (!c) return std::nullopt;
    for (const auto& t : c->turns)
      if (t.tokens < 0) unknown.push_back(t.turn);
  }
  // Read without holding the store (files are replaced whole by a rename, never seen
  // half-written); a turn removed meanwhile is skipped.
  std::map<int64_t, int64_t> read;
  for (const int64_t t : unknown) {
    const std::string path = turn_path(id, t);
    if (kind_of(path) == Kind::kNone) continue;
    read[t] = read_turn_file(id, path, [&] {
      const auto st = io::SafeTensors::read(path);
      return util::parse_integer(st.required_metadata("tokens", "state file"), 1, util::kMaxCount,
                                 "state file " + path);
    });
  }
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = conversations_.find(id);
  if (it == conversations_.end()) return std::nullopt;
  for (auto& t : it->second.turns)
    if (t.tokens < 0 && read.count(t.turn)) t.tokens = read[t.turn];
  return info_of(id, it->second);
}

std::vector<ConversationInfo> FolderStore::list() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<ConversationInfo> out;
  for (const auto& [id, c] : conversations_) out.push_back(info_of(id, c));
  return out;
}

std::optional<std::vector<FolderStore::TurnText>> FolderStore::texts(const std::string& id) {
  int64_t latest;
  {
    std::lock_guard<std::mutex> lock(mu_);
    const Conversation* c = find_locked(id);
    if (!c) return std::nullopt;
    latest = c->turn();
  }
  std::vector<TurnText> out;
  for (int64_t t = 1; t <= latest; ++t) {
    const auto j = read_small_json(text_path(id, t));
    TurnText text{t, "", ""};
    if (j.is_object()) {
      if (j.contains("user") && j["user"].is_string()) text.user = j["user"];
      if (j.contains("assistant") && j["assistant"].is_string()) text.assistant = j["assistant"];
    }
    out.push_back(std::move(text));
  }
  return out;
}

FolderStore::Result FolderStore::set_title(const std::string& id, const std::string& title) {
  if (title.size() > kMaxTitle)
    throw Error("a title has at most " + std::to_string(kMaxTitle) + " bytes");
  {
    std::lock_guard<std::mutex> lock(mu_);
    Conversation* c = nullptr;
    if (const Result r = changeable(id, c); r != Result::kDone) return r;
    c->busy = true;
  }
  try {
    io::write_file_atomic((fs::path(folder(id)) / "title.json").string(),
                          io::dump_json({{"title", title}}));
  } catch (...) {
    release(id);
    throw;
  }
  std::lock_guard<std::mutex> lock(mu_);
  Conversation& c = conversations_.at(id);
  c.title = title;
  c.busy = false;
  return Result::kDone;
}

FolderStore::Result FolderStore::remove(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto it = conversations_.find(id);
    if (it == conversations_.end()) return Result::kUnknown;
    if (it->second.busy) return Result::kBusy;
    it->second.busy = true;
  }
  // Renamed away first, so that a kill while its files are removed leaves no half
  // conversation; whatever the entry is, a link is removed, never what it points to.
  const std::string gone = io::temporary_path(folder(id));
  std::error_code ec;
  if (kind_of(folder(id)) != Kind::kNone) fs::rename(folder(id), gone, ec);
  if (!ec) fs::remove_all(gone, ec);
  std::lock_guard<std::mutex> lock(mu_);
  Conversation& c = conversations_.at(id);
  if (ec) {
    c.busy = false;
    throw Error("cannot remove the files of conversation '" + id + "': " + ec.message());
  }
  if (c.in_lru) lru_.erase(c.lru);
  conversations_.erase(id);
  return Result::kDone;
}

FolderStore::Result FolderStore::changeable(const std::string& id, Conversation*& c) {
  Conversation* found = find_locked(id);
  if (!found) return Result::kUnknown;
  if (found->busy) return Result::kBusy;
  c = found;
  return Result::kDone;
}

FolderStore::Result FolderStore::fork(const std::string& id, int64_t turn, std::string& new_id) {
  std::vector<TurnInfo> turns;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Conversation* found = nullptr;
    if (const Result r = changeable(id, found); r != Result::kDone) return r;
    Conversation& c = *found;
    if (turn < 0) turn = c.turn();
    if (!c.keeps(turn)) return Result::kNoSuchTurn;
    for (const auto& t : c.turns)
      if (t.turn <= turn) turns.push_back(t);
    c.busy = true;
    new_id = new_id_locked();
    conversations_[new_id].busy = true;  // reserved while it is copied
  }
  // Copied under a temporary name, then renamed: a kill leaves no half copy.
  const std::string tmp = io::temporary_path(folder(new_id));
  try {
    std::error_code ec;
    fs::create_directory(tmp, ec);
    if (ec) throw Error("cannot make " + tmp + ": " + ec.message());
    for (const auto& t : turns) {
      const std::string from = turn_path(id, t.turn);
      if (kind_of(from) != Kind::kRegular) throw damaged(id, from + " is not a regular file");
      fs::copy_file(from, fs::path(tmp) / (std::to_string(t.turn) + ".safetensors"), ec);
      if (ec) throw Error("cannot copy " + from + ": " + ec.message());
      util::kill_point("conversation-fork", t.turn);
    }
    // Every turn's text up to the fork's (kept states or not), and the title.
    for (int64_t t = 1; t <= turn; ++t)
      if (kind_of(text_path(id, t)) == Kind::kRegular)
        fs::copy_file(text_path(id, t), fs::path(tmp) / (std::to_string(t) + ".json"), ec);
    const fs::path title = fs::path(folder(id)) / "title.json";
    if (kind_of(title.string()) == Kind::kRegular)
      fs::copy_file(title, fs::path(tmp) / "title.json", ec);
    fs::rename(tmp, folder(new_id), ec);
    if (ec) throw Error("cannot rename " + tmp + ": " + ec.message());
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    std::lock_guard<std::mutex> lock(mu_);
    conversations_.erase(new_id);
    conversations_.at(id).busy = false;
    throw;
  }
  std::lock_guard<std::mutex> lock(mu_);
  conversations_.at(id).busy = false;
  Conversation& f = conversations_.at(new_id);
  f.turns = turns;
  f.title = conversations_.at(id).title;
  f.busy = false;
  return Result::kDone;
}

FolderStore::Result FolderStore::rewind(const std::string& id, int64_t turn) {
  std::vector<int64_t> later;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Conversation* found = nullptr;
    if (const Result r = changeable(id, found); r != Result::kDone) return r;
    Conversation& c = *found;
    if (!c.keeps(turn)) return Result::kNoSuchTurn;
    for (auto t = c.turns.rbegin(); t != c.turns.rend() && t->turn > turn; ++t)
      later.push_back(t->turn);
    c.busy = true;
  }
  // Newest first: a kill between two removals leaves the conversation at a turn it had.
  std::error_code ec;
  size_t removed = 0;
  for (; removed < later.size(); ++removed) {
    fs::remove(turn_path(id, later[removed]), ec);
    if (ec) break;
    util::kill_point("conversation-rewind", later[removed]);
  }
  // The texts past the turn now latest (kept longer than states; one left by a kill is
  // removed at the next start).
  if (removed > 0) {
    const int64_t now = removed == later.size() ? turn : later[removed];
    for (int64_t t = later.front(); t > now; --t) {
      std::error_code ignored;
      fs::remove(text_path(id, t), ignored);
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  Conversation& c = conversations_.at(id);
  c.turns.resize(c.turns.size() - removed);
  if (removed > 0) {
    c.gen.reset();
    if (c.in_lru) lru_.erase(c.lru), c.in_lru = false;
  }
  c.busy = false;
  if (ec) throw Error("cannot remove a turn of conversation '" + id + "': " + ec.message());
  return Result::kDone;
}

FolderStore::Result FolderStore::acquire(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  Conversation* c = nullptr;
  const Result r = changeable(id, c);
  if (r == Result::kDone) c->busy = true;
  return r;
}

std::optional<bool> FolderStore::holds_no_text(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = conversations_.find(id);
  if (it == conversations_.end()) return std::nullopt;
  return it->second.turns.empty();
}

generate::Generator& FolderStore::generator(const std::string& id) {
  Conversation* c;
  int64_t turn;
  {
    std::lock_guard<std::mutex> lock(mu_);
    c = &conversations_.at(id);  // acquired: neither removed nor evicted meanwhile
    if (c->gen) return *c->gen;
    turn = c->turn();
  }
  auto g = std::make_unique<generate::Generator>(model_);
  const auto t0 = std::chrono::steady_clock::now();
  if (turn > 0) {
    const std::string path = turn_path(id, turn);
    read_turn_file(id, path, [&] { g->load(path); });
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (turn > 0) {
    c->turns.back().tokens = g->tokens();
    ++stats_.loads;
    stats_.load_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  c->gen = std::move(g);
  touch(id, *c);
  return *c->gen;
}

void FolderStore::commit(const std::string& id, const std::string& user,
                         const std::string& assistant) {
  Conversation* c;
  {
    std::lock_guard<std::mutex> lock(mu_);
    c = &conversations_.at(id);
  }
  const int64_t turn = c->turn() + 1;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    // The text first; the state's rename makes the turn count.
    io::write_file_atomic(text_path(id, turn),
                          io::dump_json({{"user", user}, {"assistant", assistant}}));
    c->gen->save(turn_path(id, turn));
  } catch (...) {
    release(id);
    throw;
  }
  util::kill_point("conversation-commit", turn);
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.saves;
  stats_.save_seconds +=
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  c->turns.push_back({turn, c->gen->tokens()});
  while (static_cast<int64_t>(c->turns.size()) > keep_turns_) {
    std::error_code ec;  // a file left behind is removed at the next start
    fs::remove(turn_path(id, c->turns.front().turn), ec);
    c->turns.erase(c->turns.begin());
  }
  c->busy = false;
  touch(id, *c);
}

void FolderStore::release(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = conversations_.find(id);
  if (it == conversations_.end()) return;
  Conversation& c = it->second;
  c.busy = false;
  c.gen.reset();
  if (c.in_lru) lru_.erase(c.lru), c.in_lru = false;
}

void FolderStore::touch(const std::string& id, Conversation& c) {
  if (c.in_lru) lru_.erase(c.lru);
  lru_.push_front(id);
  c.lru = lru_.begin(), c.in_lru = true;
  // Past the bound, the least recently used leave memory (their files stay).
  const int64_t keep = std::max<int64_t>(1, memory_mb_ * 1048576 / state_bytes_);
  for (auto it = lru_.end(); static_cast<int64_t>(lru_.size()) > keep && it != lru_.begin();) {
    --it;
    Conversation& old = conversations_.at(*it);
    if (old.busy) continue;
    old.gen.reset();
    old.in_lru = false;
    it = lru_.erase(it);
  }
}

int64_t FolderStore::count() {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(conversations_.size());
}

StoreStats FolderStore::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

int64_t FolderStore::in_memory() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(lru_.size());
}

}  // namespace logattn::serve
