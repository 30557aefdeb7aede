#include "train/data.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/safetensors.h"
#include "logattn/error.h"

namespace logattn::train {

namespace fs = std::filesystem;

TokenFile::TokenFile(const std::string& path) {
  try {
    map_ = io::MappedFile(path);
  } catch (const Error& e) {
    throw Error(std::string("token file: ") + e.what());
  }
  if (map_.size() % 2 != 0)
    throw Error("token file " + path + " has an odd number of bytes (" +
                std::to_string(map_.size()) + "): not uint16 tokens");
  if (map_.size() == 0) throw Error("token file " + path + " is empty");
  data_ = reinterpret_cast<const uint16_t*>(map_.bytes().data());
  n_ = static_cast<int64_t>(map_.size() / 2);
}

std::vector<std::string> text_files(const std::string& path, int64_t* skipped) {
  std::error_code ec;
  const auto st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw Error("data: " + path + " does not exist");
  std::vector<std::string> files;
  int64_t skip = 0;
  if (fs::is_regular_file(st)) {
    files.push_back(path);
  } else if (fs::is_directory(st)) {
    for (const auto& e : fs::recursive_directory_iterator(path, ec)) {
      if (e.is_symlink() || !e.is_regular_file()) continue;
      std::ifstream in(e.path(), std::ios::binary);
      char head[8192];
      in.read(head, sizeof head);
      if (std::memchr(head, 0, static_cast<size_t>(in.gcount()))) {
        ++skip;
        continue;
      }
      files.push_back(e.path().string());
    }
    std::sort(files.begin(), files.end());
  } else {
    throw Error("data: " + path + " is neither a file nor a folder");
  }
  if (skipped) *skipped = skip;
  if (files.empty()) throw Error("data: " + path + " holds no text files");
  return files;
}

void write_tokens(const std::string& path, const std::vector<uint16_t>& tokens) {
  io::write_file_atomic(path, std::string(reinterpret_cast<const char*>(tokens.data()),
                                          tokens.size() * sizeof(uint16_t)));
}

BatchSampler::BatchSampler(const TokenFile& tokens, int64_t context, uint64_t seed)
    : BatchSampler(tokens.data(), tokens.size(), tokens.path(), context, seed) {}

BatchSampler::BatchSampler(const uint16_t* tokens, int64_t n, const std::string& name,
                           int64_t context, uint64_t seed)
    : tokens_(tokens), n_(n), context_(context), rng_(seed) {
  if (n < context + 1)
    throw Error("data: " + name + " holds " + std::to_string(n) +
                " tokens, fewer than the context (" + std::to_string(context) + ") + 1");
}

void BatchSampler::next(int64_t batch, int32_t* x, int32_t* y) {
  const uint64_t span = static_cast<uint64_t>(n_ - context_);  // offsets [0, span)
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t o = static_cast<int64_t>(rng_() % span);
    for (int64_t t = 0; t < context_; ++t) {
      x[b * context_ + t] = tokens_[o + t];
      y[b * context_ + t] = tokens_[o + t + 1];
    }
  }
}

std::string BatchSampler::rng_state() const {
  std::ostringstream s;
  s << rng_;
  return s.str();
}

void BatchSampler::set_rng_state(const std::string& s) {
  std::istringstream in(s);
  in >> rng_;
  if (!in) throw Error("resume: bad random-generator state");
}

}  // namespace logattn::train
