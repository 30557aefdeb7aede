// A model configuration in JSON (--model-config, --config, checkpoint metadata): parsed,
// validated, and the parameter layout it implies.
#include "fuzz_util.h"
#include "io/json.h"
#include "model/config.h"
#include "model/params.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  logattn::fuzz::read_or_refuse([&] {
    const auto j = logattn::io::parse_json(
        std::string_view(reinterpret_cast<const char*>(data), size), "model configuration");
    const auto cfg = logattn::model::ModelConfig::from_json(j);
    cfg.validate();
    logattn::model::ParamLayout(cfg).total();
  });
  return 0;
}
