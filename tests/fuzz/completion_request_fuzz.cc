// Completion and chat completion requests' bodies (OpenAI's JSON, from any client): any bytes
// give a request within the server's limits or a clear refusal; the first byte picks the API.
#include <cstdlib>

#include "fuzz_util.h"
#include "serve/request.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto tok = logattn::tokenizer::load_tokenizer("bytes", "");
  logattn::fuzz::read_or_refuse([&] {
    if (size == 0) return;
    const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
    static const auto chat = logattn::model::ChatTemplate::plain();
    const auto c = data[0] & 1 ? logattn::serve::parse_chat_completion(body, *tok, {64, 256}, chat)
                               : logattn::serve::parse_completion(body, *tok, {64, 256});
    const auto& r = c.req;
    if (r.max_tokens < (r.echo ? 0 : 1) || r.max_tokens > 64 || r.prompt.size() > 256 || c.n < 1 ||
        c.n > 16 || r.stop.size() > 4 + chat.stop.size() || r.logprobs < -1 || r.logprobs > 20 ||
        !(r.sample.temperature >= 0) || !(r.sample.top_p > 0) || r.sample.top_p > 1 ||
        r.sample.top_k < 0 ||
        (!r.conversation.empty() && !logattn::serve::ConversationStore::valid_id(r.conversation)))
      std::abort();  // a request past the limits got through
  });
  return 0;
}
