// Every stage's output as the model computed it, while a Trace is attached: what the
// PyTorch parity test (tests/python/test_model_torch.py) checks stage by stage against
// float64, each on the float32 inputs the model really had, and a record to debug with.
// Calls append: forward_with_state's prompt and steps concatenate along the tokens.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace logattn::model {

struct Trace {
  // name -> values, in the model's layout: "emb", "ul", "h", per layer l "x.l" (its input),
  // "xn.l", "proj.l", "a.l", "g.l", "glu.l", then "x_last", "xf", "logits"; backward:
  // "dlogits", "dxf", "dx.L" (into the last layer's output), per layer "dglu.l", "dg.l",
  // "da.l", "dproj.l", "dxn.l", "dx.l" (into its input), then "dul", "demb".
  std::map<std::string, std::vector<float>> values;

  void record(const std::string& name, const float* data, int64_t n) {
    auto& v = values[name];
    v.insert(v.end(), data, data + n);
  }
};

}  // namespace logattn::model
