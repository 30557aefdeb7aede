#include "train/corpus.h"

#include <omp.h>

#include <algorithm>
#include <exception>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "io/files.h"
#include "logattn/error.h"
#include "train/data.h"

namespace logattn::train {

namespace fs = std::filesystem;

void cut_blocks(const tokenizer::Tokenizer& tok, std::string_view text, size_t begin, size_t limit,
                size_t bytes, std::vector<TextBlock>& out) {
  const std::string_view seen = text.substr(0, limit);
  bytes = std::max<size_t>(bytes, 1);
  while (begin < limit) {
    const size_t end = limit - begin <= bytes ? limit : tok.safe_cut(seen, begin + bytes);
    out.push_back({begin, end, limit});
    begin = end;
  }
}

ParallelEncoder::ParallelEncoder(const tokenizer::Tokenizer& tok, int threads) : tok_(tok) {
  encoders_.resize(std::max(1, threads > 0 ? threads : omp_get_max_threads()));
  for (auto& e : encoders_) e = tok.encoder();
}

void ParallelEncoder::encode(std::string_view text, const TextBlock* blocks, size_t n,
                             std::vector<std::vector<uint16_t>>& ids) {
  ids.assign(n, {});
  std::exception_ptr err;
#pragma omp parallel for num_threads(threads()) schedule(dynamic, 1)
  for (size_t i = 0; i < n; ++i) {
    const TextBlock& b = blocks[i];
    try {
      encoders_[omp_get_thread_num()]->encode(text.substr(0, b.limit), b.begin, b.end, ids[i]);
    } catch (...) {
#pragma omp critical
      err = std::current_exception();
    }
  }
  if (err) std::rethrow_exception(err);
}

std::vector<uint16_t> ParallelEncoder::encode_all(std::string_view text, size_t block_bytes) {
  std::vector<TextBlock> blocks;
  cut_blocks(tok_, text, 0, text.size(), block_bytes, blocks);
  std::vector<std::vector<uint16_t>> ids;
  encode(text, blocks.data(), blocks.size(), ids);
  std::vector<uint16_t> out;
  for (const auto& v : ids) out.insert(out.end(), v.begin(), v.end());
  return out;
}

std::vector<uint16_t> encode_documents(const std::string& path, const tokenizer::Tokenizer& tok,
                                       int threads) {
  ParallelEncoder encoder(tok, threads);
  std::vector<uint16_t> ids;
  for (const auto& f : text_files(path)) {
    const io::MappedFile text(f);
    const auto doc = encoder.encode_all(text.bytes(), TokenizeOptions{}.block_bytes);
    ids.insert(ids.end(), doc.begin(), doc.end());
    if (text.size() > 0 && tok.end_of_text() >= 0)
      ids.push_back(static_cast<uint16_t>(tok.end_of_text()));
  }
  return ids;
}

SplitPaths prepare_tokens(const std::string& path, const std::string& cache_dir,
                          const tokenizer::Tokenizer& tok, const TokenizeOptions& opt) {
  const auto files = text_files(path);
  nlohmann::json source = {{"tokenizer", tok.name()}, {"format", "uint16"}, {"split", 0.9}};
  int64_t total = 0;
  for (const auto& f : files) {
    const auto size = fs::file_size(f);
    const auto mtime = fs::last_write_time(f).time_since_epoch().count();
    source["files"].push_back({f, size, static_cast<int64_t>(mtime)});
    total += static_cast<int64_t>(size);
  }
  fs::create_directories(cache_dir);
  io::remove_stale_temporaries(cache_dir);  // of a tokenisation that was killed
  SplitPaths out{cache_dir + "/train.bin", cache_dir + "/val.bin"};
  out.bytes = total;
  const std::string src_path = cache_dir + "/source.json";
  {
    io::require_regular_file(src_path, "data");
    std::ifstream in(src_path);
    if (in && fs::exists(out.train) && fs::exists(out.val)) {
      try {
        if (nlohmann::json::parse(in) == source) {
          out.reused = true;
          out.train_tokens = static_cast<int64_t>(fs::file_size(out.train) / 2);
          out.val_tokens = static_cast<int64_t>(fs::file_size(out.val) / 2);
          return out;
        }
      } catch (const nlohmann::json::exception&) {
        // A damaged record: rebuild the cache.
      }
    }
  }
  if (total < 20)
    throw Error("data: " + path + " holds " + std::to_string(total) +
                " bytes; too little to split into training and validation data");
  const int64_t cut = total * 9 / 10;  // the first byte of the validation split
  ParallelEncoder encoder(tok, opt.threads);
  io::AtomicWriter train_out(out.train), val_out(out.val);
  auto emit = [&](bool val, const std::vector<uint16_t>& ids) {
    (val ? val_out : train_out).write(ids.data(), ids.size() * sizeof(uint16_t));
    (val ? out.val_tokens : out.train_tokens) += static_cast<int64_t>(ids.size());
  };
  int64_t offset = 0, done = 0;
  // Blocks in flight at once: bounded memory whatever the corpus' size.
  const size_t group = static_cast<size_t>(encoder.threads()) * 4;
  std::vector<std::vector<uint16_t>> ids;
  for (const auto& f : files) {
    io::MappedFile map(f);
    const std::string_view text = map.bytes();
    const size_t size = text.size();
    size_t split = cut <= offset                                ? 0
                   : cut >= offset + static_cast<int64_t>(size) ? size
                                                                : static_cast<size_t>(cut - offset);
    if (split > 0 && split < size) {
      // At a safe cut when one follows within 64 KiB (both splits then tokenise as the
      // whole would); else at the byte, as nanoGPT cuts its token array: the piece around
      // the cut tokenises apart, a few tokens of difference against the whole.
      const size_t safe = tok.safe_cut(text, split);
      if (safe < size && safe - split <= (64u << 10)) split = safe;
    }
    std::vector<TextBlock> blocks;
    cut_blocks(tok, text, 0, split, opt.block_bytes, blocks);
    const size_t n_train = blocks.size();
    cut_blocks(tok, text, split, size, opt.block_bytes, blocks);
    for (size_t g = 0; g < blocks.size(); g += group) {
      const size_t n = std::min(group, blocks.size() - g);
      encoder.encode(text, blocks.data() + g, n, ids);
      for (size_t i = 0; i < n; ++i) {
        emit(g + i >= n_train, ids[i]);
        done += static_cast<int64_t>(blocks[g + i].end - blocks[g + i].begin);
      }
      if (opt.progress) opt.progress(done, total);
    }
    if (size > 0 && tok.end_of_text() >= 0)
      emit(split < size, {static_cast<uint16_t>(tok.end_of_text())});
    offset += static_cast<int64_t>(size);
  }
  if (out.train_tokens < 1 || out.val_tokens < 1)
    throw Error("data: " + path + " is too little text to split into training and validation data");
  train_out.commit();
  val_out.commit();
  io::write_file_atomic(src_path, source.dump(1));
  return out;
}

}  // namespace logattn::train
