// GPT-2's byte-level BPE (50,257 ids; the same ids as tiktoken's 'gpt2'), read from OpenAI's
// encoder.json and vocab.bpe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/pretokenizer.h"

namespace logattn::tokenizer {

// Hash maps keyed by std::string that are searched with a std::string_view (no copy).
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
template <typename V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

inline constexpr int32_t kGpt2Vocab = 50257;
inline constexpr int32_t kGpt2EndOfText = 50256;

class Gpt2Bpe {
 public:
  // Reads dir/encoder.json and dir/vocab.bpe; throws logattn::Error naming what is wrong.
  explicit Gpt2Bpe(const std::string& dir);

  int32_t vocab_size() const { return static_cast<int32_t>(bytes_.size()); }
  const std::string& token_bytes(int32_t id) const { return bytes_[id]; }
  const Gpt2Pattern& pattern() const { return pattern_; }

  // The id of a byte string that is one token, or -1.
  int32_t find(std::string_view bytes) const;
  // The id of the token whose bytes are those of a followed by b, or -1: tiktoken's rank of
  // the pair (its ranks are the ids).
  int32_t merged(int32_t a, int32_t b) const {
    const auto it = pairs_.find(pair_key(a, b));
    return it == pairs_.end() ? -1 : it->second;
  }

  // Byte-pair encodes one piece, appending its ids: repeatedly merges the adjacent pair of
  // lowest rank (the leftmost of equals), as tiktoken does; O(n log n) in the piece's bytes.
  void encode_piece(std::string_view piece, std::vector<uint16_t>& out) const;

 private:
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  std::vector<std::string> bytes_;               // id -> bytes
  StringMap<int32_t> ids_;                       // bytes -> id
  std::unordered_map<uint64_t, int32_t> pairs_;  // (a, b) -> id of a + b
  int32_t byte_id_[256];
  Gpt2Pattern pattern_;
};

// Encodes text with one Gpt2Bpe; one encoder per thread (it owns the regex match data and a
// bounded cache of pieces already seen).
class Gpt2Encoder {
 public:
  explicit Gpt2Encoder(const Gpt2Bpe& bpe) : bpe_(bpe), splitter_(bpe.pattern()) {}
  // Appends the ids of text[begin, end) (text may continue past end; see PieceSplitter).
  void encode(std::string_view text, size_t begin, size_t end, std::vector<uint16_t>& out);
  void encode(std::string_view text, std::vector<uint16_t>& out) {
    encode(text, 0, text.size(), out);
  }

 private:
  const Gpt2Bpe& bpe_;
  PieceSplitter splitter_;
  StringMap<std::vector<uint16_t>> cache_;
};

}  // namespace logattn::tokenizer
