// Token .bin files (little-endian uint16 ids): mapped, sized, sampled.
#include "fuzz_util.h"
#include "train/data.h"

using namespace logattn;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const fuzz::MemFile f(data, size);
  fuzz::read_or_refuse([&] {
    train::TokenFile tf(f.path());
    if (tf.size() < 9) return;
    train::BatchSampler sampler(tf, 8, size);
    int32_t x[16], y[16];
    sampler.next(2, x, y);
  });
  return 0;
}
