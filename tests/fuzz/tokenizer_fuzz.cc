// The tokenizers on any bytes and any ids: GPT-2's BPE (files from LOGATTN_GPT2_DIR, or
// beside the executable as for logattn) and bytes. Properties, not just absence of crashes:
// decode(encode(text)) == text (both are byte-level), and text cut at safe_cut encodes as
// the whole does (what the parallel tokenisation relies on). Ids outside the vocabulary
// are a clear error.
#include <cstdio>
#include <memory>
#include <vector>

#include "fuzz_util.h"
#include "tokenizer/tokenizer.h"

using namespace logattn;

namespace {

void check(const tokenizer::Tokenizer& tok, std::string_view text) {
  const auto ids = tok.encode(text);
  if (tok.decode(ids) != text) {
    std::fprintf(stderr, "%s: decode(encode(text)) differs from text\n", tok.name().c_str());
    std::abort();
  }
  const size_t cut = tok.safe_cut(text, text.size() / 2);
  if (cut > text.size()) std::abort();
  auto left = tok.encode(text.substr(0, cut));
  const auto right = tok.encode(text.substr(cut));
  left.insert(left.end(), right.begin(), right.end());
  if (left != ids) {
    std::fprintf(stderr, "%s: text cut at safe_cut %zu encodes differently\n", tok.name().c_str(),
                 cut);
    std::abort();
  }
}

std::unique_ptr<tokenizer::Tokenizer> gpt2, bytes;

}  // namespace

// Loading GPT-2's files takes longer than the 1 s an input may: done once, before inputs.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  gpt2 = tokenizer::load_tokenizer("gpt2");
  bytes = tokenizer::load_tokenizer("bytes");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check(*gpt2, text);
  check(*bytes, text);
  std::vector<int32_t> ids;
  for (size_t i = 0; i + 1 < size; i += 2) ids.push_back(data[i] | (data[i + 1] << 8));
  fuzz::read_or_refuse([&] { gpt2->decode(ids); });
  fuzz::read_or_refuse([&] { bytes->decode(ids); });
  return 0;
}
