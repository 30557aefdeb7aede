#include "serve/request.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

#include "io/json.h"
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

namespace {

json parse_object(const std::string& body) {
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception& e) {
    throw Error(std::string("the body is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) throw Error("the body must be a JSON object");
  return j;
}

// A field that must be absent, null, false (or 1 for best_of): what this server does not do.
void refuse_unless_off(const std::string& k, const json& v) {
  const bool off = v.is_null() || (v.is_boolean() && !v.get<bool>()) ||
                   (k == "best_of" && v.is_number_integer() && v.get<int64_t>() == 1) ||
                   ((k == "tools" || k == "functions") && v.is_array() && v.empty());
  if (!off) throw Error("'" + k + "' is not supported by this server");
}

// The fields both APIs share; false for a key that is not one of them.
bool common_field(const std::string& k, const json& v, Completion& c, const RequestLimits& cfg) {
  if (k == "model") {
    if (!v.is_string()) throw Error("'model' must be a string");
  } else if (k == "max_tokens") {
    if (!v.is_null()) c.req.max_tokens = integer(v, "max_tokens", 0, cfg.max_tokens);
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
    if (!v.is_string() || !ConversationStore::valid_id(v.get<std::string>()))
      throw Error("'conversation' must be an id of 1 to 64 letters, digits, '-' or '_'");
    c.req.conversation = v.get<std::string>();
  } else {
    return false;
  }
  return true;
}

// The prompt's tokens, within the limits.
void finish_request(Completion& c, const tokenizer::Tokenizer& tok, const RequestLimits& cfg) {
  if (c.req.max_tokens < 1 && !c.req.echo)
    throw Error("'max_tokens' must be at least 1 (0 only with echo: scoring a prompt)");
  if (c.n > 1 && !c.req.conversation.empty())
    throw Error("'n' must be 1 in a conversation (one state continues)");
  c.req.prompt = tok.encode(c.prompt);
  if (static_cast<int64_t>(c.req.prompt.size()) > cfg.max_prompt_tokens)
    throw Error("the prompt has " + std::to_string(c.req.prompt.size()) +
                " tokens, over this server's limit of " + std::to_string(cfg.max_prompt_tokens));
}

model::ChatMessage message(const json& m, size_t i) {
  const std::string at = "messages[" + std::to_string(i) + "]";
  if (!m.is_object()) throw Error("'" + at + "' must be an object with 'role' and 'content'");
  if (!m.contains("role") || !m["role"].is_string())
    throw Error("'" + at + ".role' must be system, user or assistant");
  const std::string role = m["role"].get<std::string>();
  model::ChatMessage out;
  // OpenAI's newer name for the system role is "developer".
  if (role == "system" || role == "developer")
    out.role = model::ChatRole::kSystem;
  else if (role == "user")
    out.role = model::ChatRole::kUser;
  else if (role == "assistant")
    out.role = model::ChatRole::kAssistant;
  else
    throw Error("'" + at + "': role '" + role +
                "' is not supported (system, developer, user, assistant)");
  if (!m.contains("content") || m["content"].is_null())
    throw Error("'" + at + "' needs a 'content': a string or a list of text parts");
  const json& content = m["content"];
  if (content.is_string()) {
    out.content = content.get<std::string>();
  } else if (content.is_array()) {
    for (const auto& part : content) {
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
          !part["text"].is_string())
        throw Error("'" + at +
                    ".content': only text parts ({\"type\": \"text\", \"text\": ...})"
                    " are supported");
      out.content += part["text"].get<std::string>();
    }
  } else {
    throw Error("'" + at + ".content' must be a string or a list of text parts");
  }
  return out;
}

}  // namespace

std::string error_json(const std::string& message, const std::string& type) {
  const json j = {{"error", {{"message", message}, {"type", type}, {"code", nullptr}}}};
  return io::dump_json(j);
}

const char* error_type(int status) {
  return status == 429   ? "rate_limit_exceeded"
         : status >= 500 ? "server_error"
                         : "invalid_request_error";
}

Completion parse_completion(const std::string& body, const tokenizer::Tokenizer& tok,
                            const RequestLimits& cfg) {
  const json j = parse_object(body);
  Completion c;
  c.api = Api::kCompletions;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    if (common_field(k, v, c, cfg)) continue;
    if (k == "prompt") {
      if (v.is_string()) {
        c.prompt = v.get<std::string>();
      } else if (v.is_array() && v.size() == 1 && v[0].is_string()) {
        c.prompt = v[0].get<std::string>();
      } else {
        throw Error("'prompt' must be a string (or an array of one string)");
      }
    } else if (k == "logprobs") {
      if (!v.is_null()) c.req.logprobs = integer(v, "logprobs", 0, 5);
    } else if (k == "echo") {
      if (!v.is_boolean() && !v.is_null()) throw Error("'echo' must be true or false");
      c.req.echo = v.is_boolean() && v.get<bool>();
    } else if (k == "best_of" || k == "suffix") {
      refuse_unless_off(k, v);
    }
  }
  if (!j.contains("prompt") && c.req.conversation.empty()) throw Error("'prompt' is required");
  c.req.user_text = c.prompt;
  finish_request(c, tok, cfg);
  return c;
}

