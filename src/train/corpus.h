// Tokenising a corpus: text is cut into blocks at the tokenizer's safe points and the blocks
// are encoded in parallel; the ids are those of one encoder over the whole text, for any
// thread count or block size.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/tokenizer.h"

namespace logattn::train {

// A piece of text to encode: text[begin, end), with the text seen up to `limit` for the
// tokenizer's one-character lookahead.
struct TextBlock {
  size_t begin, end, limit;
};

// Cuts [begin, limit) of text into blocks of about `bytes` at the tokenizer's safe points,
// appending them to out.
void cut_blocks(const tokenizer::Tokenizer& tok, std::string_view text, size_t begin, size_t limit,
                size_t bytes, std::vector<TextBlock>& out);

// One encoder per thread.
class ParallelEncoder {
 public:
  ParallelEncoder(const tokenizer::Tokenizer& tok, int threads);  // threads 0: OpenMP's default
  int threads() const { return static_cast<int>(encoders_.size()); }
  // ids[i] = the ids of blocks[i] (of text).
  void encode(std::string_view text, const TextBlock* blocks, size_t n,
              std::vector<std::vector<uint16_t>>& ids);
  // All of text, in blocks of about block_bytes.
  std::vector<uint16_t> encode_all(std::string_view text, size_t block_bytes);

 private:
  const tokenizer::Tokenizer& tok_;
  std::vector<std::unique_ptr<tokenizer::Encoder>> encoders_;
};

// Tokenises path into cache_dir/train.bin and val.bin (the first 90% of the text's bytes and
// the rest; the cut moves to the next line start within 64 KiB so that no piece straddles
// it), unless a cache made from the same files (names, sizes, modification times) and
// tokenizer, recorded in cache_dir/source.json, is there already. Files are memory-mapped
// and cut into blocks at safe points (Tokenizer::safe_cut), which threads encode in
// parallel; the ids are the same for any thread count or block size. With a tokenizer that
// has an end-of-text id, it follows each file (document). Throws on empty data.
// The text files of path (see text_files) as one sequence of ids, each file a document
// followed by the end-of-text id when the tokenizer has one (as prepare_tokens writes them),
// encoded in parallel. For evaluating a checkpoint on other text.
std::vector<uint16_t> encode_documents(const std::string& path, const tokenizer::Tokenizer& tok,
                                       int threads = 0);

struct SplitPaths {
  std::string train, val;
  bool reused = false;
  int64_t train_tokens = 0, val_tokens = 0, bytes = 0;
};
struct TokenizeOptions {
  int threads = 0;               // 0: OpenMP's default
  size_t block_bytes = 1 << 20;  // text per parallel work item
  // Called from the calling thread after each group of blocks: (bytes done, bytes total).
  std::function<void(int64_t, int64_t)> progress;
};
SplitPaths prepare_tokens(const std::string& path, const std::string& cache_dir,
                          const tokenizer::Tokenizer& tok, const TokenizeOptions& opt = {});

}  // namespace logattn::train
