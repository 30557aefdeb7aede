// Training data: text (a file, or a folder of files) tokenised (bytes or GPT-2) into nanoGPT's
// .bin format (raw little-endian uint16 token ids), cached once, memory-mapped; or .bin
// files given directly.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "io/files.h"

namespace logattn::train {

// A read-only memory-mapped .bin token file.
class TokenFile {
 public:
  TokenFile() = default;
  explicit TokenFile(const std::string& path);  // throws logattn::Error

  int64_t size() const { return n_; }
  uint16_t operator[](int64_t i) const { return data_[i]; }
  const uint16_t* data() const { return data_; }
  const std::string& path() const { return map_.path(); }

 private:
  io::MappedFile map_;
  const uint16_t* data_ = nullptr;
  int64_t n_ = 0;
};

// The text files a path stands for: the file itself, or every regular file under a folder
// (sorted, symbolic links skipped, files with NUL bytes in their first 8 KiB skipped as
// binary). Throws if there are none.
std::vector<std::string> text_files(const std::string& path, int64_t* skipped = nullptr);

// Writes tokens as a .bin file (through a temporary name).
void write_tokens(const std::string& path, const std::vector<uint16_t>& tokens);

// Draws training windows: x = tokens[o, o + T), y = tokens[o + 1, o + T + 1) at uniformly
// random offsets o, from a seeded generator whose state can be saved and restored.
class BatchSampler {
 public:
  BatchSampler(const TokenFile& tokens, int64_t context, uint64_t seed);
  // Over tokens[0, n) held by the caller for the sampler's life; name says what they are in
  // errors.
  BatchSampler(const uint16_t* tokens, int64_t n, const std::string& name, int64_t context,
               uint64_t seed);
  void next(int64_t batch, int32_t* x, int32_t* y);
  std::string rng_state() const;
  void set_rng_state(const std::string& s);

 private:
  const uint16_t* tokens_;
  int64_t n_, context_;
  std::mt19937_64 rng_;
};

}  // namespace logattn::train
