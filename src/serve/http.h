// The HTTP connections of `logattn serve`: cpp-httplib parses requests and writes responses;
// this layer owns each connection and bounds what a client can make the server hold (bytes,
// time, threads), so that slow, huge or endless requests are cut off with a status instead of
// exhausting memory or the workers.
#pragma once

#include <httplib.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

namespace logattn::serve {

struct HttpLimits {
  int64_t max_head_bytes = 32 * 1024;  // request line and headers together; more: 431
  int64_t max_header_lines = 100;      // more: 431
  int64_t max_body_bytes = 1 << 20;    // the decoded body; more: 413 (raw bytes: see below)
  double head_seconds = 10;            // the request line and headers arrive within; else 408
  double request_seconds = 60;         // the whole request arrives within; else 408
  double io_seconds = 10;              // one read or write waits at most this long
  double keep_alive_seconds = 5;       // a connection idle between requests longer is closed
  int64_t keep_alive_requests = 100;   // requests on one connection, then it is closed
  int64_t max_connections = 2048;      // connections served at once (a thread each); more wait
};

// The raw bytes of a request's body may exceed the decoded body (chunked encoding's size
// lines); they are bounded at twice the body's limit plus this.
constexpr int64_t kBodyFramingSlack = 64 * 1024;

// Writes an error response's body (the server's JSON format) for a status this layer sends
// by itself.
using ErrorBody = std::function<std::string(int status, const std::string& message)>;

class GuardedServer : public httplib::Server {
 public:
  GuardedServer(HttpLimits limits, ErrorBody error_body);

  const HttpLimits& limits() const { return limits_; }

  // Binds host:port (0: a free port) with a deep backlog and returns the port. Another
  // server on the same port is refused, not shared. Throws logattn::Error naming the cause.
  int bind_listener(const std::string& host, int port);

  // Serves one connected socket until it closes, then closes it: the accept loop's work, and
  // the fuzzer's way in.
  void serve_connection(socket_t sock) { process_and_close_socket(sock); }

  // Stops listening; connections finish the request in flight and take no other.
  void shut_down() {
    stopping_ = true;
    stop();
  }

 private:
  // httplib calls this once per accepted connection, on a worker of the task queue.
  bool process_and_close_socket(socket_t sock) override;

  HttpLimits limits_;
  ErrorBody error_body_;
  int listening_ = -1;
  std::atomic<bool> stopping_{false};
};

// Called from a handler: the connection closes once its response is written (a request whose
// body was left unread cannot be followed by another on the same connection).
void close_connection_after_response();

// cpp-httplib's version ("cpp-httplib 0.11.4"), for --version.
std::string http_library_version();

// Raises this process's limit on open files to its hard limit: every connection is a file.
void raise_open_file_limit();

}  // namespace logattn::serve
