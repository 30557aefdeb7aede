#include "serve/redis_store.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "io/json.h"
#include "util/checked.h"
#include "util/kill_point.h"

namespace logattn::serve {

namespace {

using Clock = std::chrono::steady_clock;
using Reply = RedisClient::Reply;

constexpr int64_t kMaxTtl = int64_t{1} << 31;
// The kept-turns field of a hash holds at most this many bytes (1,024 turns of any size).
constexpr size_t kMaxTurnsField = 64 * 1024;
// A change that loses to another server's this many times in a row gives up (409).
constexpr int kTries = 4;

// KEYS[1] the conversation; ARGV: version, bump (0/1), ttl (0: none), n, n field/value pairs
// to set, fields to delete. -1: no such conversation; 0: at another version; 1: done.
constexpr const char* kUpdate = R"lua(
local v = redis.call('HGET', KEYS[1], 'version')
if not v then return -1 end
if v ~= ARGV[1] then return 0 end
local n = tonumber(ARGV[4])
for i = 5, 4 + 2 * n, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
for i = 5 + 2 * n, #ARGV do redis.call('HDEL', KEYS[1], ARGV[i]) end
if ARGV[2] == '1' then redis.call('HSET', KEYS[1], 'version', tostring(tonumber(v) + 1)) end
if ARGV[3] ~= '0' then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return 1
)lua";

// KEYS[1] the new conversation, KEYS[2] the list; ARGV: id, ttl. 0: the id is taken.
constexpr const char* kCreate = R"lua(
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'version', '0', 'turns', '', 'title', '')
redis.call('SADD', KEYS[2], ARGV[1])
if ARGV[2] ~= '0' then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 1
)lua";

// KEYS[1] the conversation, KEYS[2] the fork, KEYS[3] the list; ARGV: version, the fork's id,
// ttl, the fork's kept turns, fields the fork drops. -1 no such conversation; 0 at another
// version; -2 the fork's id is taken; 1 done.
constexpr const char* kFork = R"lua(
local v = redis.call('HGET', KEYS[1], 'version')
if not v then return -1 end
if v ~= ARGV[1] then return 0 end
if redis.call('COPY', KEYS[1], KEYS[2]) == 0 then return -2 end
for i = 5, #ARGV do redis.call('HDEL', KEYS[2], ARGV[i]) end
redis.call('HSET', KEYS[2], 'version', '0', 'turns', ARGV[4])
redis.call('SADD', KEYS[3], ARGV[2])
if ARGV[3] ~= '0' then redis.call('EXPIRE', KEYS[2], ARGV[3]) else redis.call('PERSIST', KEYS[2]) end
return 1
)lua";

// KEYS[1] the conversation, KEYS[2] the list; ARGV: id. The number of hashes removed.
constexpr const char* kRemove = R"lua(
local n = redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[2], ARGV[1])
return n
)lua";

Error damaged(const std::string& id, const std::string& detail) {
  return damaged_conversation(id, "in the state store is damaged", detail);
}

std::string turns_field(const std::vector<TurnInfo>& turns) {
  std::string s;
  for (const auto& t : turns) {
    if (!s.empty()) s += ' ';
    s += std::to_string(t.turn);
    s += ':';
    s += std::to_string(t.tokens);
  }
  return s;
}

std::vector<TurnInfo> parse_turns(const std::string& s) {
  if (s.size() > kMaxTurnsField)
    throw Error("its kept turns take " + std::to_string(s.size()) + " bytes");
  std::vector<TurnInfo> out;
  size_t i = 0;
  while (i < s.size()) {
    size_t end = s.find(' ', i);
    if (end == std::string::npos) end = s.size();
    const std::string item = s.substr(i, end - i);
    const size_t colon = item.find(':');
    if (colon == std::string::npos) throw Error("kept turn '" + item + "' is not turn:tokens");
    TurnInfo t;
    t.turn =
        util::parse_integer(item.substr(0, colon), 1, ConversationStore::kMaxTurn, "a kept turn");
    t.tokens = util::parse_integer(item.substr(colon + 1), 1, util::kMaxCount, "a turn's tokens");
    if (!out.empty() && t.turn <= out.back().turn) throw Error("its kept turns are not in order");
    out.push_back(t);
    i = end + 1;
  }
  return out;
}

