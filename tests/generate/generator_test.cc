// Generation through the constant-size state: the generator drives the model's state path
// exactly, sampling keeps what it should, and a saved state continues exactly.
#include "generate/generator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <set>

#include "generate/sample.h"
#include "logattn/error.h"
#include "model/model.h"
#include "model/quantize.h"

namespace logattn::generate {
namespace {

model::Model tiny_model() {
  model::Model m(model::ModelConfig::preset("tiny"));
  m.init(11);
  // Sharper attention than the default initialisation gives.
  for (int64_t l = 0; l < m.config().n_layers; ++l) {
    const auto& p = m.layout().layers[l];
    for (int64_t i = 0; i < m.config().proj_width() * m.config().d_emb; ++i)
      m.weights()[p.w1 + i] *= 3.f;
  }
  return m;
}

// check(model) for the small preset's float32 weights and their bf16 and q8_0 forms.
template <typename Check>
void for_every_weight_type(Check check) {
  model::Model f32(model::ModelConfig::preset("small"));
  f32.init(5);
  check(f32);
  for (const auto type : {ops::WeightType::kBF16, ops::WeightType::kQ8_0}) {
    model::Model q = model::quantize_model(f32, type);
    check(q);
  }
}

std::vector<int32_t> prompt_tokens(int64_t n) {
  std::mt19937_64 rng(4);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % 256);
  return t;
}

// Nucleus sampling keeps the fewest most likely tokens whose probability reaches top_p:
// softmax(0, 1, 2, 3) = (0.032, 0.087, 0.237, 0.644).
TEST(Sample, TopPKeepsTheNucleus) {
  const float logits[] = {0.f, 1.f, 2.f, 3.f};
  auto seen = [&](double top_p) {
    SampleOptions opt;
    opt.temperature = 1.0;
    opt.top_p = top_p;
    std::set<int32_t> out;
    for (uint64_t seed = 1; seed <= 200; ++seed) {
      uint64_t rng = seed;
      out.insert(pick_token(logits, 4, opt, rng));
    }
    return out;
  };
  EXPECT_EQ(seen(1e-300), (std::set<int32_t>{3}));
  EXPECT_EQ(seen(0.6), (std::set<int32_t>{3}));
  EXPECT_EQ(seen(0.7), (std::set<int32_t>{2, 3}));
  EXPECT_EQ(seen(0.9), (std::set<int32_t>{1, 2, 3}));
  EXPECT_EQ(seen(1.0), (std::set<int32_t>{0, 1, 2, 3}));
}

// The generator feeds the model's state exactly as the model's own path would (a prompt
// in pieces, then each chosen token), and greedy picks the largest logit. That this path
// equals a full forward over the whole text, past the training context too, is checked
// stage by stage against float64 with each stage's error bound in
// tests/python/test_model_torch.py (a bound carried through the whole network would exceed
// the logits themselves).
TEST(Generator, GreedyFollowsTheModelsStatePathBitForBit) {
  model::Model m = tiny_model();
  const int64_t V = m.config().vocab;
  auto text = prompt_tokens(150);  // longer than the tiny preset's training context (32)
  Generator gen(m);
  gen.feed(text, 64);  // in pieces, as long prompts are read
  SampleOptions greedy;
  greedy.temperature = 0;
  uint64_t rng = 0;
  model::Model ref = tiny_model();
  model::ModelState st = ref.new_state(1);
  std::vector<float> last(V);
  for (int64_t i = 0; i < 150; i += 64)
    ref.forward_with_state(text.data() + i, 1, std::min<int64_t>(64, 150 - i), st, last.data(),
                           model::Model::Reading::kPrompt);
  for (int step = 0; step < 30; ++step) {
    ASSERT_EQ(gen.last_logits(), last) << "step " << step;
    const int32_t want =
        static_cast<int32_t>(std::max_element(last.begin(), last.end()) - last.begin());
    const int32_t got = gen.next(greedy, rng);
    ASSERT_EQ(got, want) << "step " << step;
    ref.forward_with_state(&got, 1, 1, st, last.data());
  }
  EXPECT_EQ(st.tokens, 180);
}

// A prompt read from a state at a multiple of Model::kPromptBlock gives the same state and
// logits, bit for bit, however the text is split at such multiples into calls and pieces
// (what makes a server's reuse of a kept prefix exact), for every weight type; a last piece
// of one token too.
TEST(Generator, PromptReadDoesNotDependOnItsSplit) {
  auto same = [](const Generator& a, const Generator& b) {
    if (a.tokens() != b.tokens() || a.last_logits() != b.last_logits()) return false;
    const auto &x = a.state(), &y = b.state();
    for (size_t l = 0; l < x.layers.size(); ++l) {
      const auto u = x.layers[l].data(), v = y.layers[l].data();
      if (std::memcmp(u.data(), v.data(), u.size_bytes()) != 0) return false;
    }
    return x.h == y.h;
  };
  auto check = [&](model::Model& m) {
    const std::string type = ops::weight_type_name(m.weight_type());
    for (const int64_t n : {333, 321, 64, 1}) {
      const auto text = prompt_tokens(n);
      const std::span<const int32_t> all(text);
      Generator whole(m);
      whole.feed(all, 512);
      // Split points (multiples of the block) and piece sizes.
      const std::vector<std::pair<std::vector<int64_t>, int64_t>> splits = {
          {{}, 64}, {{64}, 64}, {{256, 320}, 512}, {{320}, 128}, {{128, 192, 256}, 192}};
      for (const auto& [cuts, piece] : splits) {
        Generator g(m);
        int64_t from = 0;
        for (int64_t c : cuts) {
          if (c >= n) break;
          g.feed(all.subspan(from, c - from), piece);
          from = c;
        }
        g.feed(all.subspan(from), piece);
        EXPECT_TRUE(same(whole, g)) << type << ": " << n << " tokens, piece " << piece
                                    << ", first cut " << (cuts.empty() ? 0 : cuts[0]);
      }
    }
  };
  for_every_weight_type(check);
}

// Reading with log-probabilities leaves the state and logits a plain read leaves; each token
// gets the log-probability of its position's logits (the first: none from the empty state,
// the last logits from a state that holds text).
TEST(Generator, ScoringAReadLeavesItsStateAsAPlainRead) {
  model::Model m = tiny_model();
  const int64_t V = m.config().vocab;
  const auto text = prompt_tokens(150);
  Generator plain(m), scored(m);
  plain.feed(text, 64);
  std::vector<TokenLogprob> lps;
  scored.feed(text, 64, lps, 3);
  ASSERT_EQ(lps.size(), text.size());
  EXPECT_EQ(scored.last_logits(), plain.last_logits());
  EXPECT_EQ(scored.tokens(), plain.tokens());
  EXPECT_TRUE(std::isnan(lps[0].logprob));
  for (size_t i = 1; i < lps.size(); ++i) {
    ASSERT_EQ(lps[i].token, text[i]);
    ASSERT_LE(lps[i].logprob, 0.f);
    ASSERT_EQ(lps[i].top.size(), 3u);
    ASSERT_GE(lps[i].top[0].second, lps[i].top[2].second);
  }
  // The first token of a second read comes from the last logits.
  std::vector<TokenLogprob> more;
  const std::vector<int32_t> next = {7, 8};
  const TokenLogprob want = token_logprob(plain.last_logits().data(), V, 7, 0);
  scored.feed(next, 64, more, 0);
  ASSERT_EQ(more.size(), 2u);
  EXPECT_EQ(more[0].logprob, want.logprob);
}

TEST(Generator, SavedStateContinuesAsNeverStopping) {
  model::Model m = tiny_model();
  const std::string path =
      (std::filesystem::temp_directory_path() / "logattn_state.safetensors").string();
  SampleOptions opt;
  opt.temperature = 0.9;
  opt.top_k = 20;
  Generator a(m);
  a.feed(prompt_tokens(40));
  uint64_t rng = 7;
  for (int i = 0; i < 10; ++i) a.next(opt, rng);
  a.save(path);
  const uint64_t rng_at_save = rng;
  std::vector<int32_t> straight;
  for (int i = 0; i < 20; ++i) straight.push_back(a.next(opt, rng));

  Generator b(m);
  b.load(path);
  EXPECT_EQ(b.tokens(), 50);
  rng = rng_at_save;
  std::vector<int32_t> resumed;
  for (int i = 0; i < 20; ++i) resumed.push_back(b.next(opt, rng));
  EXPECT_EQ(straight, resumed);

  // The file's size does not depend on the length of the text.
  const auto size_50 = std::filesystem::file_size(path);
  b.feed(prompt_tokens(3000), 512);
  b.save(path);
  EXPECT_EQ(std::filesystem::file_size(path), size_50);
  std::filesystem::remove(path);
}

TEST(Generator, BatchEqualsOneAtATime) {
  model::Model m = tiny_model();
  const std::vector<std::vector<int32_t>> prompts = {prompt_tokens(5), prompt_tokens(40), {65}};
  SampleOptions opt;
  opt.temperature = 0.7;
  const auto batch = generate_batch(m, prompts, 25, opt, 100);
  for (size_t i = 0; i < prompts.size(); ++i) {
    Generator g(m);
    g.feed(prompts[i]);
    uint64_t rng = 100 + i;
    std::vector<int32_t> alone;
    for (int t = 0; t < 25; ++t) alone.push_back(g.next(opt, rng));
    EXPECT_EQ(batch[i], alone) << "prompt " << i;
  }
  EXPECT_THROW(generate_batch(m, {{1, 2}, {}}, 3, opt, 0), Error);
}

// A sequence's logits do not depend on the batch it steps in: stepping together, in batches
// whose members change every step (sequences join and leave), gives each sequence the bits
// it gets stepping alone, for every weight type.
TEST(Generator, ASequencesLogitsDoNotDependOnItsBatch) {
  auto check = [](model::Model& m) {
    const int n = 5;
    std::vector<std::unique_ptr<Generator>> together, alone;
    for (int i = 0; i < n; ++i) {
      for (auto* list : {&together, &alone}) {
        list->push_back(std::make_unique<Generator>(m));
        list->back()->feed(prompt_tokens(3 + 7 * i));
      }
    }
    std::mt19937_64 rng(9);
    Generator::Batch batch;
    for (int step = 0; step < 12; ++step) {
      std::vector<Generator*> gens;
      std::vector<int32_t> tokens;
      for (int i = 0; i < n; ++i) {
        if (step > 0 && rng() % 3 == 0) continue;  // this one sits this step out
        const auto& l = together[i]->last_logits();
        const int32_t t = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
        gens.push_back(together[i].get());
        tokens.push_back(t);
        Generator::step_together({alone[i].get()}, {t}, batch);
      }
      Generator::step_together(gens, tokens, batch);
      for (int i = 0; i < n; ++i) {
        const auto &a = together[i]->last_logits(), &b = alone[i]->last_logits();
        ASSERT_EQ(a.size(), b.size());
        ASSERT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0)
            << ops::weight_type_name(m.weight_type()) << " step " << step << " sequence " << i
            << " of " << gens.size() << " in the batch";
      }
    }
  };
  for_every_weight_type(check);
}

