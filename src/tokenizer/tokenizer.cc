#include "tokenizer/tokenizer.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "logattn/error.h"
#include "tokenizer/gpt2_bpe.h"

namespace logattn::tokenizer {

namespace fs = std::filesystem;

namespace {

class ByteEncoder final : public Encoder {
 public:
  void encode(std::string_view text, size_t begin, size_t end,
              std::vector<uint16_t>& out) override {
    for (size_t i = begin; i < end; ++i) out.push_back(static_cast<unsigned char>(text[i]));
  }
};

class ByteTokenizer final : public Tokenizer {
 public:
  ByteTokenizer() {
    for (int b = 0; b < 256; ++b) bytes_[b] = std::string(1, static_cast<char>(b));
  }
  std::string name() const override { return "bytes"; }
  int32_t vocab_size() const override { return 256; }
  int32_t end_of_text() const override { return -1; }
  std::string_view token_bytes(int32_t id) const override { return bytes_[id]; }
  size_t safe_cut(std::string_view text, size_t from) const override {
    return std::min(from, text.size());
  }
  std::unique_ptr<Encoder> encoder() const override { return std::make_unique<ByteEncoder>(); }

 private:
  std::string bytes_[256];
};

class Gpt2EncoderAdapter final : public Encoder {
 public:
  explicit Gpt2EncoderAdapter(const Gpt2Bpe& bpe) : enc_(bpe) {}
  void encode(std::string_view text, size_t begin, size_t end,
              std::vector<uint16_t>& out) override {
    enc_.encode(text, begin, end, out);
  }

 private:
  Gpt2Encoder enc_;
};

class Gpt2Tokenizer final : public Tokenizer {
 public:
  explicit Gpt2Tokenizer(const std::string& dir) : bpe_(dir) {}
  std::string name() const override { return "gpt2"; }
  int32_t vocab_size() const override { return bpe_.vocab_size(); }
  int32_t end_of_text() const override { return kGpt2EndOfText; }
  std::string_view token_bytes(int32_t id) const override { return bpe_.token_bytes(id); }
  size_t safe_cut(std::string_view text, size_t from) const override {
    return tokenizer::safe_cut(text, from);
  }
  std::unique_ptr<Encoder> encoder() const override {
    return std::make_unique<Gpt2EncoderAdapter>(bpe_);
  }

 private:
  Gpt2Bpe bpe_;
};

bool has_gpt2_files(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / "encoder.json", ec) &&
         fs::is_regular_file(dir / "vocab.bpe", ec);
}

}  // namespace

std::vector<int32_t> Tokenizer::encode(std::string_view text) const {
  std::vector<uint16_t> ids;
  encoder()->encode(text, 0, text.size(), ids);
  return {ids.begin(), ids.end()};
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  std::string s;
  for (const int32_t id : ids) {
    if (id < 0 || id >= vocab_size())
      throw Error("decode: token id " + std::to_string(id) + " is outside the " + name() +
                  " vocabulary of " + std::to_string(vocab_size()));
    s += token_bytes(id);
  }
  return s;
}

std::string find_gpt2_dir(const std::string& gpt2_dir) {
  if (!gpt2_dir.empty()) {
    if (!has_gpt2_files(gpt2_dir))
      throw Error("tokenizer: " + gpt2_dir + " does not hold encoder.json and vocab.bpe");
    return gpt2_dir;
  }
  if (const char* env = std::getenv("LOGATTN_GPT2_DIR"); env && *env) {
    if (!has_gpt2_files(env))
      throw Error(std::string("tokenizer: LOGATTN_GPT2_DIR=") + env +
                  " does not hold encoder.json and vocab.bpe");
    return env;
  }
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec && has_gpt2_files(exe.parent_path() / "gpt2"))
    return (exe.parent_path() / "gpt2").string();
  throw Error(
      "tokenizer: GPT-2's encoder.json and vocab.bpe were not found (scripts/setup.sh fetches "
      "them beside the logattn executable); give their folder with --gpt2-dir or "
      "LOGATTN_GPT2_DIR");
}

int32_t vocab_size_of(const std::string& name) {
  if (name == "bytes") return 256;
  if (name == "gpt2") return kGpt2Vocab;
  throw Error("unknown tokenizer '" + name + "' (known: bytes, gpt2)");
}

std::string default_tokenizer(int64_t model_vocab) {
  return model_vocab >= kGpt2Vocab ? "gpt2" : "bytes";
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& name, const std::string& gpt2_dir) {
  vocab_size_of(name);  // refuses an unknown name
  if (name == "bytes") return std::make_unique<ByteTokenizer>();
  return std::make_unique<Gpt2Tokenizer>(find_gpt2_dir(gpt2_dir));
}

}  // namespace logattn::tokenizer
