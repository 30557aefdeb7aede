#include "generate/generator.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "logattn/error.h"

namespace logattn::generate {

Generator::Generator(model::Model& model)
    : model_(model), state_(model.new_state(1)), logits_(model.config().vocab, 0.f) {}

void Generator::feed(const std::vector<int32_t>& tokens, int64_t piece) {
  if (tokens.empty()) throw Error("generate: nothing to read (an empty prompt)");
  for (size_t i = 0; i < tokens.size(); i += static_cast<size_t>(piece)) {
    const int64_t n = std::min<int64_t>(piece, static_cast<int64_t>(tokens.size() - i));
    model_.forward_with_state(tokens.data() + i, 1, n, state_, logits_.data());
  }
}

int32_t Generator::next(const SampleOptions& opt, uint64_t& rng_state) {
  if (state_.tokens == 0) throw Error("generate: feed a prompt first");
  const int32_t t = pick_token(logits_.data(), model_.config().vocab, opt, rng_state);
  model_.forward_with_state(&t, 1, 1, state_, logits_.data());
  return t;
}

void Generator::save(const std::string& path) const {
  const auto& cfg = model_.config();
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
  io::write_safetensors(path, refs,
                        {{"format", kStateFormat},
                         {"format_version", std::to_string(kStateVersion)},
                         {"config", cfg.to_json().dump()},
                         {"tokens", std::to_string(state_.tokens)}});
}

void Generator::load(const std::string& path) {
  const auto st = io::SafeTensors::read(path);
  const auto& meta = st.metadata();
  auto get = [&](const char* k) {
    auto it = meta.find(k);
    if (it == meta.end())
      throw Error("state file " + path + " lacks '" + k + "': not a logattn state");
    return it->second;
  };
  if (get("format") != kStateFormat) throw Error("state file " + path + " is not a logattn state");
  if (get("format_version") != std::to_string(kStateVersion))
    throw Error("state file " + path + " has format version " + get("format_version") +
                "; this logattn reads version " + std::to_string(kStateVersion));
  if (nlohmann::json::parse(get("config")) != model_.config().to_json())
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
  s.tokens = std::stoll(get("tokens"));
  if (s.tokens < 1) throw Error("state file " + path + " holds no tokens");
  for (auto& a : s.layers) a.set_tokens(s.tokens);
  state_ = std::move(s);
  logits_ = std::move(logits);
}

}  // namespace logattn::generate
