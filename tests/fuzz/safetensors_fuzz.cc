// safetensors: header length, JSON header, dtypes, shapes, offsets, metadata, data.
#include "fuzz_util.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const logattn::fuzz::MemFile f(data, size);
  logattn::fuzz::read_or_refuse([&] {
    const auto st = logattn::io::SafeTensors::read(f.path());
    for (const auto& [name, info] : st.tensors())
      if (info.dtype == "F32" || info.dtype == "F16" || info.dtype == "BF16" || info.dtype == "F64")
        st.floats(name);
  });
  return 0;
}
