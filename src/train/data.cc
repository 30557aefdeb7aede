#include "train/data.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

TokenFile::TokenFile(const std::string& path) : path_(path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw Error("cannot open token file " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error("token file " + path + " is not a regular file");
  }
  bytes_ = static_cast<size_t>(st.st_size);
  if (bytes_ % 2 != 0) {
    ::close(fd);
    throw Error("token file " + path + " has an odd number of bytes (" + std::to_string(bytes_) +
                "): not uint16 tokens");
  }
  if (bytes_ == 0) {
    ::close(fd);
    throw Error("token file " + path + " is empty");
  }
  void* p = ::mmap(nullptr, bytes_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (p == MAP_FAILED) throw Error("cannot map token file " + path + ": " + std::strerror(errno));
  data_ = static_cast<const uint16_t*>(p);
  n_ = static_cast<int64_t>(bytes_ / 2);
}

TokenFile::TokenFile(TokenFile&& o) noexcept {
  *this = std::move(o);
}

TokenFile& TokenFile::operator=(TokenFile&& o) noexcept {
  if (this != &o) {
    if (data_) ::munmap(const_cast<uint16_t*>(data_), bytes_);
    path_ = std::move(o.path_);
    data_ = o.data_, n_ = o.n_, bytes_ = o.bytes_;
    o.data_ = nullptr, o.n_ = 0, o.bytes_ = 0;
  }
  return *this;
}

TokenFile::~TokenFile() {
  if (data_) ::munmap(const_cast<uint16_t*>(data_), bytes_);
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

SplitPaths prepare_bytes(const std::string& path, const std::string& cache_dir) {
  const auto files = text_files(path);
  nlohmann::json source = {{"tokenizer", "bytes"}, {"format", "uint16"}, {"split", 0.9}};
  for (const auto& f : files) {
    const auto size = fs::file_size(f);
    const auto mtime = fs::last_write_time(f).time_since_epoch().count();
    source["files"].push_back({f, size, static_cast<int64_t>(mtime)});
  }
  fs::create_directories(cache_dir);
  SplitPaths out{cache_dir + "/train.bin", cache_dir + "/val.bin", false};
  const std::string src_path = cache_dir + "/source.json";
  {
    std::ifstream in(src_path);
    if (in && fs::exists(out.train) && fs::exists(out.val)) {
      try {
        if (nlohmann::json::parse(in) == source) {
          out.reused = true;
          return out;
        }
      } catch (const nlohmann::json::exception&) {
        // A damaged record: rebuild the cache.
      }
    }
  }
  std::vector<uint16_t> tokens;
  for (const auto& f : files) {
    std::ifstream in(f, std::ios::binary);
    if (!in) throw Error("data: cannot read " + f);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (unsigned char c : bytes) tokens.push_back(c);
  }
  if (tokens.size() < 20)
    throw Error("data: " + path + " holds " + std::to_string(tokens.size()) +
                " bytes; too little to split into training and validation data");
  const size_t cut = tokens.size() * 9 / 10;
  write_tokens(out.train, std::vector<uint16_t>(tokens.begin(), tokens.begin() + cut));
  write_tokens(out.val, std::vector<uint16_t>(tokens.begin() + cut, tokens.end()));
  io::write_file_atomic(src_path, source.dump(1));
  return out;
}

BatchSampler::BatchSampler(const TokenFile& tokens, int64_t context, uint64_t seed)
    : tokens_(tokens), context_(context), rng_(seed) {
  if (tokens.size() < context + 1)
    throw Error("data: " + tokens.path() + " holds " + std::to_string(tokens.size()) +
                " tokens, fewer than the context (" + std::to_string(context) + ") + 1");
}

void BatchSampler::next(int64_t batch, int32_t* x, int32_t* y) {
  const uint64_t span = static_cast<uint64_t>(tokens_.size() - context_);  // offsets [0, span)
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
