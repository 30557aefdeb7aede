// The language model's configuration (docs/design.md section 2), presets and JSON form.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace logattn::model {

// The attention of every layer: the paper's log-attention, or the conventional twin (scaled
// dot products, values exp(log v), log of the output), the baseline for comparisons.
enum class AttentionKind { kLog, kSoftmax };

// "log" / "softmax", as configurations, checkpoints and --attention write them.
const char* attention_name(AttentionKind kind);
// Throws logattn::Error naming `what` for any other name.
AttentionKind parse_attention(const std::string& name, const std::string& what);

struct ModelConfig {
  int64_t vocab = 256;  // byte-level until the GPT-2 tokenizer exists
  int64_t d_emb = 256;
  int64_t n_layers = 4;
  int64_t n_heads = 8;
  int64_t d_key = 32;
  int64_t d_val = 32;
  int64_t context = 256;  // training context (generation has no limit)
  AttentionKind attention = AttentionKind::kLog;

  // "paper" (the reference's 125M configuration), "small" (trains on 2 CPU cores in
  // minutes), "tiny" (tests). Throws for an unknown name.
  static ModelConfig preset(const std::string& name);
  static ModelConfig from_json(const nlohmann::json& j);  // unknown keys are errors
  nlohmann::json to_json() const;
  void validate() const;  // throws logattn::Error naming the bad field
  int64_t proj_width() const { return n_heads * (2 * d_key + d_val); }
  int64_t parameter_count() const;
};

}  // namespace logattn::model
