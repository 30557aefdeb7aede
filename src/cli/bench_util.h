// Helpers of the benchmark commands: run a measurement in a child process (so that its
// peak memory is its own), and time a call repeatedly.
#pragma once

#include <fmt/format.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ops/matmul.h"

namespace logattn::cli {

using Clock = std::chrono::steady_clock;

// Forks with a pipe: returns the child's pid (0 in the child) and sets fds. The child dies
// with its parent (a benchmark killed on a timeout leaves no measurement spinning).
inline pid_t fork_with_pipe(int fds[2]) {
  if (pipe(fds) != 0) throw std::runtime_error("bench: pipe failed");
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("bench: fork failed");
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);  // the parent died before prctl
  }
  return pid;
}

// In the parent: everything the child writes to the pipe, once it has exited; an error
// naming `what` if it failed or wrote nothing.
inline std::string read_child(int fds[2], pid_t pid, const std::string& what) {
  close(fds[1]);
  std::string out;
  char buf[4096];
  ssize_t r;
  while ((r = read(fds[0], buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(r));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || out.empty())
    throw std::runtime_error("bench: a measurement process (" + what + ") failed");
  return out;
}

// Runs fn in a child process; returns what it wrote to the pipe (one line of JSON).
template <typename Fn>
inline std::string in_child(Fn fn) {
  int fds[2];
  const pid_t pid = fork_with_pipe(fds);
  if (pid == 0) {
    close(fds[0]);
    std::string out;
    try {
      out = fn();
    } catch (const std::exception& e) {
      out = fmt::format("{{\"error\": \"{}\"}}", e.what());
    }
    const char* p = out.data();
    size_t left = out.size();
    while (left > 0) {
      const ssize_t w = write(fds[1], p, left);
      if (w <= 0) break;
      p += w, left -= static_cast<size_t>(w);
    }
    close(fds[1]);
    _exit(0);
  }
  const std::string out = read_child(fds, pid, "fork");
  // A measurement that threw reports {"error": "..."}: an error here too, not a row of zeros.
  const std::string err = "{\"error\": \"";
  if (out.compare(0, err.size(), err) == 0)
    throw std::runtime_error(out.substr(err.size(), out.size() - err.size() - 2));
  return out;
}

// Runs this executable again with args (argv[1..]) and environment variables set, for
// settings that a library reads only when it loads (OPENBLAS_CORETYPE); returns its stdout.
inline std::string run_self(const std::vector<std::string>& args,
                            const std::vector<std::pair<std::string, std::string>>& env) {
  int fds[2];
  const pid_t pid = fork_with_pipe(fds);
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], STDOUT_FILENO);
    close(fds[1]);
    for (const auto& [name, value] : env) setenv(name.c_str(), value.c_str(), 1);
    std::vector<char*> argv;
    std::string self = "logattn";
    argv.push_back(self.data());
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv("/proc/self/exe", argv.data());
    _exit(127);
  }
  return read_child(fds, pid, args.at(1));
}

// OpenBLAS kernel families that this CPU can run and that Debian's OpenBLAS 0.3.21 can be
// told to use: the settings a user could try by hand, measured beside the default.
inline std::vector<std::string> openblas_cores_for_this_cpu() {
  __builtin_cpu_init();
  std::vector<std::string> cores;
  if (__builtin_cpu_supports("avx512f")) cores.push_back("SkylakeX");
  if (__builtin_cpu_supports("avx512bf16")) cores.push_back("Cooperlake");
  if (__builtin_cpu_supports("avx2")) cores.push_back("Haswell");
  if (cores.empty()) cores.push_back("Sandybridge");
  return cores;
}

inline double median(std::vector<double> x) {
  std::sort(x.begin(), x.end());
  return x.empty() ? 0.0 : x[x.size() / 2];
}

// Seconds per call of fn, over at least min_time seconds after one warm-up call.
template <typename Fn>
inline double seconds_per_call(double min_time, Fn fn) {
  fn();
  int64_t calls = 0;
  const auto t0 = Clock::now();
  double elapsed = 0;
  do {
    fn();
    ++calls;
    elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  } while (elapsed < min_time);
  return elapsed / static_cast<double>(calls);
}

// The number after "key": in a flat JSON record the measurement processes write (0 if absent).
inline double json_number(const std::string& record, const char* key) {
  const std::string k = std::string("\"") + key + "\": ";
  const auto p = record.find(k);
  return p == std::string::npos ? 0.0 : std::stod(record.substr(p + k.size()));
}

// GFLOP/s of an n x n x n matrix product through backend (bench.cc), repeated for min_time.
double sgemm_gflops(ops::GemmBackend backend, int64_t n, double min_time);

// The same in a child process, through the default backend, 1024^3, for half a second: the
// matrix-product rate a benchmark's model FLOPs are compared with, measured in the same run.
inline double sgemm_gflops_in_child() {
  const std::string r = in_child([] {
    return fmt::format("{{\"gflops\": {:.3f}}}", sgemm_gflops(ops::gemm_backend(), 1024, 0.5));
  });
  return json_number(r, "gflops");
}

}  // namespace logattn::cli
