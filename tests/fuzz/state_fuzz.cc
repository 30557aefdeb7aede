// Conversation-state files (logattn-state: attention states, the position recurrence, the
// last logits, the token count) for the micro model of the seeds.
#include <nlohmann/json.hpp>

#include "fuzz_util.h"
#include "generate/generator.h"

using namespace logattn;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static model::Model m(model::ModelConfig::from_json(nlohmann::json::parse(fuzz::kMicroConfig)));
  const fuzz::MemFile f(data, size);
  fuzz::read_or_refuse([&] {
    generate::Generator g(m);
    g.load(f.path());
    generate::SampleOptions greedy;
    greedy.temperature = 0;
    uint64_t rng = 0;
    g.next(greedy, rng);  // a loaded state must be usable
  });
  return 0;
}
