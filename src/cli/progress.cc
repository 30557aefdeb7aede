#include "cli/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>

namespace logattn::cli {

Progress::Progress(std::string label, int64_t total)
    : label_(std::move(label)), total_(total > 0 ? total : 1), tty_(isatty(STDERR_FILENO)) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

void Progress::update(int64_t done, const std::string& status) {
  const auto now = std::chrono::steady_clock::now();
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double frac = static_cast<double>(done) / total_;
  const int percent = static_cast<int>(frac * 100);
  if (!tty_) {
    // Plain lines: one per 10%.
    if (percent / 10 != last_percent_ / 10) {
      std::fprintf(stderr, "%s: %d%% (%lld/%lld) %s\n", label_.c_str(), percent,
                   static_cast<long long>(done), static_cast<long long>(total_), status.c_str());
      last_percent_ = percent;
    }
    return;
  }
  if (now - last_draw_ < std::chrono::milliseconds(100) && done < total_) return;
  last_draw_ = now;
  constexpr int kWidth = 30;
  const int filled = static_cast<int>(frac * kWidth);
  std::string bar(filled, '#');
  bar.resize(kWidth, '.');
  const double left = frac > 0 ? elapsed * (1 - frac) / frac : 0;
  std::fprintf(stderr, "\r\033[K%s [%s] %3d%% %s  %.0fs left", label_.c_str(), bar.c_str(), percent,
               status.c_str(), left);
  std::fflush(stderr);
}

void Progress::finish(const std::string& status) {
  if (tty_) {
    update(total_, status);
    std::fprintf(stderr, "\n");
  }
}

}  // namespace logattn::cli