std::string state_field(int64_t t) {
  return "state:" + std::to_string(t);
}
std::string text_field(int64_t t) {
  return "text:" + std::to_string(t);
}

// A reply that must be a whole number.
int64_t integer_of(const Reply& r) {
  if (r.type != Reply::Type::kInteger) throw Error("the state store answered a non-integer");
  return r.integer;
}

}  // namespace

bool RedisStore::Meta::keeps(int64_t t) const {
  return t == 0 ||
         std::any_of(turns.begin(), turns.end(), [&](const TurnInfo& k) { return k.turn == t; });
}

RedisStore::RedisStore(model::Model& model, const StoreConfig& cfg)
    : model_(model),
      redis_(cfg.redis_url),
      prefix_(cfg.key_prefix),
      ttl_(cfg.ttl_seconds),
      memory_mb_(cfg.memory_mb),
      keep_turns_(cfg.keep_turns) {
  check_store_settings(memory_mb_, keep_turns_);
  if (ttl_ < 0 || ttl_ > kMaxTtl) throw Error("serve: --state-ttl must be in [0, 2^31] seconds");
  if (prefix_.size() > 64 || !std::all_of(prefix_.begin(), prefix_.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '-' || c == ':' || c == '.';
      }))
    throw Error("serve: --state-prefix must be at most 64 of [A-Za-z0-9_-:.]");
  state_bytes_ = generate::Generator::snapshot_bytes(model);
}

std::string RedisStore::key(const std::string& id) const {
  return prefix_ + "conversation:" + id;
}

RedisStore::Meta RedisStore::parse_meta(const RedisClient::Reply& r) {
  for (const auto& e : r.elements)
    if (e.type != Reply::Type::kString && !e.nil()) throw Error("a field is not a string");
  Meta m;
  m.version = util::parse_integer(r.elements[0].str, 0, util::kMaxCount, "its version");
  m.turns = parse_turns(r.elements[1].str);
  m.title = r.elements[2].str;
  if (m.title.size() > kMaxTitle) throw Error("its title is too long");
  return m;
}

std::optional<RedisStore::Meta> RedisStore::read_meta(const std::string& id) {
  const Reply r = redis_.command({"HMGET", key(id), "version", "turns", "title"});
  if (r.type != Reply::Type::kArray || r.elements.size() != 3)
    throw Error("the state store answered HMGET with something else than 3 values");
  if (r.elements[0].nil()) return std::nullopt;
  try {
    return parse_meta(r);
  } catch (const Error& e) {
    throw damaged(id, e.what());
  }
}

RedisStore::Update RedisStore::update(const std::string& id, int64_t version, bool bump,
                                      const Fields& sets, const std::vector<std::string>& deletes) {
  const std::string v = std::to_string(version), ttl = std::to_string(ttl_),
                    n = std::to_string(sets.size()), k = key(id);
  RedisClient::Command cmd = {"EVAL", kUpdate, "1", k, v, bump ? "1" : "0", ttl, n};
  for (const auto& [field, value] : sets) cmd.push_back(field), cmd.push_back(value);
  for (const auto& field : deletes) cmd.push_back(field);
  const int64_t r = integer_of(redis_.command(cmd));
  return r == 1 ? Update::kDone : r == 0 ? Update::kChanged : Update::kGone;
}

template <typename F>
RedisStore::Result RedisStore::retried(const std::string& id, F change) {
  if (busy(id)) return Result::kBusy;
  for (int i = 0; i < kTries; ++i) {
    const auto m = read_meta(id);
    if (!m) return Result::kUnknown;
    const auto [result, update] = change(*m);
    if (result != Result::kDone || update == Update::kDone) {
      if (update == Update::kDone) {
        std::lock_guard<std::mutex> lock(mu_);
        forget_locked(id);  // its state in memory is of an earlier version
      }
      return result;
    }
    if (update == Update::kGone) return Result::kUnknown;
  }
  return Result::kBusy;
}

