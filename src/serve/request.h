// OpenAI's wire formats, parsed and written in this one place: the bodies of completion and
// chat completion requests, checked (fields the server does not know are ignored, as clients
// send more than it uses; those it knows must have their type and range; those it knows but
// does not do are refused), and the responses, whole or as streamed chunks.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/chat_template.h"
#include "serve/engine.h"
#include "tokenizer/tokenizer.h"

namespace logattn::serve {

struct RequestLimits {
  int64_t max_tokens = 4096;          // the largest max_tokens a request may ask for
  int64_t max_prompt_tokens = 65536;  // longer prompts are refused
};

// Which of OpenAI's APIs a request came through: the engine answers both alike; the
// formats of their requests and responses differ.
enum class Api { kCompletions, kChat };

struct Completion {
  Api api = Api::kCompletions;
  std::string prompt;  // the text read (for chat, the messages through the template)
  int64_t n = 1;
  bool stream = false;
  bool include_usage = true;  // a usage chunk ends a stream (chat: stream_options.include_usage)
  Request req;                // the prompt's tokens, sampling, stop strings, conversation
};

// An error response's body: {"error": {"message", "type", "code": null}}, OpenAI's format.
std::string error_json(const std::string& message, const std::string& type);

// The error type OpenAI's clients expect for an HTTP status.
const char* error_type(int status);

// Throws logattn::Error with a message for the client (the server answers 400 with it).
Completion parse_completion(const std::string& body, const tokenizer::Tokenizer& tok,
                            const RequestLimits& limits);
// POST /v1/chat/completions: messages (system or developer, user, assistant; content a string
// or a list of text parts) made into text by the model's chat template, whose stop strings
// join the request's. With a conversation, only these messages are read.
Completion parse_chat_completion(const std::string& body, const tokenizer::Tokenizer& tok,
                                 const RequestLimits& limits, const model::ChatTemplate& tmpl);

// What every body and chunk of one response repeats.
struct ResponseHead {
  Api api = Api::kCompletions;
  std::string id;  // "cmpl-..." or "chatcmpl-..."
  int64_t created = 0;
  std::string model;
  std::string conversation;  // empty: none
};
struct Usage {
  int64_t prompt_tokens = 0, completion_tokens = 0;
};
// A token's log-probability as a client sees it: the token's text (its bytes) and the most
// likely alternatives'.
struct LogprobEntry {
  std::string token;
  float logprob = 0;
  std::vector<std::pair<std::string, float>> top;
};
struct Choice {
  std::string text, finish_reason;
  bool with_logprobs = false;
  std::vector<LogprobEntry> logprobs;
};

// A whole response: text_completion or chat.completion.
std::string response_json(const ResponseHead& head, const std::vector<Choice>& choices,
                          const Usage& usage);
// A streamed event's data: a piece of choice index's text; finish_reason on its last (empty
// before); first: chat's first chunk of a choice, which names the role; logprobs (when asked
// for) of the tokens since the previous chunk, the first of them at text_offset in the
// choice's text.
std::string chunk_json(const ResponseHead& head, size_t index, const std::string& text,
                       const std::string& finish_reason, bool first,
                       const std::vector<LogprobEntry>* logprobs = nullptr, size_t text_offset = 0);
// The usage chunk that ends a stream.
std::string usage_chunk_json(const ResponseHead& head, const Usage& usage);

// The conversation endpoints' bodies. A conversation: id, title, turn, tokens (null when not
// read since the server started), the kept turns with their tokens, in_memory, state_bytes,
// and kv_cache_bytes (what a key/value cache of this model would hold at that length).
std::string conversation_json(const ConversationInfo& c, int64_t state_bytes,
                              int64_t kv_bytes_per_token);
// GET .../messages: each turn's text ({"turn", "user", "assistant"}), oldest first.
std::string turn_texts_json(const std::vector<ConversationStore::TurnText>& texts);
// The body of a rename: {"title": "..."}.
std::string parse_title(const std::string& body);
std::string conversation_list_json(const std::vector<ConversationInfo>& list);
// The body of a fork or rewind: {"turn": K}, K >= 0; an empty body or none: -1 when the
// turn may be left out (fork: the latest), else an error.
int64_t parse_turn(const std::string& body, bool required);

}  // namespace logattn::serve
