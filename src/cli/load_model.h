// A checkpoint's model with its tokenizer, for the commands that generate text.
#pragma once

#include <memory>
#include <string>
#include <utility>

#include "model/checkpoint.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace logattn::cli {

// The model of the checkpoint at path (config_json for one without a configuration) and the
// tokenizer its metadata names (GPT-2's files from gpt2_dir); the tokenizer's ids must fit
// the model's vocabulary. `what` names the command in errors.
std::pair<model::Model, std::unique_ptr<tokenizer::Tokenizer>> load_model_and_tokenizer(
    const std::string& what, const std::string& path, const std::string& config_json,
    const std::string& gpt2_dir, model::Checkpoint* info = nullptr);

}  // namespace logattn::cli
