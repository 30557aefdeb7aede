#include "serve/redis_client.h"

#include <sys/time.h>

#include "serve/conversations.h"
#include "util/checked.h"

namespace logattn::serve {

namespace {

// A server that does not answer within these is taken as unreachable (a state is at most a
// few megabytes: far less than this on any network).
constexpr timeval kConnectTimeout{2, 0};
constexpr timeval kCommandTimeout{10, 0};
// Replies nest no deeper than the store's commands make them.
constexpr int kMaxDepth = 4;

RedisClient::Reply convert(const redisReply* r, int depth) {
  RedisClient::Reply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
      out.type = r->type == REDIS_REPLY_STRING ? RedisClient::Reply::Type::kString
                                               : RedisClient::Reply::Type::kStatus;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisClient::Reply::Type::kInteger;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisClient::Reply::Type::kArray;
      if (depth >= kMaxDepth) break;
      for (size_t i = 0; i < r->elements; ++i)
        out.elements.push_back(convert(r->element[i], depth + 1));
      break;
    default:
      break;  // nil
  }
  return out;
}

}  // namespace

RedisClient::RedisClient(const std::string& url) : url_(url) {
  const std::string scheme = "redis://";
  auto bad = [&](const std::string& why) {
    return Error("serve: --state-store '" + url + "' is not redis://HOST:PORT[/DB]: " + why);
  };
  if (!url.starts_with(scheme)) throw bad("it does not start with redis://");
  std::string rest = url.substr(scheme.size());
  if (const size_t slash = rest.find('/'); slash != std::string::npos) {
    db_ = util::parse_integer(rest.substr(slash + 1), 0, int64_t{1} << 20,
                              "serve: --state-store '" + url + "': the database number");
    rest.resize(slash);
  }
  const size_t colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0) throw bad("no HOST:PORT");
  host_ = rest.substr(0, colon);
  port_ = static_cast<int>(util::parse_integer(rest.substr(colon + 1), 1, 65535,
                                               "serve: --state-store '" + url + "': the port"));
}

RedisClient::~RedisClient() {
  drop_locked();
}

void RedisClient::drop_locked() {
  if (ctx_) redisFree(ctx_);
  ctx_ = nullptr;
}

void RedisClient::connect_locked() {
  if (ctx_) return;
  redisContext* c = redisConnectWithTimeout(host_.c_str(), port_, kConnectTimeout);
  if (!c || c->err) {
    const std::string why = c ? c->errstr : "out of memory";
    if (c) redisFree(c);
    throw StoreError(StoreError::Kind::kUnavailable,
                     "the state store " + url_ + " is unreachable (" + why + "); retry later");
  }
  ctx_ = c;
  redisSetTimeout(ctx_, kCommandTimeout);
  redisEnableKeepAlive(ctx_);
  if (db_ != 0) {
    const std::string db = std::to_string(db_);
    const char* argv[] = {"SELECT", db.c_str()};
    auto* r = static_cast<redisReply*>(redisCommandArgv(ctx_, 2, argv, nullptr));
    const bool ok = r && r->type == REDIS_REPLY_STATUS;
    const std::string why =
        r ? std::string(r->str ? r->str : "", r->str ? r->len : 0) : ctx_->errstr;
    if (r) freeReplyObject(r);
    if (!ok) {
      drop_locked();
      throw StoreError(StoreError::Kind::kUnavailable,
                       "the state store " + url_ + " refused database " + db + " (" + why + ")");
    }
  }
}

std::vector<RedisClient::Reply> RedisClient::pipeline(const std::vector<Command>& commands) {
  std::lock_guard<std::mutex> lock(mu_);
  const bool reused = ctx_ != nullptr;
  connect_locked();
  try {
    return send_locked(commands);
  } catch (const StoreError&) {
    // A connection kept from before may have been closed by a Redis since restarted (the
    // commands then never reached it): sent once more on a new one.
    if (!reused || ctx_) throw;
    connect_locked();
    return send_locked(commands);
  }
}

std::vector<RedisClient::Reply> RedisClient::send_locked(const std::vector<Command>& commands) {
  auto lost = [&](const std::string& why) {
    drop_locked();  // made again at the next command
    return StoreError(StoreError::Kind::kUnavailable,
                      "the state store " + url_ + " is unreachable (" + why + "); retry later");
  };
  for (const Command& args : commands) {
    std::vector<const char*> argv;
    std::vector<size_t> lens;
    for (const auto a : args) argv.push_back(a.data()), lens.push_back(a.size());
    if (redisAppendCommandArgv(ctx_, static_cast<int>(argv.size()), argv.data(), lens.data()) !=
        REDIS_OK)
      throw lost(ctx_->errstr);
  }
  std::vector<Reply> out;
  std::string error;
  for (size_t i = 0; i < commands.size(); ++i) {
    void* raw = nullptr;
    if (redisGetReply(ctx_, &raw) != REDIS_OK || !raw) throw lost(ctx_->errstr);
    const auto* r = static_cast<redisReply*>(raw);
    if (r->type == REDIS_REPLY_ERROR && error.empty()) error.assign(r->str, r->len);
    out.push_back(convert(r, 0));
    freeReplyObject(raw);
  }
  if (!error.empty())
    throw StoreError(StoreError::Kind::kUnavailable,
                     "the state store " + url_ + " answered with an error: " + error);
  return out;
}

}  // namespace logattn::serve
