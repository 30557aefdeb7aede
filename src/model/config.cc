#include "model/config.h"

#include "logattn/error.h"

namespace logattn::model {

const char* attention_name(AttentionKind kind) {
  switch (kind) {
    case AttentionKind::kLog:
      return "log";
    case AttentionKind::kSoftmax:
      return "softmax";
  }
  return "?";
}

AttentionKind parse_attention(const std::string& name, const std::string& what) {
  if (name == "log") return AttentionKind::kLog;
  if (name == "softmax") return AttentionKind::kSoftmax;
  throw Error(what + ": attention '" + name + "' is neither 'log' nor 'softmax'");
}

ModelConfig ModelConfig::preset(const std::string& name) {
  ModelConfig c;
  if (name == "paper") {
    c = {50304, 768, 24, 24, 32, 32, 1024};
  } else if (name == "small") {
    c = {256, 256, 4, 8, 32, 32, 256};
  } else if (name == "tiny") {
    c = {256, 32, 2, 2, 8, 8, 32};
  } else {
    throw Error("unknown model preset '" + name + "' (known: paper, small, tiny)");
  }
  return c;
}

nlohmann::json ModelConfig::to_json() const {
  return {{"attention", attention_name(attention)},
          {"vocab", vocab},
          {"d_emb", d_emb},
          {"n_layers", n_layers},
          {"n_heads", n_heads},
          {"d_key", d_key},
          {"d_val", d_val},
          {"context", context}};
}

ModelConfig ModelConfig::from_json(const nlohmann::json& j) {
  if (!j.is_object()) throw Error("model configuration: expected a JSON object");
  ModelConfig c;
  // The reference's ModelConfig names vocab "vocab_sz": accept both.
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    if (k == "attention") {
      if (!it->is_string()) throw Error("model configuration: 'attention' must be a string");
      c.attention = parse_attention(it->get<std::string>(), "model configuration");
      continue;
    }
    if (!it->is_number_integer())
      throw Error("model configuration: '" + k + "' must be an integer");
    const int64_t v = it->get<int64_t>();
    if (k == "vocab" || k == "vocab_sz")
      c.vocab = v;
    else if (k == "d_emb")
      c.d_emb = v;
    else if (k == "n_layers")
      c.n_layers = v;
    else if (k == "n_heads")
      c.n_heads = v;
    else if (k == "d_key")
      c.d_key = v;
    else if (k == "d_val")
      c.d_val = v;
    else if (k == "context")
      c.context = v;
    else
      throw Error("model configuration: unknown key '" + k + "'");
  }
  c.validate();
  return c;
}

void ModelConfig::validate() const {
  auto need = [](const char* name, int64_t v, int64_t lo, int64_t hi) {
    if (v < lo || v > hi)
      throw Error(std::string("model configuration: ") + name + " = " + std::to_string(v) +
                  " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  };
  need("vocab", vocab, 2, 1 << 22);
  need("d_emb", d_emb, 1, 1 << 16);
  need("n_layers", n_layers, 0, 1024);
  need("n_heads", n_heads, 1, 1024);
  need("d_key", d_key, 1, 4096);
  need("d_val", d_val, 1, 4096);
  need("context", context, 1, 1 << 24);
  // Each size above is in range, so the count fits int64; the model must fit a machine.
  constexpr int64_t kMaxParameters = int64_t{1} << 34;
  if (parameter_count() > kMaxParameters)
    throw Error("model configuration: " + std::to_string(parameter_count()) +
                " parameters is more than " + std::to_string(kMaxParameters));
}

int64_t ModelConfig::parameter_count() const {
  const int64_t E = d_emb, P = proj_width(), A = n_heads * d_val;
  const int64_t layer = 2 * E + P * E + P + 2 * E * A + 2 * E + E * E;
  return vocab * E + 2 * E * E + 2 * E + n_layers * layer + 2 * E;
}

}  // namespace logattn::model
