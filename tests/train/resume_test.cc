// The run folder's log: lines appended whole, a failed write undone.
#include "train/resume.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "logattn/error.h"

namespace logattn::train {
namespace {

namespace fs = std::filesystem;

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(LogAppender, AFailedWriteLeavesTheFileEndingInAWholeLine) {
  const auto dir = fs::temp_directory_path() / "logattn_log_appender";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string path = (dir / "log.jsonl").string();
  // A disk that fills up: files may not grow past 100 bytes (EFBIG, not a signal).
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  const auto old_handler = signal(SIGXFSZ, SIG_IGN);
  rlimit small = old;
  small.rlim_cur = 100;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string written;
  bool failed = false;
  {
    LogAppender log(path);
    const std::string line = "{\"step\": 1, \"loss\": 5.25, \"lr\": 0.001}\n";
    ASSERT_EQ(line.size(), 39u);
    for (int i = 0; i < 5 && !failed; ++i) {
      try {
        log.append(line);
        written += line;
      } catch (const Error& e) {
        failed = true;
        EXPECT_NE(std::string(e.what()).find("cannot write " + path), std::string::npos)
            << e.what();
      }
    }
  }
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, old_handler);
  EXPECT_TRUE(failed);
  EXPECT_EQ(written.size(), 78u);  // two lines fit, the third was cut at 100 and undone
  EXPECT_EQ(read_all(path), written);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace logattn::train