bool RedisStore::busy(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = local_.find(id);
  return it != local_.end() && it->second.busy;
}

std::string RedisStore::create() {
  for (;;) {
    const std::string id = random_id();
    const std::string ttl = std::to_string(ttl_);
    if (integer_of(redis_.command(
            {"EVAL", kCreate, "2", key(id), prefix_ + "conversations", id, ttl})) == 1)
      return id;
  }
}

ConversationInfo RedisStore::info_of(const std::string& id, const Meta& m) {
  ConversationInfo info;
  info.id = id;
  info.title = m.title;
  info.turns = m.turns;
  info.turn = m.turn();
  info.tokens = m.turns.empty() ? 0 : m.turns.back().tokens;
  std::lock_guard<std::mutex> lock(mu_);
  const auto it = local_.find(id);
  info.in_memory = it != local_.end() && it->second.gen && it->second.gen_version == m.version;
  return info;
}

std::optional<ConversationInfo> RedisStore::info(const std::string& id) {
  const auto m = read_meta(id);
  if (!m) return std::nullopt;
  return info_of(id, *m);
}

std::vector<ConversationInfo> RedisStore::list() {
  const Reply ids = redis_.command({"SMEMBERS", prefix_ + "conversations"});
  std::vector<std::string> valid;
  for (const auto& e : ids.elements)
    if (e.type == Reply::Type::kString && valid_id(e.str)) valid.push_back(e.str);
  std::sort(valid.begin(), valid.end());
  std::vector<std::string> keys;
  for (const auto& id : valid) keys.push_back(key(id));
  std::vector<RedisClient::Command> cmds;
  for (const auto& k : keys) cmds.push_back({"HMGET", k, "version", "turns", "title"});
  const auto replies = cmds.empty() ? std::vector<Reply>() : redis_.pipeline(cmds);
  std::vector<ConversationInfo> out;
  std::vector<std::string> gone;
  for (size_t i = 0; i < valid.size(); ++i) {
    const Reply& r = replies[i];
    if (r.type != Reply::Type::kArray || r.elements.size() != 3) continue;
    if (r.elements[0].nil()) {  // expired: its id leaves the list
      gone.push_back(valid[i]);
      continue;
    }
    Meta m;  // a damaged one is listed bare, and refused when used, as a damaged folder is
    try {
      m = parse_meta(r);
    } catch (const Error&) {
    }
    out.push_back(info_of(valid[i], m));
  }
  if (!gone.empty()) {
    const std::string list = prefix_ + "conversations";
    RedisClient::Command srem = {"SREM", list};
    for (const auto& id : gone) srem.push_back(id);
    redis_.command(srem);
  }
  return out;
}

std::optional<std::vector<RedisStore::TurnText>> RedisStore::texts(const std::string& id) {
  const auto m = read_meta(id);
  if (!m) return std::nullopt;
  std::vector<TurnText> out;
  constexpr int64_t kChunk = 256;
  for (int64_t first = 1; first <= m->turn(); first += kChunk) {
    const int64_t last = std::min(m->turn(), first + kChunk - 1);
    std::vector<std::string> fields;
    for (int64_t t = first; t <= last; ++t) fields.push_back(text_field(t));
    const std::string k = key(id);
    RedisClient::Command cmd = {"HMGET", k};
    for (const auto& f : fields) cmd.push_back(f);
    const Reply r = redis_.command(cmd);
    for (int64_t t = first; t <= last; ++t) {
      TurnText text{t, "", ""};
      const size_t i = static_cast<size_t>(t - first);
      if (r.type == Reply::Type::kArray && i < r.elements.size() &&
          r.elements[i].type == Reply::Type::kString) {
        const auto j =
            nlohmann::json::parse(r.elements[i].str, nullptr, /*allow_exceptions=*/false);
        if (j.is_object()) {
          if (j.contains("user") && j["user"].is_string()) text.user = j["user"];
          if (j.contains("assistant") && j["assistant"].is_string())
            text.assistant = j["assistant"];
        }
      }
      out.push_back(std::move(text));
    }
  }
  return out;
}

