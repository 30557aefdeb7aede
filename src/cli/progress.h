// A progress bar on a terminal (stderr), plain lines otherwise (logs, pipes, CI).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace logattn::cli {

class Progress {
 public:
  Progress(std::string label, int64_t total);
  // Moves to `done` of total; `status` is shown after the bar (e.g. "1.2 us/token").
  void update(int64_t done, const std::string& status = "");
  // Ends the bar's line.
  void finish(const std::string& status = "");
  bool on_terminal() const { return tty_; }

 private:
  std::string label_;
  int64_t total_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  int last_percent_ = -1;
};

}  // namespace logattn::cli
