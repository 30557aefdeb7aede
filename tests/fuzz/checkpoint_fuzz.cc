// Checkpoints: safetensors plus metadata (format, the configuration JSON, the tokenizer's
// name, the weights' type), the model that configuration describes, every tensor's name,
// dtype and shape (q8_0's scales too); a model that loads then takes a token through its
// products (the typed kernels on whatever values passed validation).
#include "fuzz_util.h"
#include "model/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const logattn::fuzz::MemFile f(data, size);
  logattn::fuzz::read_or_refuse([&] {
    logattn::model::Checkpoint info;
    auto m = logattn::model::load_checkpoint(f.path(), &info);
    auto state = m.new_state(1);
    std::vector<float> logits(m.config().vocab);
    const int32_t token = 0;
    m.forward_with_state(&token, 1, 1, state, logits.data());
  });
  return 0;
}