// Stepping together gathers the states into one model's batch: generators of another model
// (even of the same shape), or too few tokens, are refused before anything is copied.
TEST(Generator, StepTogetherRefusesGeneratorsOfAnotherModel) {
  model::Model a = tiny_model(), b = tiny_model();
  Generator ga(a), gb(b), gc(a);
  for (Generator* g : {&ga, &gb, &gc}) g->feed(prompt_tokens(4));
  const auto before = ga.last_logits();
  Generator::Batch batch;
  EXPECT_THROW(Generator::step_together({&ga, &gb}, {1, 2}, batch), Error);
  EXPECT_THROW(Generator::step_together({&ga, &gc}, {1}, batch), Error);
  EXPECT_EQ(ga.last_logits(), before);
  EXPECT_EQ(ga.tokens(), 4);
  Generator::step_together({&ga, &gc}, {1, 2}, batch);
  EXPECT_EQ(ga.tokens(), 5);
}

TEST(Generator, BadStateFilesAndPrompts) {
  model::Model m = tiny_model();
  Generator g(m);
  EXPECT_THROW(g.feed({}), Error);
  EXPECT_THROW(g.feed(prompt_tokens(5), 16), Error);  // pieces are whole blocks
  const std::string path =
      (std::filesystem::temp_directory_path() / "logattn_state_bad.safetensors").string();
  g.feed(prompt_tokens(5));
  g.save(path);
  model::ModelConfig other_cfg = model::ModelConfig::preset("tiny");
  other_cfg.n_layers = 3;
  model::Model other(other_cfg);
  Generator o(other);
  try {
    o.load(path);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("another model"), std::string::npos);
  }
  // Truncated.
  const auto size = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, size - 10);
  EXPECT_THROW(g.load(path), Error);
  std::filesystem::remove(path);
}

}  // namespace
}  // namespace logattn::generate
