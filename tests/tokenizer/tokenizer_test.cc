// GPT-2's tokenizer: ids identical to js-tiktoken's 'gpt2' (reference ids made by
// tiktoken_reference.cjs at test time), the heap BPE against a plain one, any byte string
// round trips, safe cuts, and errors on broken files.
#include "tokenizer/tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "logattn/error.h"
#include "tokenizer/gpt2_bpe.h"
#include "train/corpus.h"

namespace logattn::tokenizer {
namespace {

namespace fs = std::filesystem;

const Gpt2Bpe& bpe() {
  static const Gpt2Bpe b(find_gpt2_dir());
  return b;
}

const Tokenizer& gpt2() {
  static const auto t = load_tokenizer("gpt2");
  return *t;
}

std::vector<int32_t> ids_of(const std::string& s) {
  return gpt2().encode(s);
}

std::vector<int32_t> concat(std::initializer_list<std::vector<int32_t>> parts) {
  std::vector<int32_t> out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// tiktoken's merge loop as written there: scan every adjacent pair, merge the leftmost of
// lowest rank, repeat. O(n^2); the reference for Gpt2Bpe::encode_piece.
std::vector<uint16_t> plain_bpe(const std::string& piece) {
  std::vector<int32_t> parts;
  for (unsigned char c : piece) parts.push_back(bpe().find(std::string(1, static_cast<char>(c))));
  for (;;) {
    int32_t best = -1;
    size_t at = 0;
    for (size_t i = 0; i + 1 < parts.size(); ++i) {
      const int32_t r = bpe().merged(parts[i], parts[i + 1]);
      if (r >= 0 && (best < 0 || r < best)) best = r, at = i;
    }
    if (best < 0) break;
    parts[at] = best;
    parts.erase(parts.begin() + static_cast<std::ptrdiff_t>(at) + 1);
  }
  return {parts.begin(), parts.end()};
}

TEST(Gpt2Tokenizer, KnownIds) {
  EXPECT_EQ(ids_of("Hello world"), (std::vector<int32_t>{15496, 995}));
  EXPECT_EQ(ids_of(" the"), (std::vector<int32_t>{262}));
  EXPECT_EQ(gpt2().vocab_size(), 50257);
  EXPECT_EQ(gpt2().decode({50256}), "<|endoftext|>");
  EXPECT_TRUE(ids_of("").empty());
}

TEST(Gpt2Tokenizer, MatchesJsTiktoken) {
  // Written by the ctest fixture tokenizer.tiktoken_reference (node), which runs first.
  const char* path = LOGATTN_TIKTOKEN_REF;
  std::ifstream in(path);
  ASSERT_TRUE(in) << path << ": run through ctest, which makes the reference ids first";
  const auto cases = nlohmann::json::parse(in);
  ASSERT_GT(cases.size(), 300u);
  int64_t tokens = 0;
  for (const auto& c : cases) {
    const std::string text = c["text"];
    const auto want = c["ids"].get<std::vector<int32_t>>();
    ASSERT_EQ(ids_of(text), want) << c["name"].get<std::string>();
    EXPECT_EQ(gpt2().decode(want), text);
    tokens += static_cast<int64_t>(want.size());
  }
  EXPECT_GT(tokens, 10000);
}

TEST(Gpt2Tokenizer, WhitespaceIsUnicodeWhiteSpace) {
  // tiktoken's \s is Unicode's White_Space: U+0085 is whitespace, U+FEFF is not.
  const std::string nel = "\xc2\x85", bom = "\xef\xbb\xbf";
  EXPECT_EQ(ids_of("a" + nel + nel + "b"),
            concat({ids_of("a"), ids_of(nel), ids_of(nel), ids_of("b")}));
  EXPECT_EQ(ids_of("a" + bom + bom + "b"), concat({ids_of("a"), ids_of(bom + bom), ids_of("b")}));
}

TEST(Gpt2Tokenizer, HeapBpeMatchesPlainBpe) {
  std::mt19937_64 rng(7);
  std::vector<uint16_t> fast;
  for (int c = 0; c < 3000; ++c) {
    std::string piece;
    const int kind = c % 3;
    const int n = 2 + static_cast<int>(rng() % 40);
    if (kind == 0) {  // random bytes
      for (int i = 0; i < n; ++i) piece.push_back(static_cast<char>(rng() % 256));
    } else if (kind == 1) {  // a few random letters (many merges)
      for (int i = 0; i < n; ++i) piece.push_back(static_cast<char>('a' + rng() % 6));
    } else {  // tokens glued together
      for (int i = 0; i < 1 + n / 8; ++i) piece += bpe().token_bytes(rng() % 50256);
    }
    fast.clear();
    bpe().encode_piece(piece, fast);
    ASSERT_EQ(fast, plain_bpe(piece)) << "piece " << c;
  }
}

TEST(Gpt2Tokenizer, AnyBytesRoundTrip) {
  std::mt19937_64 rng(11);
  const std::string alphabet[] = {"a",
                                  "Z",
                                  " ",
                                  "\n",
                                  "'s",
                                  "9",
                                  "\xc3\xa9",
                                  "\xe6\x97\xa5",
                                  "\xf0\x9f\x98\x80",
                                  "\xff",
                                  "\xc3",
                                  "\x80",
                                  "\xed\xa0\x80",
                                  "\xf4\x90\x80\x80",
                                  std::string(1, '\0'),
                                  "\t"};
  for (int c = 0; c < 500; ++c) {
    std::string s;
    const int n = static_cast<int>(rng() % 200);
    for (int i = 0; i < n; ++i)
      s += c % 2 ? alphabet[rng() % std::size(alphabet)] : std::string(1, static_cast<char>(rng()));
    const auto ids = ids_of(s);
    for (const int32_t id : ids) ASSERT_LT(id, 50256);
    ASSERT_EQ(gpt2().decode(ids), s) << "case " << c;
  }
}

TEST(Gpt2Tokenizer, LongRunsAreNotQuadratic) {
  // A piece of 300,000 bytes: the heap merge is O(n log n) (a quadratic one takes minutes).
  for (const std::string& s :
       {std::string(300000, ' ') + "x", std::string(300000, 'q'), std::string(300000, '\xff')}) {
    const auto ids = ids_of(s);
    EXPECT_EQ(gpt2().decode(ids), s);
  }
}

TEST(Gpt2Tokenizer, SafeCutsGiveTheIdsOfTheWhole) {
  std::string text;
  std::mt19937_64 rng(3);
  const char* words[] = {"the",
                         " cat",
                         "  ",
                         "\n",
                         "\n\n",
                         " \n",
                         "'s",
                         "42",
                         "!?",
                         "\t",
                         "\xc3\xa9t\xc3\xa9",
                         " \xe6\x97\xa5",
                         "\xff",
                         "  \n  x",
                         "\r\n",
                         "\xe3\x80\x80\n",  // U+3000, white space, before a newline
                         "\xf0\x9f\x98\x80\n"};
  for (int i = 0; i < 20000; ++i) text += words[rng() % std::size(words)];
  const auto whole = gpt2().encode(text);
  // Each side of a safe cut encoded alone (how files are streamed and split into train and
  // validation text) gives the ids of the whole.
  for (size_t from = 0; from < text.size(); from += 997) {
    const size_t p = gpt2().safe_cut(text, from);
    auto ids = gpt2().encode(std::string_view(text).substr(0, p));
    const auto right = gpt2().encode(std::string_view(text).substr(p));
    ids.insert(ids.end(), right.begin(), right.end());
    ASSERT_EQ(ids, whole) << "cut at " << p << ": '" << text.substr(p - 2, 4) << "'";
  }
  for (const int threads : {1, 2}) {
    for (const size_t block : {1ul, 7ul, 100ul, 4096ul}) {
      train::ParallelEncoder enc(gpt2(), threads);
      const auto ids = enc.encode_all(text, block);
      ASSERT_EQ(std::vector<int32_t>(ids.begin(), ids.end()), whole)
          << threads << " threads, blocks of " << block;
    }
  }
}

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("logattn-tok-" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string expect_error(const std::string& dir) {
  try {
    Gpt2Bpe b(dir);
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no error for " << dir;
  return "";
}

TEST(Gpt2Tokenizer, BrokenFilesAreRefused) {
  const fs::path good = find_gpt2_dir();
  const fs::path d = temp_dir("broken");
  EXPECT_NE(expect_error(d.string()).find("cannot read"), std::string::npos);
  std::ifstream e(good / "encoder.json"), v(good / "vocab.bpe");
  std::stringstream es, vs;
  es << e.rdbuf();
  vs << v.rdbuf();
  const std::string enc = es.str(), merges = vs.str();
  auto write = [&](const std::string& a, const std::string& b) {
    std::ofstream(d / "encoder.json", std::ios::binary) << a;
    std::ofstream(d / "vocab.bpe", std::ios::binary) << b;
  };
  write(enc.substr(0, enc.size() / 2), merges);
  EXPECT_NE(expect_error(d.string()).find("not valid JSON"), std::string::npos);
  write("{\"a\": 0}", merges);
  EXPECT_NE(expect_error(d.string()).find("must map 50257"), std::string::npos);
  write(enc, merges.substr(0, merges.size() / 2));
  EXPECT_NE(expect_error(d.string()).find("merges, not 50000"), std::string::npos);
  std::string swapped = merges;
  swapped.replace(swapped.find("\n") + 1, 3, "x y");  // the first merge, wrong
  write(enc, swapped);
  EXPECT_NE(expect_error(d.string()).find("is not merge 0"), std::string::npos);
  EXPECT_THROW(load_tokenizer("gpt2", (d / "missing").string()), Error);
  EXPECT_THROW(load_tokenizer("sentencepiece"), Error);
  fs::remove_all(d);
}

}  // namespace
}  // namespace logattn::tokenizer
