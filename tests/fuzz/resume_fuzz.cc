// Resume files (weights, AdamW's moments, the sampler's state, the step, the configurations
// they were written with) and log.jsonl, for the micro model of the seeds.
#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "model/model.h"
#include "train/resume.h"

using namespace logattn;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const model::ModelConfig cfg =
      model::ModelConfig::from_json(nlohmann::json::parse(fuzz::kMicroConfig));
  static const uint8_t tokens[64] = {};
  static const fuzz::MemFile token_file(tokens, sizeof tokens);
  train::TrainConfig c;  // as tests/fuzz/make_seeds.sh trains
  c.batch = 2, c.context = 8, c.steps = 2, c.warmup = 0, c.eval_every = 1, c.eval_batches = 1;
  static const nlohmann::json train_config = train::train_config_json(c, "bytes");
  const fuzz::MemFile f(data, size);
  fuzz::read_or_refuse([&] {
    model::Model m(cfg);
    train::AdamW opt(m.layout(), train::AdamWConfig{});
    train::TokenFile tf(token_file.path());
    train::BatchSampler sampler(tf, 8, 0);
    train::load_resume(f.path(), m, opt, sampler, train_config);
  });
  fuzz::read_or_refuse([&] { train::read_log(f.path(), 1000); });
  return 0;
}
