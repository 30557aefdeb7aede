// The model: it learns (overfits one batch), checkpoints round-trip and reject other shapes,
// bad tokens are refused, and the same seed gives the same bits.
#include "model/model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "io/safetensors.h"
#include "logattn/error.h"
#include "model/checkpoint.h"
#include "train/adamw.h"

namespace logattn::model {
namespace {

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("logattn_model_" + name)).string();
}

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % vocab);
  return t;
}

TEST(Model, TinyModelOverfitsOneBatch) {
  for (const AttentionKind attention : {AttentionKind::kLog, AttentionKind::kSoftmax}) {
    ModelConfig cfg = ModelConfig::preset("tiny");
    cfg.attention = attention;
    Model m(cfg);
    m.init(1);
    const int64_t B = 2, T = 32;
    const auto x = random_tokens(B * T, 256, 2), y = random_tokens(B * T, 256, 3);
    train::AdamW opt(m.layout(), train::AdamWConfig{0.9, 0.95, 1e-8, 0.0});
    double first = 0, last = 0;
    for (int s = 0; s < 300; ++s) {
      m.zero_grads();
      last = m.forward(x.data(), y.data(), B, T, true);
      if (s == 0) first = last;
      opt.update(m.weights().data(), m.grads().data(), 1e-2);
    }
    EXPECT_NEAR(first, std::log(256.0), 0.5) << attention_name(attention);
    EXPECT_LT(last, 0.2) << attention_name(attention) << ": from " << first;
  }
}

// The twin generates through a key/value cache that grows with the context (past the
// training context too); its outputs equal a full forward's stage by stage, within each
// stage's float64 error bound, in tests/python/test_model_torch.py.
TEST(Model, TwinGenerationCacheGrowsWithTheContext) {
  ModelConfig cfg = ModelConfig::preset("tiny");
  cfg.attention = AttentionKind::kSoftmax;
  Model m(cfg);
  m.init(9);
  const auto text = random_tokens(45, 256, 10);  // past the training context (32)
  ModelState st = m.new_state(1);
  std::vector<float> last(cfg.vocab);
  m.forward_with_state(text.data(), 1, 20, st, last.data());
  EXPECT_EQ(st.caches[0].k.size(), 20u * cfg.d_key);
  for (int64_t n = 21; n <= 45; ++n)
    m.forward_with_state(text.data() + n - 1, 1, 1, st, last.data());
  EXPECT_EQ(st.caches[0].k.size(), 45u * cfg.d_key);
  EXPECT_EQ(st.caches[0].lv.size(), 45u * cfg.d_val);
  for (float x : last) ASSERT_TRUE(std::isfinite(x));
  EXPECT_THROW(ModelConfig::from_json({{"attention", "linear"}}), Error);
}

// A generation step runs its heads on two threads; bad numbers in either thread's heads
// come back to the caller as an error naming them (not a terminate from the other thread).
TEST(Model, NonFiniteProjectionInAStepIsAnErrorFromEitherThread) {
  const ModelConfig cfg = ModelConfig::preset("tiny");
  for (int64_t head = 0; head < cfg.n_heads; ++head) {
    Model m(cfg);
    m.init(3);
    const int64_t w = 2 * cfg.d_key + cfg.d_val;
    m.weights()[m.layout().layers[1].w1 + head * w * cfg.d_emb] = NAN;  // the head's first query
    ModelState st = m.new_state(1);
    std::vector<float> logits(cfg.vocab);
    const int32_t tok = 1;
    try {
      m.forward_with_state(&tok, 1, 1, st, logits.data());
      FAIL() << "head " << head;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("q has a non-finite value (nan) at [0, " +
                                           std::to_string(head) + ", 0, 0]"),
                std::string::npos)
          << e.what();
    }
  }
}

TEST(Model, SameSeedSameBits) {
  auto run = [] {
    Model m(ModelConfig::preset("tiny"));
    m.init(5);
    const auto x = random_tokens(64, 256, 6), y = random_tokens(64, 256, 7);
    m.zero_grads();
    m.forward(x.data(), y.data(), 2, 32, true);
    return m.grads();
  };
  EXPECT_EQ(run(), run());
}