RedisStore::Result RedisStore::set_title(const std::string& id, const std::string& title) {
  if (title.size() > kMaxTitle)
    throw Error("a title has at most " + std::to_string(kMaxTitle) + " bytes");
  return retried(id, [&](const Meta& m) {
    return std::pair{Result::kDone, update(id, m.version, /*bump=*/false, {{"title", title}}, {})};
  });
}

RedisStore::Result RedisStore::remove(const std::string& id) {
  if (busy(id)) return Result::kBusy;
  const int64_t n =
      integer_of(redis_.command({"EVAL", kRemove, "2", key(id), prefix_ + "conversations", id}));
  std::lock_guard<std::mutex> lock(mu_);
  forget_locked(id);
  return n > 0 ? Result::kDone : Result::kUnknown;
}

RedisStore::Cut RedisStore::cut_at(const Meta& m, int64_t turn) {
  Cut cut;
  for (const auto& t : m.turns)
    if (t.turn <= turn)
      cut.kept.push_back(t);
    else
      cut.drops.push_back(state_field(t.turn));
  for (int64_t t = turn + 1; t <= m.turn(); ++t) cut.drops.push_back(text_field(t));
  return cut;
}

RedisStore::Result RedisStore::fork(const std::string& id, int64_t turn, std::string& new_id) {
  if (busy(id)) return Result::kBusy;
  for (int i = 0; i < kTries; ++i) {
    const auto m = read_meta(id);
    if (!m) return Result::kUnknown;
    const int64_t at = turn < 0 ? m->turn() : turn;
    if (!m->keeps(at)) return Result::kNoSuchTurn;
    const Cut cut = cut_at(*m, at);
    const std::string candidate = random_id(), v = std::to_string(m->version),
                      ttl = std::to_string(ttl_), turns = turns_field(cut.kept);
    const std::string from = key(id), to = key(candidate), list = prefix_ + "conversations";
    RedisClient::Command cmd = {"EVAL", kFork, "3", from, to, list, v, candidate, ttl, turns};
    for (const auto& f : cut.drops) cmd.push_back(f);
    const int64_t r = integer_of(redis_.command(cmd));
    if (r == -1) return Result::kUnknown;
    if (r == 1) {
      new_id = candidate;
      return Result::kDone;
    }
  }
  return Result::kBusy;
}

RedisStore::Result RedisStore::rewind(const std::string& id, int64_t turn) {
  return retried(id, [&](const Meta& m) {
    if (!m.keeps(turn)) return std::pair{Result::kNoSuchTurn, Update::kDone};
    const Cut cut = cut_at(m, turn);
    if (cut.drops.empty()) return std::pair{Result::kDone, Update::kDone};
    const std::string turns = turns_field(cut.kept);
    return std::pair{Result::kDone,
                     update(id, m.version, /*bump=*/true, {{"turns", turns}}, cut.drops)};
  });
}

RedisStore::Result RedisStore::acquire(const std::string& id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    Local& l = local_[id];
    if (l.busy) return Result::kBusy;
    l.busy = true;
  }
  std::optional<Meta> m;
  try {
    m = read_meta(id);
  } catch (...) {
    release(id);
    throw;
  }
  std::lock_guard<std::mutex> lock(mu_);
  Local& l = local_.at(id);
  if (!m) {
    l.busy = false;
    forget_locked(id);
    return Result::kUnknown;
  }
  l.acquired = std::move(*m);
  return Result::kDone;
}

