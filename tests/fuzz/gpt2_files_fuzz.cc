// GPT-2's encoder.json and vocab.bpe. The first byte chooses how the input becomes the two
// files: even, the input itself (4 bytes: the length of encoder.json, then both files);
// odd, an edit of the real files (LOGATTN_GPT2_DIR, or beside the executable): a few bytes
// replaced or inserted at an offset, so that the reader's checks past a valid header and
// a full vocabulary are reached too.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "fuzz_util.h"
#include "tokenizer/gpt2_bpe.h"
#include "tokenizer/tokenizer.h"

using namespace logattn;

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void put(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

uint32_t le32(const uint8_t* p) {
  return p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

std::string real[2];  // the real encoder.json and vocab.bpe
std::string dir;      // where each input's two files are written (tmpfs when there is one)

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  const std::string real_dir = tokenizer::find_gpt2_dir();
  real[0] = slurp(real_dir + "/encoder.json");
  real[1] = slurp(real_dir + "/vocab.bpe");
  if (real[0].empty() || real[1].empty()) {
    std::fprintf(stderr, "gpt2_files_fuzz: GPT-2's files are not in %s\n", real_dir.c_str());
    std::abort();
  }
  const auto d = std::filesystem::path(std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp") /
                 ("logattn-fuzz-gpt2-" + std::to_string(getpid()));
  std::filesystem::create_directories(d);
  dir = d.string();
  std::atexit([] { std::filesystem::remove_all(dir); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 6) return 0;
  std::string files[2];
  if (data[0] % 2 == 0) {
    const size_t n = std::min<size_t>(le32(data + 1), size - 5);
    files[0].assign(reinterpret_cast<const char*>(data + 5), n);
    files[1].assign(reinterpret_cast<const char*>(data + 5 + n), size - 5 - n);
  } else {
    const int which = (data[0] >> 1) & 1;
    files[0] = real[0], files[1] = real[1];
    std::string& f = files[which];
    const size_t at = le32(data + 1) % (f.size() + 1);
    const std::string bytes(reinterpret_cast<const char*>(data + 5), size - 5);
    if (data[0] & 4)
      f.insert(at, bytes);
    else
      f.replace(at, std::min(bytes.size(), f.size() - at), bytes);
  }
  put(dir + "/encoder.json", files[0]);
  put(dir + "/vocab.bpe", files[1]);
  fuzz::read_or_refuse([&] {
    const tokenizer::Gpt2Bpe bpe(dir);
    std::vector<uint16_t> out;
    bpe.encode_piece(files[0].substr(0, 64), out);
  });
  return 0;
}
