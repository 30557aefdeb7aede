// A completion request's body (OpenAI's format), checked: fields the server does not know are
// ignored (clients send more than it uses), those it knows must have their type and range,
// those it knows but does not do are refused.
#pragma once

#include <cstdint>
#include <string>

#include "serve/engine.h"
#include "tokenizer/tokenizer.h"

namespace logattn::serve {

struct RequestLimits {
  int64_t max_tokens = 4096;          // the largest max_tokens a request may ask for
  int64_t max_prompt_tokens = 65536;  // longer prompts are refused
};

struct Completion {
  std::string prompt;
  int64_t n = 1;
  bool stream = false;
  Request req;  // the prompt's tokens, sampling, stop strings, conversation
};

// An error response's body: {"error": {"message", "type", "code": null}}, OpenAI's format.
std::string error_json(const std::string& message, const std::string& type);

// The error type OpenAI's clients expect for an HTTP status.
const char* error_type(int status);

// Throws logattn::Error with a message for the client (the server answers 400 with it).
Completion parse_completion(const std::string& body, const tokenizer::Tokenizer& tok,
                            const RequestLimits& limits);

}  // namespace logattn::serve