// The hook that starts a layer's gradient reduction fires once per layer, top layer first,
// when that layer's gradients are final: nothing the backward does after it changes them.
TEST(Model, LayerGradientsAreFinalWhenAnnounced) {
  ModelConfig cfg = ModelConfig::preset("tiny");
  cfg.n_layers = 3;
  Model m(cfg);
  m.init(5);
  const auto x = random_tokens(64, 256, 6), y = random_tokens(64, 256, 7);
  std::vector<int64_t> order;
  std::vector<std::vector<float>> seen(cfg.n_layers);
  m.set_layer_grads_ready([&](int64_t l) {
    order.push_back(l);
    const auto& L = m.layout().layers[l];
    seen[l].assign(m.grads().begin() + L.ln_w, m.grads().begin() + L.end);
  });
  m.zero_grads();
  m.forward(x.data(), y.data(), 2, 32, /*backward=*/true);
  EXPECT_EQ(order, (std::vector<int64_t>{2, 1, 0}));
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    const auto& L = m.layout().layers[l];
    EXPECT_EQ(seen[l], std::vector<float>(m.grads().begin() + L.ln_w, m.grads().begin() + L.end));
  }
  // The layers' spans tile the buffer between EmbedPosition and the final LayerNorm.
  EXPECT_EQ(m.layout().layers[0].ln_w, m.layout().pos_b + 2 * cfg.d_emb);
  for (int64_t l = 1; l < cfg.n_layers; ++l)
    EXPECT_EQ(m.layout().layers[l].ln_w, m.layout().layers[l - 1].end);
  EXPECT_EQ(m.layout().layers.back().end, m.layout().lnf_w);
}

TEST(Model, RejectsTokensOutsideTheVocabulary) {
  Model m(ModelConfig::preset("tiny"));
  std::vector<int32_t> x = {1, 2, 300};
  try {
    m.forward(x.data(), nullptr, 1, 3, false);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token id 300 at position 2"), std::string::npos);
  }
}

TEST(Checkpoint, RoundTripAndShapeErrors) {
  ModelConfig cfg = ModelConfig::preset("tiny");
  Model m(cfg);
  m.init(3);
  const std::string p = temp_path("ck.safetensors");
  save_checkpoint(p, m, "bytes");
  Checkpoint info;
  Model back = load_checkpoint(p, &info);
  EXPECT_EQ(back.weights(), m.weights());
  EXPECT_EQ(info.tokenizer, "bytes");
  EXPECT_EQ(info.config.to_json(), cfg.to_json());

  ModelConfig other = cfg;
  other.d_emb = 48;
  Model wrong(other);
  try {
    load_weights(p, wrong);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(
                  "'embed.weight' has shape [256, 32], the model expects [256, 48]"),
              std::string::npos)
        << e.what();
  }
  // A state_dict without configuration needs one given.
  std::vector<io::TensorRef> refs;
  for (const auto& pi : m.layout().params())
    refs.push_back({pi.name, pi.shape, m.weights().data() + pi.offset});
  const std::string bare = temp_path("bare.safetensors");
  io::write_safetensors(bare, refs, {});
  EXPECT_THROW(load_checkpoint(bare), Error);
  const std::string cfg_path = temp_path("cfg.json");
  { std::ofstream(cfg_path) << cfg.to_json().dump(); }
  EXPECT_EQ(load_checkpoint(bare, nullptr, cfg_path).weights(), m.weights());
  // A missing tensor, and an unexpected one.
  refs.pop_back();
  io::write_safetensors(bare, refs, {{"config", cfg.to_json().dump()}});
  EXPECT_THROW(load_checkpoint(bare), Error);
  for (const auto& f : {p, bare, cfg_path}) std::filesystem::remove(f);
}

TEST(Config, PresetsAndBadJson) {
  EXPECT_EQ(ModelConfig::preset("paper").parameter_count(),
            ModelConfig::preset("paper").parameter_count());
  EXPECT_THROW(ModelConfig::preset("huge"), Error);
  EXPECT_THROW(ModelConfig::from_json({{"d_emb", -3}}), Error);
  EXPECT_THROW(ModelConfig::from_json({{"d_model", 64}}), Error);
  EXPECT_THROW(ModelConfig::from_json({{"d_emb", "64"}}), Error);
  EXPECT_EQ(ModelConfig::from_json({{"vocab_sz", 50304}}).vocab, 50304);
  // The paper's configuration has about 125M parameters.
  const int64_t n = ModelConfig::preset("paper").parameter_count();
  EXPECT_GT(n, 120'000'000);
  EXPECT_LT(n, 130'000'000);
  Model small(ModelConfig::preset("small"));
  EXPECT_EQ(small.layout().total(), ModelConfig::preset("small").parameter_count());
}

}  // namespace
}  // namespace logattn::model
