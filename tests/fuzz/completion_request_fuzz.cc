// Completion requests' bodies (OpenAI's JSON, from any client): any bytes give a request
// within the server's limits or a clear refusal.
#include <cstdlib>

#include "fuzz_util.h"
#include "serve/request.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto tok = logattn::tokenizer::load_tokenizer("bytes", "");
  logattn::fuzz::read_or_refuse([&] {
    const std::string body(reinterpret_cast<const char*>(data), size);
    const auto c = logattn::serve::parse_completion(body, *tok, {64, 256});
    const auto& r = c.req;
    if (r.max_tokens < 1 || r.max_tokens > 64 || r.prompt.size() > 256 || c.n < 1 || c.n > 16 ||
        r.stop.size() > 4 || !(r.sample.temperature >= 0) || !(r.sample.top_p > 0) ||
        r.sample.top_p > 1 || r.sample.top_k < 0 ||
        (!r.conversation.empty() && !logattn::serve::Engine::valid_id(r.conversation)))
      std::abort();  // a request past the limits got through
  });
  return 0;
}