Completion parse_chat_completion(const std::string& body, const tokenizer::Tokenizer& tok,
                                 const RequestLimits& cfg, const model::ChatTemplate& tmpl) {
  const json j = parse_object(body);
  Completion c;
  c.api = Api::kChat;
  c.include_usage = false;
  std::vector<model::ChatMessage> messages;
  int64_t top_logprobs = 0;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const json& v = it.value();
    if (common_field(k, v, c, cfg)) continue;
    if (k == "messages") {
      if (!v.is_array() || v.empty())
        throw Error("'messages' must be a non-empty list of {role, content}");
      for (size_t i = 0; i < v.size(); ++i) messages.push_back(message(v[i], i));
    } else if (k == "max_completion_tokens") {
      if (!v.is_null()) c.req.max_tokens = integer(v, "max_completion_tokens", 1, cfg.max_tokens);
    } else if (k == "stream_options") {
      if (v.is_object() && v.contains("include_usage")) {
        if (!v["include_usage"].is_boolean())
          throw Error("'stream_options.include_usage' must be true or false");
        c.include_usage = v["include_usage"].get<bool>();
      } else if (!v.is_null() && !v.is_object()) {
        throw Error("'stream_options' must be an object");
      }
    } else if (k == "logprobs") {
      if (!v.is_null() && !v.is_boolean()) throw Error("'logprobs' must be true or false");
      if (v.is_boolean() && v.get<bool>()) c.req.logprobs = std::max<int64_t>(c.req.logprobs, 0);
    } else if (k == "top_logprobs") {
      if (!v.is_null()) top_logprobs = integer(v, "top_logprobs", 0, 20);
    } else if (k == "tools" || k == "functions") {
      refuse_unless_off(k, v);
    }
  }
  if (!j.contains("messages")) throw Error("'messages' is required");
  if (top_logprobs > 0 && c.req.logprobs < 0) throw Error("'top_logprobs' needs 'logprobs': true");
  if (c.req.logprobs >= 0) c.req.logprobs = top_logprobs;
  // The template's stop strings end the answer, after the request's own.
  for (const auto& s : tmpl.stop)
    if (std::find(c.req.stop.begin(), c.req.stop.end(), s) == c.req.stop.end())
      c.req.stop.push_back(s);
  c.prompt = tmpl.render(messages, /*add_generation_prompt=*/true);
  for (const auto& m : messages)
    if (m.role == model::ChatRole::kUser)
      c.req.user_text += (c.req.user_text.empty() ? "" : "\n\n") + m.content;
  finish_request(c, tok, cfg);
  return c;
}

namespace {

json head_json(const ResponseHead& h, const char* object) {
  json j = {{"id", h.id}, {"object", object}, {"created", h.created}, {"model", h.model}};
  if (!h.conversation.empty()) j["conversation"] = h.conversation;
  return j;
}

json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens}};
}

json bytes_json(const std::string& s) {
  json b = json::array();
  for (const unsigned char c : s) b.push_back(static_cast<int>(c));
  return b;
}

// OpenAI's two shapes: completions' parallel lists (with each token's offset in the text),
// chat's list of objects (with each token's bytes).
json logprobs_json(Api api, const std::vector<LogprobEntry>& entries, size_t text_offset) {
  if (api == Api::kChat) {
    json content = json::array();
    for (const auto& e : entries) {
      json top = json::array();
      for (const auto& [t, lp] : e.top)
        top.push_back({{"token", t}, {"logprob", lp}, {"bytes", bytes_json(t)}});
      content.push_back({{"token", e.token},
                         {"logprob", e.logprob},
                         {"bytes", bytes_json(e.token)},
                         {"top_logprobs", std::move(top)}});
    }
    return {{"content", std::move(content)}};
  }
  json tokens = json::array(), lps = json::array(), tops = json::array(), offsets = json::array();
  for (const auto& e : entries) {
    tokens.push_back(e.token);
    // A text's first token has no log-probability (nothing came before it): null, as
    // OpenAI's echo writes it.
    const bool none = std::isnan(e.logprob);
    lps.push_back(none ? json(nullptr) : json(e.logprob));
    json top = json::object();
    for (const auto& [t, lp] : e.top) top[t] = lp;
    tops.push_back(none ? json(nullptr) : std::move(top));
    offsets.push_back(text_offset);
    text_offset += e.token.size();
  }
  return {{"tokens", std::move(tokens)},
          {"token_logprobs", std::move(lps)},
          {"top_logprobs", std::move(tops)},
          {"text_offset", std::move(offsets)}};
}

}  // namespace

