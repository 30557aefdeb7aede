// A connection to one Redis server (Debian's libhiredis), shared by the threads of a server
// one command at a time, and made again after any failure, so that a Redis restarted or
// reached again is used again without restarting the server.
#pragma once

#include <hiredis/hiredis.h>

#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace logattn::serve {

class RedisClient {
 public:
  // url: redis://HOST:PORT[/DB] (DB in [0, 2^20]); throws logattn::Error for a malformed one.
  // Connects at the first command.
  explicit RedisClient(const std::string& url);
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;
  ~RedisClient();

  struct Reply {
    enum class Type { kNil, kString, kInteger, kArray, kStatus };
    Type type = Type::kNil;
    std::string str;  // kString and kStatus
    long long integer = 0;
    std::vector<Reply> elements;  // kArray
    bool nil() const { return type == Type::kNil; }
  };
  using Command = std::vector<std::string_view>;  // arguments, binary-safe

  // Sends the commands in one round trip and returns their replies in order. A connection
  // that fails or times out, or an error reply, throws StoreError (kUnavailable) naming the
  // server and the cause.
  std::vector<Reply> pipeline(const std::vector<Command>& commands);
  Reply command(const Command& args) { return pipeline({args}).front(); }

  const std::string& url() const { return url_; }

 private:
  void connect_locked();
  void drop_locked();
  std::vector<Reply> send_locked(const std::vector<Command>& commands);

  std::string url_, host_;
  int port_ = 0;
  int64_t db_ = 0;
  std::mutex mu_;
  redisContext* ctx_ = nullptr;
};

}  // namespace logattn::serve
