// Writes what the PyTorch parity test (tests/python/test_model_torch.py) compares: a tiny
// model's checkpoint, a batch, logits, loss, every gradient and every stage's output (a
// Trace), the same for generation through the model's state (a prompt, then steps), and the
// losses, gradients and weights of 5 AdamW steps.
// Usage: dump_for_torch OUT_DIR [log|softmax]
#include <cstdio>
#include <deque>
#include <random>
#include <string>

#include "io/safetensors.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "train/adamw.h"

using namespace logattn;

int main(int argc, char** argv) {
  if (argc != 2 && argc != 3) {
    std::fprintf(stderr, "usage: dump_for_torch OUT_DIR [log|softmax]\n");
    return 2;
  }
  const std::string dir = argv[1];
  model::ModelConfig cfg = model::ModelConfig::preset("tiny");
  cfg.vocab = 61;  // not a power of two, and different from d_emb
  cfg.d_key = 6;   // d_key != d_val
  if (argc == 3) cfg.attention = model::parse_attention(argv[2], "dump_for_torch");
  model::Model m(cfg);
  m.init(7);
  // Larger log-value and query projections than the default init gives, so the attention
  // weights are far from uniform.
  for (int64_t l = 0; l < cfg.n_layers; ++l) {
    const auto& p = m.layout().layers[l];
    for (int64_t i = 0; i < cfg.proj_width() * cfg.d_emb; ++i) m.weights()[p.w1 + i] *= 4.f;
  }
  model::save_checkpoint(dir + "/model.safetensors", m, "bytes");

  const int64_t B = 3, T = 40;
  std::mt19937_64 rng(3);
  std::vector<int32_t> tok(B * T + 1);
  for (auto& t : tok) t = static_cast<int32_t>(rng() % cfg.vocab);
  std::vector<int32_t> x(tok.begin(), tok.end() - 1), y(tok.begin() + 1, tok.end());
  std::vector<float> xf(x.begin(), x.end()), yf(y.begin(), y.end());
  std::vector<float> logits(B * T * cfg.vocab);
  m.zero_grads();
  model::Trace trace, gen_trace;
  m.set_trace(&trace);
  const float loss =
      static_cast<float>(m.forward(x.data(), y.data(), B, T, true, 1.f, logits.data()));
  m.set_trace(&gen_trace);

  std::vector<io::TensorRef> out = {{"tokens", {B, T}, xf.data()},
                                    {"targets", {B, T}, yf.data()},
                                    {"logits", {B, T, cfg.vocab}, logits.data()},
                                    {"loss", {1}, &loss}};
  const std::vector<float> grads = m.grads();
  for (const auto& p : m.layout().params())
    out.push_back({"grad." + p.name, p.shape, grads.data() + p.offset});

  // Generation of sequence 0 through the model's state: a prompt of 20 tokens, then one
  // token at a time; the logits of positions 19 .. T-1.
  model::ModelState st = m.new_state(1);
  std::vector<float> gen((T - 19) * cfg.vocab);
  m.forward_with_state(x.data(), 1, 20, st, gen.data());
  for (int64_t t = 20; t < T; ++t)
    m.forward_with_state(x.data() + t, 1, 1, st, gen.data() + (t - 19) * cfg.vocab);
  out.push_back({"gen_logits", {T - 19, cfg.vocab}, gen.data()});
  m.set_trace(nullptr);
  for (auto [prefix, tr] : {std::pair{"trace.", &trace}, {"gen.", &gen_trace}})
    for (const auto& [name, v] : tr->values)
      out.push_back({prefix + name, {static_cast<int64_t>(v.size())}, v.data()});

  // 5 AdamW steps: each step's loss, gradients and the weights after it.
  train::AdamW opt(m.layout(), train::AdamWConfig{});
  std::vector<float> losses;
  std::deque<std::vector<float>> kept;
  for (int s = 0; s < 5; ++s) {
    m.zero_grads();
    losses.push_back(static_cast<float>(m.forward(x.data(), y.data(), B, T, true)));
    opt.update(m.weights().data(), m.grads().data(), 1e-2);
    const auto& g = kept.emplace_back(m.grads());
    const auto& w = kept.emplace_back(m.weights());
    for (const auto& p : m.layout().params()) {
      const std::string step = "adam." + std::to_string(s) + ".";
      out.push_back({step + "grad." + p.name, p.shape, g.data() + p.offset});
      out.push_back({step + "weight." + p.name, p.shape, w.data() + p.offset});
    }
  }
  out.push_back({"adam_losses", {5}, losses.data()});
  io::write_safetensors(dir + "/outputs.safetensors", out, {});
  return 0;
}
