// Tokenising a corpus into train.bin / val.bin: the ids of the text, an end-of-text after
// each file, the same bytes for any thread count or block size, the cache keyed by the
// tokenizer, and errors on empty data.
#include "train/corpus.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "logattn/error.h"
#include "tokenizer/tokenizer.h"
#include "train/data.h"

namespace logattn::train {
namespace {

namespace fs = std::filesystem;

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("logattn-corpus-" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::vector<int32_t> read_ids(const std::string& path) {
  TokenFile t(path);
  return {t.data(), t.data() + t.size()};
}

std::string some_text(int seed, int lines) {
  std::string s;
  for (int i = 0; i < lines; ++i)
    s += "Line " + std::to_string(i * seed) +
         ": the   quick fox's \xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80\n";
  return s;
}

TEST(Corpus, Gpt2IdsWithEndOfTextAfterEachFile) {
  const auto tok = tokenizer::load_tokenizer("gpt2");
  const fs::path d = temp_dir("gpt2");
  fs::create_directories(d / "text");
  const std::string a = some_text(3, 2000), b = some_text(7, 300);
  std::ofstream(d / "text/a.txt") << a;
  std::ofstream(d / "text/b.txt") << b;
  TokenizeOptions opt;
  opt.block_bytes = 1000;  // many blocks
  std::vector<std::vector<int32_t>> runs;
  for (const int threads : {1, 2}) {
    opt.threads = threads;
    fs::remove_all(d / ("out" + std::to_string(threads)));
    const auto r = prepare_tokens((d / "text").string(),
                                  (d / ("out" + std::to_string(threads))).string(), *tok, opt);
    EXPECT_FALSE(r.reused);
    auto ids = read_ids(r.train);
    const auto val = read_ids(r.val);
    EXPECT_EQ(r.train_tokens, static_cast<int64_t>(ids.size()));
    EXPECT_EQ(r.val_tokens, static_cast<int64_t>(val.size()));
    ids.insert(ids.end(), val.begin(), val.end());
    runs.push_back(ids);
  }
  EXPECT_EQ(runs[0], runs[1]);
  // The split is at a line start, where pieces cannot change: the ids of the whole text, as
  // encode_documents gives them.
  const auto whole = encode_documents((d / "text").string(), *tok);
  EXPECT_EQ(std::vector<int32_t>(whole.begin(), whole.end()), runs[0]);
  // a.txt is 87% of the bytes: all training data, then its end-of-text; b.txt is cut at a
  // line start into the end of training and validation, then its end-of-text.
  const auto& ids = runs[0];
  const auto ia = tok->encode(a);
  ASSERT_GT(ids.size(), ia.size() + 2);
  EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + ia.size()), ia);
  EXPECT_EQ(ids[ia.size()], 50256);
  EXPECT_EQ(ids.back(), 50256);
  EXPECT_EQ(tok->decode(ids), a + "<|endoftext|>" + b + "<|endoftext|>");
  fs::remove_all(d);
}

TEST(Corpus, BytesAreTheTextSplitNinetyTen) {
  const auto tok = tokenizer::load_tokenizer("bytes");
  const fs::path d = temp_dir("bytes");
  const std::string text = some_text(5, 100);
  std::ofstream(d / "t.txt") << text;
  TokenizeOptions opt;
  opt.block_bytes = 333;
  const auto r = prepare_tokens((d / "t.txt").string(), (d / "out").string(), *tok, opt);
  const auto train = read_ids(r.train), val = read_ids(r.val);
  ASSERT_EQ(train.size(), text.size() * 9 / 10);
  ASSERT_EQ(train.size() + val.size(), text.size());
  std::string back;
  for (auto id : train) back.push_back(static_cast<char>(id));
  for (auto id : val) back.push_back(static_cast<char>(id));
  EXPECT_EQ(back, text);
  fs::remove_all(d);
}

TEST(Corpus, CacheIsKeyedByTokenizer) {
  const fs::path d = temp_dir("cache");
  std::ofstream(d / "t.txt") << some_text(2, 200);
  const auto bytes = tokenizer::load_tokenizer("bytes");
  const auto gpt2 = tokenizer::load_tokenizer("gpt2");
  const std::string out = (d / "out").string();
  EXPECT_FALSE(prepare_tokens((d / "t.txt").string(), out, *bytes).reused);
  EXPECT_TRUE(prepare_tokens((d / "t.txt").string(), out, *bytes).reused);
  const auto r = prepare_tokens((d / "t.txt").string(), out, *gpt2);
  EXPECT_FALSE(r.reused);
  EXPECT_LT(r.train_tokens, static_cast<int64_t>(some_text(2, 200).size()) / 2);
  for (const auto& e : fs::directory_iterator(out))  // no temporary files left
    EXPECT_EQ(e.path().filename().string().find(".tmp."), std::string::npos);
  fs::remove_all(d);
}

// Text with no safe cut after its 90% mark (one long last line) is split at the byte, as
// nanoGPT cuts its token array, not refused; and a killed run's temporary files go.
TEST(Corpus, NoSafeCutSplitsAtTheByte) {
  const auto tok = tokenizer::load_tokenizer("gpt2");
  const fs::path d = temp_dir("nocut");
  std::string text = some_text(3, 150);
  text += std::string(text.size() / 4, 'a');  // a last line of a's, no newline after 90%
  std::ofstream(d / "t.txt") << text;
  fs::create_directories(d / "out");
  std::ofstream(d / "out" / "train.bin.tmp.12345") << "stale";
  const auto r = prepare_tokens((d / "t.txt").string(), (d / "out").string(), *tok);
  EXPECT_GT(r.train_tokens, 0);
  EXPECT_GT(r.val_tokens, 0);
  EXPECT_FALSE(fs::exists(d / "out" / "train.bin.tmp.12345"));
  fs::remove_all(d);
}

TEST(Corpus, EmptyDataIsRefused) {
  const auto tok = tokenizer::load_tokenizer("gpt2");
  const fs::path d = temp_dir("empty");
  std::ofstream(d / "empty.txt") << "";
  EXPECT_THROW(prepare_tokens((d / "empty.txt").string(), (d / "out").string(), *tok), Error);
  std::ofstream(d / "tiny.txt") << "hello";
  EXPECT_THROW(prepare_tokens((d / "tiny.txt").string(), (d / "out").string(), *tok), Error);
  EXPECT_FALSE(fs::exists(d / "out" / "train.bin"));
  EXPECT_THROW(prepare_tokens((d / "nothing").string(), (d / "out").string(), *tok), Error);
  fs::remove_all(d);
}

}  // namespace
}  // namespace logattn::train