generate::Generator& RedisStore::generator(const std::string& id) {
  Meta m;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Local& l = local_.at(id);  // acquired: neither forgotten nor evicted meanwhile
    if (l.gen && l.gen_version == l.acquired.version) {
      touch_locked(id, l);
      return *l.gen;
    }
    m = l.acquired;
  }
  auto g = std::make_unique<generate::Generator>(model_);
  const auto t0 = Clock::now();
  if (m.turn() > 0) {
    const Reply r = redis_.command({"HGET", key(id), state_field(m.turn())});
    try {
      if (r.type != Reply::Type::kString)
        throw Error("the state of its turn " + std::to_string(m.turn()) + " is missing");
      g->load(r.str, "the state store's " + key(id) + " " + state_field(m.turn()));
      if (g->tokens() != m.turns.back().tokens)
        throw Error("its state holds " + std::to_string(g->tokens()) + " tokens, its turn " +
                    std::to_string(m.turns.back().tokens));
    } catch (const Error& e) {
      throw damaged(id, e.what());
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  Local& l = local_.at(id);
  if (m.turn() > 0) {
    ++stats_.loads;
    stats_.load_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
  }
  l.gen = std::move(g);
  l.gen_version = m.version;
  touch_locked(id, l);
  return *l.gen;
}

void RedisStore::commit(const std::string& id, const std::string& user,
                        const std::string& assistant) {
  Meta m;
  generate::Generator* gen;
  {
    std::lock_guard<std::mutex> lock(mu_);
    Local& l = local_.at(id);
    m = l.acquired;
    gen = l.gen.get();
  }
  const int64_t turn = m.turn() + 1;
  const auto t0 = Clock::now();
  Update u;
  try {
    std::vector<TurnInfo> turns = m.turns;
    turns.push_back({turn, gen->tokens()});
    std::vector<std::string> drops;
    while (static_cast<int64_t>(turns.size()) > keep_turns_) {
      drops.push_back(state_field(turns.front().turn));
      turns.erase(turns.begin());
    }
    const std::string state = gen->bytes(), kept = turns_field(turns),
                      text = io::dump_json({{"user", user}, {"assistant", assistant}});
    u = update(id, m.version, /*bump=*/true,
               {{state_field(turn), state}, {text_field(turn), text}, {"turns", kept}}, drops);
  } catch (...) {
    release(id);
    throw;
  }
  if (u != Update::kDone) {
    release(id);
    throw StoreError(StoreError::Kind::kConflict,
                     u == Update::kGone
                         ? "the conversation '" + id +
                               "' was deleted while this server answered; the answer was not kept"
                         : "the conversation '" + id +
                               "' was changed by another request (on another server) while this "
                               "one answered; this answer was not kept: send the turn again");
  }
  util::kill_point("conversation-commit", turn);
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.saves;
  stats_.save_seconds += std::chrono::duration<double>(Clock::now() - t0).count();
  Local& l = local_.at(id);
  l.busy = false;
  l.gen_version = m.version + 1;
  touch_locked(id, l);
}

void RedisStore::release(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  if (const auto it = local_.find(id); it != local_.end()) it->second.busy = false;
  forget_locked(id);
}

std::optional<bool> RedisStore::holds_no_text(const std::string& id) {
  const auto m = read_meta(id);
  if (!m) return std::nullopt;
  return m->turns.empty();
}

int64_t RedisStore::count() {
  return integer_of(redis_.command({"SCARD", prefix_ + "conversations"}));
}

int64_t RedisStore::in_memory() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(lru_.size());
}

StoreStats RedisStore::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void RedisStore::forget_locked(const std::string& id) {
  const auto it = local_.find(id);
  if (it == local_.end() || it->second.busy) return;
  if (it->second.in_lru) lru_.erase(it->second.lru);
  local_.erase(it);
}

void RedisStore::touch_locked(const std::string& id, Local& l) {
  if (l.in_lru) lru_.erase(l.lru);
  lru_.push_front(id);
  l.lru = lru_.begin(), l.in_lru = true;
  // Past the bound, the least recently used leave memory (the store keeps them).
  const int64_t keep = std::max<int64_t>(1, memory_mb_ * 1048576 / state_bytes_);
  for (auto it = lru_.end(); static_cast<int64_t>(lru_.size()) > keep && it != lru_.begin();) {
    --it;
    Local& old = local_.at(*it);
    if (old.busy) continue;
    const std::string gone = *it;
    it = lru_.erase(it);
    local_.erase(gone);
  }
}

}  // namespace logattn::serve