std::string response_json(const ResponseHead& h, const std::vector<Choice>& choices,
                          const Usage& usage) {
  const bool chat = h.api == Api::kChat;
  json out = head_json(h, chat ? "chat.completion" : "text_completion");
  json list = json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    json choice = {
        {"index", i},
        {"logprobs",
         choices[i].with_logprobs ? logprobs_json(h.api, choices[i].logprobs, 0) : json(nullptr)},
        {"finish_reason", choices[i].finish_reason}};
    if (chat)
      choice["message"] = {{"role", "assistant"}, {"content", choices[i].text}};
    else
      choice["text"] = choices[i].text;
    list.push_back(std::move(choice));
  }
  out["choices"] = std::move(list);
  out["usage"] = usage_json(usage);
  return io::dump_json(out);
}

std::string chunk_json(const ResponseHead& h, size_t index, const std::string& text,
                       const std::string& finish_reason, bool first,
                       const std::vector<LogprobEntry>* logprobs, size_t text_offset) {
  const bool chat = h.api == Api::kChat;
  json out = head_json(h, chat ? "chat.completion.chunk" : "text_completion");
  json choice = {
      {"index", index},
      {"logprobs", logprobs ? logprobs_json(h.api, *logprobs, text_offset) : json(nullptr)},
      {"finish_reason", finish_reason.empty() ? json(nullptr) : json(finish_reason)}};
  if (chat) {
    json delta = json::object();
    if (first) delta["role"] = "assistant";
    if (!text.empty() || first) delta["content"] = text;
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = text;
  }
  out["choices"] = json::array({std::move(choice)});
  return io::dump_json(out);
}

std::string usage_chunk_json(const ResponseHead& h, const Usage& usage) {
  json out = head_json(h, h.api == Api::kChat ? "chat.completion.chunk" : "text_completion");
  out["choices"] = json::array();
  out["usage"] = usage_json(usage);
  return io::dump_json(out);
}

namespace {

json conversation_object(const ConversationInfo& c) {
  json turns = json::array();
  for (const auto& t : c.turns)
    turns.push_back({{"turn", t.turn}, {"tokens", t.tokens >= 0 ? json(t.tokens) : json(nullptr)}});
  return {{"id", c.id},
          {"object", "conversation"},
          {"title", c.title},
          {"turn", c.turn},
          {"tokens", c.tokens >= 0 ? json(c.tokens) : json(nullptr)},
          {"turns", turns},
          {"in_memory", c.in_memory}};
}

}  // namespace

std::string conversation_json(const ConversationInfo& c, int64_t state_bytes,
                              int64_t kv_bytes_per_token) {
  json j = conversation_object(c);
  j["state_bytes"] = state_bytes;
  j["kv_cache_bytes"] = c.tokens >= 0 ? json(c.tokens * kv_bytes_per_token) : json(nullptr);
  return io::dump_json(j);
}

std::string conversation_list_json(const std::vector<ConversationInfo>& list) {
  json data = json::array();
  for (const auto& c : list) data.push_back(conversation_object(c));
  return io::dump_json({{"object", "list"}, {"data", data}});
}

std::string turn_texts_json(const std::vector<ConversationStore::TurnText>& texts) {
  json data = json::array();
  for (const auto& t : texts)
    data.push_back({{"turn", t.turn}, {"user", t.user}, {"assistant", t.assistant}});
  return io::dump_json({{"object", "list"}, {"data", data}});
}

std::string parse_title(const std::string& body) {
  const json j = parse_object(body);
  const auto it = j.find("title");
  if (it == j.end() || !it->is_string()) throw Error("'title' is required: {\"title\": \"...\"}");
  return it->get<std::string>();
}

int64_t parse_turn(const std::string& body, bool required) {
  if (body.find_first_not_of(" \t\r\n") == std::string::npos) {
    if (required) throw Error("'turn' is required: {\"turn\": K}");
    return -1;
  }
  const json j = parse_object(body);
  const auto it = j.find("turn");
  if (it == j.end()) {
    if (required) throw Error("'turn' is required: {\"turn\": K}");
    return -1;
  }
  if (!it->is_number_integer() || it->get<int64_t>() < 0)
    throw Error("'turn' must be an integer of at least 0");
  return it->get<int64_t>();
}

}  // namespace logattn::serve
