#include "serve/http.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "logattn/error.h"

namespace logattn::serve {

namespace {

using Clock = std::chrono::steady_clock;

// Waits until fd is ready for events, at most `seconds`: > 0 ready, 0 timed out, < 0 error.
int wait_fd(int fd, short events, double seconds) {
  pollfd p{fd, events, 0};
  const int ms = static_cast<int>(std::clamp(seconds, 0.0, 3600.0) * 1000);
  for (;;) {
    const int r = ::poll(&p, 1, ms);
    if (r < 0 && errno == EINTR) continue;
    return r;
  }
}

std::string address_of(const sockaddr_storage& a, int* port) {
  char host[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(a);
    ::inet_ntop(AF_INET, &in.sin_addr, host, sizeof host);
    *port = ntohs(in.sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(a);
    ::inet_ntop(AF_INET6, &in6.sin6_addr, host, sizeof host);
    *port = ntohs(in6.sin6_port);
  }
  return host;
}

// One client connection as httplib's Stream. Reads are buffered; each request's bytes are
// counted as they are handed to httplib (which reads the request line and headers a byte at
// a time, the body only as far as it goes), so the head and the body are told apart exactly.
class Connection final : public httplib::Stream {
 public:
  Connection(socket_t sock, const HttpLimits& limits, const ErrorBody& error_body)
      : sock_(sock), limits_(limits), error_body_(error_body) {}

  // Whether a request begins within `seconds` (bytes buffered or arriving).
  bool wait_for_request(double seconds) const {
    return pos_ < end_ || wait_fd(sock_, POLLIN, seconds) > 0;
  }

  void start_request() {
    head_done_ = false;
    head_bytes_ = lines_ = line_length_ = body_bytes_ = 0;
    const auto now = Clock::now();
    head_deadline_ = now + seconds(limits_.head_seconds);
    request_deadline_ = now + seconds(limits_.request_seconds);
  }

  bool dead() const { return dead_; }
  bool closing = false;  // close once the response is written

  bool is_readable() const override {
    return !dead_ && (pos_ < end_ || wait_fd(sock_, POLLIN, limits_.io_seconds) > 0);
  }

  bool is_writable() const override {
    if (dead_ || wait_fd(sock_, POLLOUT, limits_.io_seconds) <= 0) return false;
    // A peer that has closed its end: readable with nothing to read.
    if (wait_fd(sock_, POLLIN, 0) <= 0) return true;
    char c;
    return ::recv(sock_, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
  }

  ssize_t read(char* ptr, size_t size) override {
    if (dead_) return -1;
    if (pos_ == end_ && !fill()) return -1;
    const size_t n = std::min(size, end_ - pos_);
    if (!account(buffer_ + pos_, n)) return -1;
    std::memcpy(ptr, buffer_ + pos_, n);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (dead_) return -1;
    if (wait_fd(sock_, POLLOUT, limits_.io_seconds) <= 0) {
      dead_ = true;  // a client that does not read is let go
      return -1;
    }
    for (;;) {
      const ssize_t n = ::send(sock_, ptr, size, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) dead_ = true;
      return n;
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    port = 0;
    if (::getpeername(sock_, reinterpret_cast<sockaddr*>(&a), &len) == 0) ip = address_of(a, &port);
  }

  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    port = 0;
    if (::getsockname(sock_, reinterpret_cast<sockaddr*>(&a), &len) == 0) ip = address_of(a, &port);
  }

  socket_t socket() const override { return sock_; }

 private:
  static Clock::duration seconds(double s) {
    return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  }

  // Reads what has arrived into the buffer, waiting within the request's deadline.
  bool fill() {
    const auto deadline = head_done_ ? request_deadline_ : head_deadline_;
    for (;;) {
      const double left = std::chrono::duration<double>(deadline - Clock::now()).count();
      if (left <= 0) {
        refuse(408, "Request Timeout",
               head_done_ ? "the request's body did not arrive in time (" +
                                std::to_string(static_cast<int64_t>(limits_.request_seconds)) +
                                " s for a whole request)"
                          : "the request's headers did not arrive in time (" +
                                std::to_string(static_cast<int64_t>(limits_.head_seconds)) + " s)");
        return false;
      }
      const int r = wait_fd(sock_, POLLIN, std::min(left, limits_.io_seconds));
      if (r < 0) return false;
      if (r > 0) break;
      if (left > limits_.io_seconds) {  // silent for io_seconds in the middle of a request
        refuse(408, "Request Timeout",
               "the client sent nothing for " + std::to_string(int64_t(limits_.io_seconds)) + " s");
        return false;
      }
    }
    for (;;) {
      const ssize_t n = ::recv(sock_, buffer_, sizeof buffer_, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      pos_ = 0, end_ = static_cast<size_t>(n);
      return true;
    }
  }

  // Counts n bytes handed to httplib against the request's limits.
  bool account(const char* p, size_t n) {
    if (head_done_) {
      body_bytes_ += static_cast<int64_t>(n);
    } else {
      for (size_t i = 0; i < n && !head_done_; ++i) {
        ++head_bytes_;
        if (p[i] == '\n') {
          // An empty line after the request line ends the head.
          head_done_ = line_length_ == 0 && lines_ > 0;
          ++lines_, line_length_ = 0;
          if (head_done_) body_bytes_ += static_cast<int64_t>(n - i - 1);
        } else if (p[i] != '\r') {
          ++line_length_;
        }
      }
      if (head_bytes_ > limits_.max_head_bytes || lines_ > limits_.max_header_lines + 1) {
        refuse(431, "Request Header Fields Too Large",
               "the request's headers exceed " + std::to_string(limits_.max_head_bytes) +
                   " bytes or " + std::to_string(limits_.max_header_lines) + " lines");
        return false;
      }
    }
    if (body_bytes_ > 2 * limits_.max_body_bytes + kBodyFramingSlack) {
      refuse(413, "Payload Too Large",
             "the request body is larger than this server accepts (" +
                 std::to_string(limits_.max_body_bytes) + " bytes)");
      return false;
    }
    return true;
  }

  // Answers status with message and closes: httplib's own answer to the failed read that
  // follows is dropped.
  void refuse(int status, const char* reason, const std::string& message) {
    const std::string body = error_body_(status, message);
    const std::string head =
        "HTTP/1.1 " + std::to_string(status) + " " + reason +
        "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
        "\r\nConnection: close\r\n\r\n";
    const std::string all = head + body;
    for (size_t done = 0; done < all.size();) {
      const ssize_t n = write(all.data() + done, all.size() - done);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    dead_ = true;
  }

  socket_t sock_;
  const HttpLimits& limits_;
  const ErrorBody& error_body_;
  char buffer_[4096];
  size_t pos_ = 0, end_ = 0;
  bool dead_ = false;
  bool head_done_ = false;
  int64_t head_bytes_ = 0, lines_ = 0, line_length_ = 0, body_bytes_ = 0;
  Clock::time_point head_deadline_{}, request_deadline_{};
};

// The connection the calling thread serves (handlers run on their connection's thread).
thread_local Connection* t_connection = nullptr;

// Threads for connections: one per connection being served, started when none is idle, up to
// a bound (past it connections wait their turn); idle ones beyond a few leave after a while,
// so a burst of connections does not keep its threads.
class ConnectionThreads final : public httplib::TaskQueue {
 public:
  explicit ConnectionThreads(int64_t max_threads) : max_(std::max<int64_t>(1, max_threads)) {}

  void enqueue(std::function<void()> fn) override {
    std::lock_guard<std::mutex> lock(mu_);
    reap();
    jobs_.push_back(std::move(fn));
    if (static_cast<int64_t>(jobs_.size()) > idle_ &&
        static_cast<int64_t>(threads_.size()) < max_) {
      std::thread t([this] { work(); });
      const auto id = t.get_id();
      threads_.emplace(id, std::move(t));
    } else {
      cv_.notify_one();
    }
  }

  void shutdown() override {
    std::map<std::thread::id, std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      threads.swap(threads_);
      exited_.clear();
    }
    cv_.notify_all();
    for (auto& [id, t] : threads) t.join();
  }

 private:
  static constexpr int64_t kKeep = 8;  // idle threads that stay
  static constexpr auto kIdle = std::chrono::seconds(30);

  void work() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      ++idle_;
      const bool woken = cv_.wait_for(lock, kIdle, [&] { return stop_ || !jobs_.empty(); });
      --idle_;
      if (!jobs_.empty()) {
        auto fn = std::move(jobs_.front());
        jobs_.pop_front();
        lock.unlock();
        fn();
        lock.lock();
        continue;
      }
      if (stop_) return;
      if (!woken && static_cast<int64_t>(threads_.size() - exited_.size()) > kKeep) break;
    }
    exited_.push_back(std::this_thread::get_id());  // joined by the next enqueue
  }

  // Joins the threads that have left (under mu_).
  void reap() {
    for (const auto id : exited_) {
      const auto it = threads_.find(id);
      if (it == threads_.end()) continue;
      it->second.join();
      threads_.erase(it);
    }
    exited_.clear();
  }

  const int64_t max_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::map<std::thread::id, std::thread> threads_;
  std::vector<std::thread::id> exited_;
  int64_t idle_ = 0;
  bool stop_ = false;
};

}  // namespace

GuardedServer::GuardedServer(HttpLimits limits, ErrorBody error_body)
    : limits_(limits), error_body_(std::move(error_body)) {
  const int64_t max_connections = limits_.max_connections;
  new_task_queue = [max_connections] { return new ConnectionThreads(max_connections); };
  set_payload_max_length(static_cast<size_t>(limits_.max_body_bytes));
}

int GuardedServer::bind_listener(const std::string& host, int port) {
  // SO_REUSEADDR alone (httplib's default adds SO_REUSEPORT, with which a second server on
  // the same port starts and takes half the connections).
  set_socket_options([this](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
    listening_ = sock;
  });
  const int bound = port == 0 ? bind_to_any_port(host) : (bind_to_port(host, port) ? port : -1);
  if (bound <= 0) {
    // httplib does not say why: the cause is found again by binding a socket here.
    std::string why = "not an address of this machine, or the port is in use";
    addrinfo hints{}, *found = nullptr;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    const int gai = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &found);
    if (gai != 0) {
      why = std::string("the address cannot be resolved: ") + ::gai_strerror(gai);
    } else if (found) {
      const int s = ::socket(found->ai_family, found->ai_socktype, found->ai_protocol);
      int yes = 1;
      if (s >= 0) ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
      if (s >= 0 && ::bind(s, found->ai_addr, found->ai_addrlen) != 0)
        why = errno == EADDRINUSE      ? "the port is in use (another server?)"
              : errno == EADDRNOTAVAIL ? "not an address of this machine"
                                       : std::strerror(errno);
      if (s >= 0) ::close(s);
      ::freeaddrinfo(found);
    }
    throw Error("serve: cannot listen on " + host + ":" + std::to_string(port) + ": " + why);
  }
  // httplib listens with a backlog of 5: clients connecting in bursts would be reset. A second
  // listen() on Linux deepens it.
  if (listening_ >= 0) ::listen(listening_, 4096);
  return bound;
}

bool GuardedServer::process_and_close_socket(socket_t sock) {
  {
    Connection conn(sock, limits_, error_body_);
    t_connection = &conn;
    for (int64_t i = 0; i < limits_.keep_alive_requests && !stopping_; ++i) {
      if (!conn.wait_for_request(i == 0 ? limits_.head_seconds : limits_.keep_alive_seconds)) break;
      conn.start_request();
      bool closed = false;
      const bool last = i + 1 == limits_.keep_alive_requests;
      const bool ok = process_request(conn, /*close_connection=*/last, closed, nullptr);
      if (!ok || closed || conn.dead() || conn.closing) break;
    }
    t_connection = nullptr;
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return true;
}

void close_connection_after_response() {
  if (t_connection) t_connection->closing = true;
}

std::string http_library_version() {
  return std::string("cpp-httplib ") + CPPHTTPLIB_VERSION;
}

void raise_open_file_limit() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur < r.rlim_max) {
    r.rlim_cur = r.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &r);
  }
}

}  // namespace logattn::serve
