#include "generate/generator.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <utility>

#include "io/json.h"
#include "io/safetensors.h"
#include "logattn/error.h"
#include "threading/parallel.h"
#include "util/checked.h"

namespace logattn::generate {

Generator::Generator(model::Model& model)
    : model_(model), state_(model.new_state(1)), logits_(model.config().vocab, 0.f) {}

void Generator::feed(std::span<const int32_t> tokens, int64_t piece) {
  read_prompt(tokens, piece, nullptr, 0);
}

void Generator::feed(std::span<const int32_t> tokens, int64_t piece, std::vector<TokenLogprob>& out,
                     int64_t top) {
  read_prompt(tokens, piece, &out, top);
}

void Generator::read_prompt(std::span<const int32_t> tokens, int64_t piece,
                            std::vector<TokenLogprob>* out, int64_t top) {
  if (tokens.empty()) throw Error("generate: nothing to read (an empty prompt)");
  if (piece < 1 || piece % model::Model::kPromptBlock != 0)
    throw Error("generate: a prompt's pieces must be a multiple of " +
                std::to_string(model::Model::kPromptBlock) + " tokens");
  const int64_t V = model_.config().vocab;
  std::vector<float> logits;  // every position's, when scoring
  for (size_t i = 0; i < tokens.size(); i += static_cast<size_t>(piece)) {
    const int64_t n = std::min<int64_t>(piece, static_cast<int64_t>(tokens.size() - i));
    if (out) {
      // The piece's first token, from what came before it.
      if (state_.tokens == 0) {
        TokenLogprob none;
        none.token = tokens[i];
        none.logprob = NAN;
        out->push_back(std::move(none));
      } else {
        out->push_back(token_logprob(logits_.data(), V, tokens[i], top));
      }
      logits.resize(static_cast<size_t>(n * V));
    }
    model_.forward_with_state(tokens.data() + i, 1, n, state_, logits_.data(),
                              model::Model::Reading::kPrompt, out ? logits.data() : nullptr);
    if (out)
      for (int64_t t = 1; t < n; ++t)
        out->push_back(token_logprob(logits.data() + (t - 1) * V, V, tokens[i + t], top));
  }
}

int32_t Generator::next(const SampleOptions& opt, uint64_t& rng_state) {
  if (state_.tokens == 0) throw Error("generate: feed a prompt first");
  const int32_t t = pick_token(logits_.data(), model_.config().vocab, opt, rng_state);
  model_.forward_with_state(&t, 1, 1, state_, logits_.data());
  return t;
}

void Generator::restore(const Snapshot& s) {
  if (s.state.batch != 1 || s.state.layers.size() != state_.layers.size() ||
      s.state.h.size() != state_.h.size() || s.logits.size() != logits_.size())
    throw Error("generate: a snapshot of another model or batch");
  state_ = s.state;
  logits_ = s.logits;
}

void Generator::save(const std::string& path) const {
  io::write_file_atomic(path, bytes());
}

std::string Generator::bytes() const {
  const auto& cfg = model_.config();
  if (cfg.attention != model::AttentionKind::kLog)
    throw Error("generate: saving the softmax twin's key/value cache is not supported");
  std::vector<io::TensorRef> refs;
  std::vector<std::string> names;
  for (size_t l = 0; l < state_.layers.size(); ++l) {
    const auto& a = state_.layers[l];
    refs.push_back({"layers." + std::to_string(l) + ".attention",
                    {a.batch(), a.heads(), a.floats_per_head()},
                    a.data().data()});
  }
  refs.push_back({"embed_pos.h", {state_.batch, cfg.d_emb}, state_.h.data()});
  refs.push_back({"logits", {state_.batch, cfg.vocab}, logits_.data()});
  return io::safetensors_bytes(refs, {{"format", kStateFormat},
                                      {"format_version", std::to_string(kStateVersion)},
                                      {"config", cfg.to_json().dump()},
                                      {"tokens", std::to_string(state_.tokens)}});
}

void Generator::load(const std::string& path) {
  load_from(io::SafeTensors::read(path));
}

void Generator::load(std::string_view bytes, const std::string& name) {
  load_from(io::SafeTensors::parse(bytes, name));
}

void Generator::load_from(const io::SafeTensors& st) {
  const std::string& path = st.path();
  auto get = [&](const char* k) { return st.required_metadata(k, "state file"); };
  if (get("format") != kStateFormat) throw Error("state file " + path + " is not a logattn state");
  if (get("format_version") != std::to_string(kStateVersion))
    throw Error("state file " + path + " has format version " + get("format_version") +
                "; this logattn reads version " + std::to_string(kStateVersion));
  if (io::parse_json(get("config"), "state file " + path + ": metadata 'config'") !=
      model_.config().to_json())
    throw Error("state file " + path + " is for another model (configuration " + get("config") +
                ")");
  model::ModelState s = model_.new_state(1);
  auto fill = [&](const std::string& name, std::span<float> dst) {
    const auto x = st.floats(name);  // throws if absent
    if (x.size() != dst.size())
      throw Error("state file " + path + ": '" + name + "' has " + std::to_string(x.size()) +
                  " values, expected " + std::to_string(dst.size()));
    for (float v : x)
      if (std::isnan(v) || v == INFINITY)
        throw Error("state file " + path + ": '" + name + "' has NaN or +inf");
    std::copy(x.begin(), x.end(), dst.begin());
  };
  for (size_t l = 0; l < s.layers.size(); ++l)
    fill("layers." + std::to_string(l) + ".attention", s.layers[l].data());
  fill("embed_pos.h", s.h);
  std::vector<float> logits(model_.config().vocab);
  fill("logits", logits);
  s.tokens = util::parse_integer(get("tokens"), 1, util::kMaxCount,
                                 "state file " + path + ": metadata 'tokens'");
  for (auto& a : s.layers) a.set_tokens(s.tokens);
  state_ = std::move(s);
  logits_ = std::move(logits);
}

void Generator::step_together(const std::vector<Generator*>& gens,
                              const std::vector<int32_t>& tokens, Batch& batch) {
  const int64_t B = static_cast<int64_t>(gens.size());
  if (B == 0) return;
  if (static_cast<int64_t>(tokens.size()) != B)
    throw Error("generate: step_together needs one token per generator");
  model::Model& model = gens[0]->model_;
  for (const Generator* g : gens)
    if (&g->model_ != &model) throw Error("generate: step_together needs generators of one model");
  if (B == 1) {
    model.forward_with_state(tokens.data(), 1, 1, gens[0]->state_, gens[0]->logits_.data());
    return;
  }
  if (model.config().attention != model::AttentionKind::kLog)
    throw Error("generate: batched steps need log-attention's constant-size states");
  const int64_t V = model.config().vocab;
  if (batch.state.batch != B) batch.state = model.new_state(B);
  batch.logits.resize(static_cast<size_t>(B * V));
  // The sequences' states copied in and out on OpenMP's threads: megabytes each for the
  // paper preset, a memory-bound copy that one thread does at a fraction of the bandwidth.
  // (The states are one model's, one sequence each: the copies cannot throw.)
  const int64_t work = B * gens[0]->state_.bytes() / static_cast<int64_t>(sizeof(float));
  parallel_for(B, work, [&](int64_t i) { batch.state.gather(gens[i]->state_, i); });
  model.forward_with_state(tokens.data(), B, 1, batch.state, batch.logits.data());
  parallel_for(B, work, [&](int64_t i) {
    Generator& g = *gens[i];
    batch.state.scatter(i, g.state_);
    g.state_.tokens += 1;
    for (auto& a : g.state_.layers) a.set_tokens(a.tokens() + 1);
    std::copy(batch.logits.begin() + i * V, batch.logits.begin() + (i + 1) * V, g.logits_.begin());
  });
}

std::vector<std::vector<int32_t>> generate_batch(model::Model& model,
                                                 const std::vector<std::vector<int32_t>>& prompts,
                                                 int64_t n, const SampleOptions& opt,
                                                 uint64_t seed) {
  const int64_t B = static_cast<int64_t>(prompts.size());
  if (B == 0) throw Error("generate: no prompts");
  const int64_t V = model.config().vocab;
  model::ModelState batch = model.new_state(B);
  std::vector<float> logits(B * V);
  for (int64_t i = 0; i < B; ++i) {
    if (prompts[i].empty()) throw Error("generate: prompt " + std::to_string(i + 1) + " is empty");
    Generator g(model);
    g.feed(prompts[i]);
    const model::ModelState& one = g.state();
    batch.gather(one, i);
    for (size_t l = 0; l < batch.layers.size(); ++l)
      batch.layers[l].set_tokens(std::max(batch.layers[l].tokens(), one.layers[l].tokens()));
    std::copy(g.last_logits().begin(), g.last_logits().end(), logits.begin() + i * V);
    batch.tokens = std::max(batch.tokens, one.tokens);
  }
  std::vector<uint64_t> rng(B);
  for (int64_t i = 0; i < B; ++i) rng[i] = seed + static_cast<uint64_t>(i);
  std::vector<std::vector<int32_t>> out(B);
  std::vector<int32_t> next(B);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t i = 0; i < B; ++i) {
      next[i] = pick_token(logits.data() + i * V, V, opt, rng[i]);
      out[i].push_back(next[i]);
    }
    if (t + 1 < n) model.forward_with_state(next.data(), B, 1, batch, logits.data());
  }
  return out;
}

}  // namespace logattn::generate
