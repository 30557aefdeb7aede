#include "model/quantize.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "logattn/error.h"
#include "threading/parallel.h"

namespace logattn::model {

Model quantize_model(const Model& m, ops::WeightType type) {
  if (m.weight_type() != ops::WeightType::kF32)
    throw Error(std::string("quantize: the model's weights are already ") +
                ops::weight_type_name(m.weight_type()) + "; quantize its float32 checkpoint");
  if (type == ops::WeightType::kF32)
    throw Error("quantize: give a type to convert to (bf16, q8_0)");
  Model q(m.config(), type);
  const auto& from = m.layout().params();
  const auto& to = q.layout().params();
  for (size_t i = 0; i < from.size(); ++i) {
    const float* src = m.weights().data() + from[i].offset;
    const int64_t n = from[i].size, off = to[i].offset;
    if (!to[i].matrix) {
      std::copy(src, src + n, q.weights().begin() + off);
    } else if (type == ops::WeightType::kBF16) {
      uint16_t* dst = q.bf16_store().data() + off;
      parallel_for(n, n, [&](int64_t j) { dst[j] = ops::to_bf16(src[j]); });
      // bf16 keeps float32's exponent but rounds the mantissa: values within half a bf16 step
      // of float32's largest round to infinity, which no checkpoint may hold.
      for (int64_t j = 0; j < n; ++j)
        if (!std::isfinite(ops::from_bf16(dst[j])))
          throw Error("quantize: " + from[i].name + " holds " + std::to_string(src[j]) +
                      " at element " + std::to_string(j) +
                      ", which bf16 rounds to infinity: the bf16 checkpoint could not be "
                      "loaded; use --type q8_0, or keep float32");
    } else {
      const int64_t rows = to[i].shape[0], cols = to[i].shape[1];
      parallel_for(rows, n, [&](int64_t r) {
        ops::quantize_q8_0(1, cols, src + r * cols, q.q8_store().data() + off + r * cols,
                           q.q8_scales().data() + (off + r * cols) / ops::kQ8Block);
      });
    }
  }
  return q;
}

}  // namespace logattn::model
