// `logattn quantize`: a checkpoint whose weight matrices are stored as q8_0 or bf16, for
// generation and evaluation at a quarter (a half) of float32's memory traffic.
#include <fmt/format.h>

#include <filesystem>

#include "cli/commands.h"
#include "cli/options.h"
#include "logattn/error.h"
#include "model/checkpoint.h"
#include "model/quantize.h"

namespace logattn::cli {

namespace {

struct QuantizeConfig {
  std::string model;
  std::string config;
  std::string out;
  std::string type = "q8_0";
};

int run_quantize(const QuantizeConfig& c) {
  if (c.model.empty() || c.out.empty()) throw Error("quantize: --model and --out are required");
  const ops::WeightType type = ops::parse_weight_type(c.type, "quantize: --type");
  if (type == ops::WeightType::kF32)
    throw Error("quantize: --type f32 is the float32 checkpoint itself; give bf16 or q8_0");
  std::error_code ec;
  if (std::filesystem::equivalent(c.model, c.out, ec))
    throw Error("quantize: --out " + c.out + " is --model itself; write to another file");
  model::Checkpoint info;
  const model::Model m = model::load_checkpoint(c.model, &info, c.config);
  const model::Model q = model::quantize_model(m, type);
  // The source's metadata travels along; the checkpoint writer sets its own keys over it
  // (format, configuration, tokenizer, weight type).
  std::map<std::string, std::string> extra = info.metadata;
  extra["quantized_from"] = std::filesystem::path(c.model).filename().string();
  model::save_checkpoint(c.out, q, info.tokenizer, extra);
  const double in_mb = static_cast<double>(std::filesystem::file_size(c.model)) / 1e6;
  const double out_mb = static_cast<double>(std::filesystem::file_size(c.out)) / 1e6;
  fmt::print("logattn quantize: {} ({:.1f} MB, f32) -> {} ({:.1f} MB, {}), {} parameters\n",
             c.model, in_mb, c.out, out_mb, ops::weight_type_name(type),
             m.config().parameter_count());
  return 0;
}

}  // namespace

Runner add_quantize_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "quantize", "Store a checkpoint's weight matrices as q8_0 or bf16 (for generate, eval)");
  auto cfg = std::make_shared<QuantizeConfig>();
  auto table = std::make_shared<OptionTable>();
  table->add("--model", &cfg->model, "float32 checkpoint (.safetensors)")
      .add("--config", &cfg->config, "JSON model configuration, for checkpoints without one")
      .add("--out", &cfg->out, "the quantized checkpoint to write")
      .add("--type", &cfg->type, "q8_0 (int8 in blocks of 32 with a float32 scale each) or bf16");
  table->attach(cmd);
  return [cfg, cmd] { return cmd->parsed() ? run_quantize(*cfg) : -1; };
}

}  // namespace logattn::cli
