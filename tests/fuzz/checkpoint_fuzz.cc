// Checkpoints: safetensors plus metadata (format, the configuration JSON, the tokenizer's
// name), the model that configuration describes, every tensor's name and shape.
#include "fuzz_util.h"
#include "model/checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const logattn::fuzz::MemFile f(data, size);
  logattn::fuzz::read_or_refuse([&] {
    logattn::model::Checkpoint info;
    logattn::model::load_checkpoint(f.path(), &info);
  });
  return 0;
}
