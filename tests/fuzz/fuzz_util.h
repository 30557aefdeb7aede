// Shared by the fuzz targets (libFuzzer): the fuzzer's bytes as a file, and the one kind of
// failure a reader may report.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

#include "logattn/error.h"

namespace logattn::fuzz {

// The bytes as a regular file in memory (memfd), named by /proc/self/fd/N: every reader runs
// on its real path (stat, open, mmap) without touching the disk.
class MemFile {
 public:
  MemFile(const uint8_t* data, size_t size) {
    fd_ = memfd_create("logattn-fuzz", 0);
    if (fd_ < 0) std::abort();
    for (size_t done = 0; done < size;) {
      const ssize_t n = write(fd_, data + done, size - done);
      if (n <= 0) std::abort();
      done += static_cast<size_t>(n);
    }
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  int fd_ = -1;
  std::string path_;
};

// Runs a reader: a clear logattn::Error is the only acceptable failure. Anything else
// escaping (another exception type) reaches std::terminate, which the fuzzer reports, as it
// does crashes, leaks, sanitizer reports and hangs.
// LOGATTN_FUZZ_VERBOSE=1 prints each refusal: to see how deep a seed gets.
template <typename F>
void read_or_refuse(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    static const bool verbose = std::getenv("LOGATTN_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::fprintf(stderr, "refused: %s\n", e.what());
  }
}

// The model of the seed files under tests/fuzz/corpus (tests/fuzz/make_seeds.sh).
inline constexpr const char* kMicroConfig =
    R"({"vocab": 256, "d_emb": 8, "n_layers": 1, "n_heads": 2, "d_key": 2, "d_val": 2, "context": 8})";

}  // namespace logattn::fuzz
