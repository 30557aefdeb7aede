#include "model/params.h"

#include <cmath>
#include <random>

#include "logattn/error.h"

namespace logattn::model {

int64_t ParamLayout::add(std::string name, std::vector<int64_t> shape, bool decay) {
  ParamInfo p;
  p.name = std::move(name);
  p.shape = std::move(shape);
  p.size = 1;
  for (int64_t d : p.shape) p.size *= d;
  p.decay = decay;
  p.matrix = p.shape.size() == 2;
  int64_t& end = matrices_apart_ && p.matrix ? matrix_total_ : total_;
  p.offset = end;
  end += p.size;
  params_.push_back(p);
  return p.offset;
}

ParamLayout::ParamLayout(const ModelConfig& c, bool matrices_apart)
    : matrices_apart_(matrices_apart) {
  const int64_t E = c.d_emb, P = c.proj_width(), A = c.n_heads * c.d_val;
  embed = add("embed.weight", {c.vocab, E}, true);
  pos_w = add("embed_pos.dense.weight", {2 * E, E}, true);
  pos_b = add("embed_pos.dense.bias", {2 * E}, false);
  for (int64_t i = 0; i < c.n_layers; ++i) {
    const std::string p = "layers." + std::to_string(i) + ".";
    Layer l;
    l.ln_w = add(p + "feedforward1.0.weight", {E}, false);
    l.ln_b = add(p + "feedforward1.0.bias", {E}, false);
    l.w1 = add(p + "feedforward1.1.weight", {P, E}, true);
    l.b1 = add(p + "feedforward1.1.bias", {P}, false);
    l.w2 = add(p + "feedforward2.0.weight", {2 * E, A}, true);
    l.b2 = add(p + "feedforward2.0.bias", {2 * E}, false);
    l.w3 = add(p + "feedforward2.2.weight", {E, E}, true);
    l.end = total_;
    layers.push_back(l);
  }
  lnf_w = add("lnorm.weight", {E}, false);
  lnf_b = add("lnorm.bias", {E}, false);
}

const ParamInfo& ParamLayout::find(const std::string& name) const {
  for (const auto& p : params_)
    if (p.name == name) return p;
  throw Error("model has no parameter '" + name + "'");
}

std::string ParamLayout::name_of(int64_t index) const {
  for (const auto& p : params_)
    if (index >= p.offset && index < p.offset + p.size)
      return p.name + "[" + std::to_string(index - p.offset) + "]";
  return "index " + std::to_string(index);
}

void init_params(const ModelConfig& cfg, const ParamLayout& layout, uint64_t seed, float* w) {
  std::mt19937_64 rng(seed);
  auto uniform = [&](int64_t off, int64_t n, float bound) {
    std::uniform_real_distribution<float> dist(-bound, bound);
    for (int64_t i = 0; i < n; ++i) w[off + i] = dist(rng);
  };
  for (const auto& p : layout.params()) {
    const bool is_layernorm =
        p.shape.size() == 1 &&
        (p.name.find("feedforward1.0") != std::string::npos || p.name.rfind("lnorm.", 0) == 0);
    if (p.name == "embed.weight") {
      uniform(p.offset, p.size, 1.f / std::sqrt(static_cast<float>(cfg.d_emb)));
    } else if (is_layernorm) {
      const float v = p.name.size() >= 6 && p.name.compare(p.name.size() - 6, 6, "weight") == 0;
      for (int64_t i = 0; i < p.size; ++i) w[p.offset + i] = v;
    } else {
      // Linear weight [out, in] or bias [out]: fan_in is the weight's second dimension.
      const std::string wname =
          p.shape.size() == 2 ? p.name : p.name.substr(0, p.name.size() - 4) + "weight";
      const int64_t fan_in = layout.find(wname).shape[1];
      uniform(p.offset, p.size, 1.f / std::sqrt(static_cast<float>(fan_in)));
    }
  }
}

}  // namespace logattn::model
