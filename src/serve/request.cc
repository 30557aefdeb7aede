#include "serve/request.h"

#include <cmath>
#include <nlohmann/json.hpp>

#include "logattn/error.h"

namespace logattn::serve {

namespace {

using json = nlohmann::json;

int64_t integer(const json& j, const char* name, int64_t lo, int64_t hi) {
  if (!j.is_number_integer() &&
      !(j.is_number_float() && j.get<double>() == std::floor(j.get<double>())))
    throw Error(std::string("'") + name + "' must be an integer");
  const double v = j.get<double>();
  if (v < static_cast<double>(lo) || v > static_cast<double>(hi))
    throw Error(std::string("'") + name + "' must be in [" + std::to_string(lo) + ", " +
                std::to_string(hi) + "], got " + j.dump());
  return static_cast<int64_t>(v);
}

double number(const json& j, const char* name, double lo, double hi) {
  if (!j.is_number()) throw Error(std::string("'") + name + "' must be a number");
  const double v = j.get<double>();
  if (!(v >= lo && v <= hi))
    throw Error(std::string("'") + name + "' must be in [" + json(lo).dump() + ", " +
                json(hi).dump() + "], got " + j.dump());
  return v;
}

}  // namespace

std::string error_json(const std::string& message, const std::string& type) {
  const json j = {{"error", {{"message", message}, {"type", type}, {"code", nullptr}}}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

const char* error_type(int status) {
  return status == 429   ? "rate_limit_exceeded"
         : status >= 500 ? "server_error"
                         : "invalid_request_error";
}

Completion parse_completion(const std::string& body, const tokenizer::Tokenizer& tok,
                            const RequestLimits& cfg) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    throw Error(std::string("the body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw Error("the body must be a JSON object");
  Completion c;
  c.req.max_tokens = 16;
  c.req.sample.temperature = 1.0;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    if (k == "prompt") {
      if (v.is_string()) {
        c.prompt = v.get<std::string>();
      } else if (v.is_array() && v.size() == 1 && v[0].is_string()) {
        c.prompt = v[0].get<std::string>();
      } else {
        throw Error("'prompt' must be a string (or an array of one string)");
      }
    } else if (k == "model") {
      if (!v.is_string()) throw Error("'model' must be a string");
    } else if (k == "max_tokens") {
      if (!v.is_null()) c.req.max_tokens = integer(v, "max_tokens", 1, cfg.max_tokens);
    } else if (k == "temperature") {
      if (!v.is_null()) c.req.sample.temperature = number(v, "temperature", 0, 100);
    } else if (k == "top_p") {
      if (!v.is_null()) c.req.sample.top_p = number(v, "top_p", 1e-9, 1);
    } else if (k == "top_k") {
      if (!v.is_null()) c.req.sample.top_k = integer(v, "top_k", 0, 1 << 30);
    } else if (k == "seed") {
      if (!v.is_null()) c.req.seed = static_cast<uint64_t>(integer(v, "seed", 0, int64_t{1} << 53));
    } else if (k == "n") {
      if (!v.is_null()) c.n = integer(v, "n", 1, 16);
    } else if (k == "stream") {
      if (!v.is_boolean() && !v.is_null()) throw Error("'stream' must be true or false");
      c.stream = v.is_boolean() && v.get<bool>();
    } else if (k == "stop") {
      if (v.is_string()) {
        c.req.stop = {v.get<std::string>()};
      } else if (v.is_array() && v.size() <= 4) {
        for (const auto& s : v) {
          if (!s.is_string()) throw Error("'stop' must be a string or up to 4 strings");
          c.req.stop.push_back(s.get<std::string>());
        }
      } else if (!v.is_null()) {
        throw Error("'stop' must be a string or up to 4 strings");
      }
      for (const auto& s : c.req.stop)
        if (s.empty()) throw Error("'stop' strings must not be empty");
    } else if (k == "conversation") {
      if (!v.is_string() || !Engine::valid_id(v.get<std::string>()))
        throw Error("'conversation' must be an id of 1 to 64 letters, digits, '-' or '_'");
      c.req.conversation = v.get<std::string>();
    } else if (k == "echo" || k == "logprobs" || k == "best_of" || k == "suffix") {
      const bool off = v.is_null() || (v.is_boolean() && !v.get<bool>()) ||
                       (k == "best_of" && v.is_number_integer() && v.get<int64_t>() == 1);
      if (!off) throw Error("'" + k + "' is not supported by this server");
    }
  }
  if (!j.contains("prompt") && c.req.conversation.empty()) throw Error("'prompt' is required");
  if (c.n > 1 && !c.req.conversation.empty())
    throw Error("'n' must be 1 in a conversation (one state continues)");
  c.req.prompt = tok.encode(c.prompt);
  if (static_cast<int64_t>(c.req.prompt.size()) > cfg.max_prompt_tokens)
    throw Error("the prompt has " + std::to_string(c.req.prompt.size()) +
                " tokens, over this server's limit of " + std::to_string(cfg.max_prompt_tokens));
  return c;
}

}  // namespace logattn::serve
