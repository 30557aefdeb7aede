// Tokenizers: "bytes" (each byte is a token; 256 ids) and "gpt2" (GPT-2's BPE; 50,257 ids).
// A checkpoint records its tokenizer's name; data caches, training and generation use it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace logattn::tokenizer {

// Encodes text; one per thread.
class Encoder {
 public:
  virtual ~Encoder() = default;
  // Appends the ids of text[begin, end); text may continue past end, and the pieces near
  // end are those of text as a whole (see Tokenizer::safe_cut).
  virtual void encode(std::string_view text, size_t begin, size_t end,
                      std::vector<uint16_t>& out) = 0;
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string name() const = 0;
  virtual int32_t vocab_size() const = 0;
  // The id that ends a document (GPT-2's <|endoftext|>), or -1.
  virtual int32_t end_of_text() const = 0;
  virtual std::string_view token_bytes(int32_t id) const = 0;
  // A position p >= from (or text.size()) at which text may be cut and the two sides
  // encoded separately, giving the ids of the whole.
  virtual size_t safe_cut(std::string_view text, size_t from) const = 0;
  virtual std::unique_ptr<Encoder> encoder() const = 0;

  // Conveniences (single-threaded).
  std::vector<int32_t> encode(std::string_view text) const;
  // Throws logattn::Error for an id outside the vocabulary.
  std::string decode(const std::vector<int32_t>& ids) const;
};

// "bytes" or "gpt2". GPT-2's files (encoder.json, vocab.bpe) are looked for in gpt2_dir if
// given, else $LOGATTN_GPT2_DIR, else the folder "gpt2" beside the logattn executable (where
// scripts/setup.sh puts them). Throws logattn::Error naming what is missing.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& name,
                                          const std::string& gpt2_dir = "");

// A tokenizer's vocabulary size by name, without loading it; throws for an unknown name.
int32_t vocab_size_of(const std::string& name);

// The tokenizer of a model that names none: gpt2 if its vocabulary holds GPT-2's ids (the
// reference's models), else bytes.
std::string default_tokenizer(int64_t model_vocab);

// The folder load_tokenizer would read GPT-2's files from.
std::string find_gpt2_dir(const std::string& gpt2_dir = "");

}  // namespace logattn::tokenizer
