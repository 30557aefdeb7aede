// The language model's configuration (DESIGN.md section 2), presets and JSON form.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace logattn::model {

struct ModelConfig {
  int64_t vocab = 256;  // byte-level until the GPT-2 tokenizer exists
  int64_t d_emb = 256;
  int64_t n_layers = 4;
  int64_t n_heads = 8;
  int64_t d_key = 32;
  int64_t d_val = 32;
  int64_t context = 256;  // training context (generation has no limit)
  // "log": the paper's log-attention; "softmax": the conventional twin (scaled dot products,
  // values exp(log v), log of the output), the baseline for comparisons.
  std::string attention = "log";

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
