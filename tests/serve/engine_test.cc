// The serving engine without HTTP: exact prefix reuse (answers with the prefix cache on equal
// those with it off, bit for bit, over the families of prompts that share prefixes), and the
// prefix cache's own bookkeeping.
#include "serve/engine.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "logattn/error.h"
#include "model/model.h"
#include "model/quantize.h"
#include "serve/prefix_cache.h"
#include "tokenizer/tokenizer.h"

namespace logattn::serve {
namespace {

std::vector<int32_t> random_tokens(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % 256);
  return t;
}

std::vector<int32_t> join(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// What a client receives, with each log-probability's bits.
struct Answer {
  std::string text, finish, error;
  std::vector<int32_t> tokens;
  std::vector<uint32_t> logprob_bits;
  bool operator==(const Answer&) const = default;
};

Answer collect(Stream& s) {
  Answer a;
  for (;;) {
    Event e;
    if (!s.pop(e, std::chrono::seconds(60))) throw Error("no event within 60 s");
    a.text += e.text;
    for (const auto& lp : e.logprobs) {
      a.tokens.push_back(lp.token);
      uint32_t bits;
      std::memcpy(&bits, &lp.logprob, 4);
      a.logprob_bits.push_back(bits);
      for (const auto& [t, v] : lp.top) {
        std::memcpy(&bits, &v, 4);
        a.tokens.push_back(t), a.logprob_bits.push_back(bits);
      }
    }
    if (e.done) {
      a.finish = e.finish_reason, a.error = e.error;
      return a;
    }
  }
}

Request request(std::vector<int32_t> prompt, uint64_t seed) {
  Request r;
  r.prompt = std::move(prompt);
  r.max_tokens = 6;
  r.logprobs = 2;
  r.seed = seed;
  r.sample.temperature = seed % 2 ? 0.8 : 0.0;  // seeded sampling and greedy
  return r;
}

// Prompts that share prefixes in every way reuse meets: a long system prompt and different
// questions; the same prompt again; prompts that differ only in their last token; a shared
// prefix that ends inside a block; a prompt of whole blocks (reused whole); short prompts.
std::vector<Request> families() {
  const auto system = random_tokens(300, 1);
  std::vector<std::vector<int32_t>> prompts;
  for (uint64_t q = 0; q < 3; ++q) prompts.push_back(join(system, random_tokens(20 + q, 10 + q)));
  prompts.push_back(prompts[0]);
  auto last = prompts[0];
  last.back() = (last.back() + 1) % 256;
  prompts.push_back(last);
  prompts.push_back(join({system.begin(), system.begin() + 250}, random_tokens(100, 20)));
  prompts.push_back(join({system.begin(), system.begin() + 250}, random_tokens(90, 21)));
  prompts.push_back({system.begin(), system.begin() + 256});
  prompts.push_back({system.begin(), system.begin() + 256});
  prompts.push_back(random_tokens(10, 30));
  prompts.push_back(join(system, random_tokens(700, 31)));  // past a piece of the read
  prompts.push_back(join(system, random_tokens(700, 31)));
  std::vector<Request> out;
  for (size_t i = 0; i < prompts.size(); ++i) out.push_back(request(prompts[i], i));
  return out;
}

// Each request alone, one after another (together: all submitted at once).
std::vector<Answer> answers(Engine& engine, const std::vector<Request>& reqs, bool together) {
  std::vector<Answer> out;
  std::vector<std::shared_ptr<Stream>> streams;
  for (const auto& r : reqs) {
    streams.push_back(engine.submit(r));
    if (!together) out.push_back(collect(*streams.back()));
  }
  if (together)
    for (auto& s : streams) out.push_back(collect(*s));
  return out;
}

EngineConfig config(int64_t prefix_cache_mb) {
  EngineConfig c;
  c.prefix_cache_mb = prefix_cache_mb;
  c.max_queue = 100;
  return c;
}

TEST(Engine, PrefixReuseNeverChangesAnAnswer) {
  auto tok = tokenizer::load_tokenizer("bytes");
  model::Model f32(model::ModelConfig::preset("small"));
  f32.init(5);
  const auto reqs = families();
  auto check = [&](model::Model& m) {
    const std::string type = ops::weight_type_name(m.weight_type());
    Engine off(m, *tok, config(0));
    const auto want = answers(off, reqs, /*together=*/false);
    EXPECT_EQ(off.metrics().prefix.hits, 0);
    // Room for every state, then for about five (prefixes evicted and made again).
    const int64_t state_mb_x5 = std::max<int64_t>(1, 5 * off.state_bytes() / 1048576);
    for (const int64_t mb : {int64_t{512}, state_mb_x5}) {
      for (const bool together : {false, true}) {
        Engine on(m, *tok, config(mb));
        for (int round = 0; round < 2; ++round) {
          const auto got = answers(on, reqs, together);
          for (size_t i = 0; i < reqs.size(); ++i)
            EXPECT_EQ(got[i], want[i]) << type << ", cache " << mb << " MB, request " << i
                                       << (together ? " (all at once)" : "") << ", round " << round;
        }
        const PrefixCacheStats st = on.metrics().prefix;
        EXPECT_GT(st.hits, 0) << type << ", cache " << mb << " MB";
        EXPECT_GT(st.tokens_reused, 0);
        EXPECT_LE(st.bytes, mb * 1048576);
        if (mb < 512 && !together) {
          EXPECT_GT(st.evictions, 0);
        }
        EXPECT_EQ(on.metrics().prompt_tokens_read + st.tokens_reused, on.metrics().prompt_tokens);
      }
    }
  };
  check(f32);
  model::Model q8 = model::quantize_model(f32, ops::WeightType::kQ8_0);
  check(q8);
}

TEST(PrefixCache, LongestKeptPrefixAndWherePromptsBranch) {
  model::Model m(model::ModelConfig::preset("tiny"));
  m.init(3);
  const int64_t B = model::Model::kPromptBlock;
  const auto a = random_tokens(3 * B + 10, 1);
  PrefixCache cache(int64_t{64} << 20);
  generate::Generator g(m);
  EXPECT_EQ(cache.start(a, g), 0);
  EXPECT_TRUE(g.empty());
  // The first prompt keeps its end only (no earlier prompt shares anything with it).
  EXPECT_EQ(cache.keep_points(a, 0), (std::vector<int64_t>{3 * B}));
  g.feed(std::span(a).first(3 * B), 512);
  cache.keep(std::span(a).first(3 * B), g);
  // A prompt that leaves a's tokens at 2 B + 5: no kept prefix of it; it keeps where it
  // branches (2 B) and its end.
  auto b = a;
  b[2 * B + 5] ^= 1;
  generate::Generator h(m);
  EXPECT_EQ(cache.start(b, h), 0);
  EXPECT_EQ(cache.keep_points(b, 0), (std::vector<int64_t>{2 * B, 3 * B}));
  h.feed(std::span(b).first(2 * B), 512);
  cache.keep(std::span(b).first(2 * B), h);
  // Now a third prompt with that branch starts from it.
  auto c = b;
  c[2 * B + 7] ^= 1;
  generate::Generator k(m);
  EXPECT_EQ(cache.start(c, k), 2 * B);
  EXPECT_EQ(k.tokens(), 2 * B);
  EXPECT_EQ(k.last_logits(), h.last_logits());
  // a whole again: its longest kept prefix is 3 B.
  generate::Generator w(m);
  EXPECT_EQ(cache.start(a, w), 3 * B);
  EXPECT_EQ(cache.stats().hits, 2);
  EXPECT_EQ(cache.stats().lookups, 4);
  EXPECT_EQ(cache.stats().entries, 2);
  // A prompt shorter than a block keeps nothing; a cache of 0 bytes does nothing.
  EXPECT_TRUE(cache.keep_points(random_tokens(B - 1, 2), 0).empty());
  PrefixCache none(0);
  EXPECT_FALSE(none.enabled());
  EXPECT_EQ(none.start(a, w), 0);
  EXPECT_TRUE(none.keep_points(a, 0).empty());
}

TEST(PrefixCache, StaysWithinItsBytes) {
  model::Model m(model::ModelConfig::preset("tiny"));
  m.init(3);
  const int64_t B = model::Model::kPromptBlock;
  generate::Generator g(m);
  const auto t = random_tokens(B, 1);
  g.feed(t, 512);
  PrefixCache probe(int64_t{1} << 30);
  probe.keep(t, g);
  const int64_t one = probe.stats().bytes;
  PrefixCache cache(3 * one);
  for (uint64_t i = 0; i < 10; ++i) {
    const auto p = random_tokens(B, 100 + i);
    generate::Generator x(m);
    x.feed(p, 512);
    cache.keep(p, x);
    EXPECT_LE(cache.stats().bytes, 3 * one);
  }
  EXPECT_EQ(cache.stats().entries, 3);
  EXPECT_EQ(cache.stats().evictions, 7);
  // The most recent ones stay.
  generate::Generator y(m);
  EXPECT_EQ(cache.start(random_tokens(B, 109), y), B);
  EXPECT_EQ(cache.start(random_tokens(B, 100), y), 0);
}

TEST(Engine, RefusesABadPrefixCacheSize) {
  auto tok = tokenizer::load_tokenizer("bytes");
  model::Model m(model::ModelConfig::preset("tiny"));
  m.init(1);
  EXPECT_THROW(Engine(m, *tok, config(-1)), Error);
  EXPECT_THROW(Engine(m, *tok, config(int64_t{1} << 21)), Error);
}

}  // namespace
}  // namespace logattn::serve
