#include "model/chat_template.h"

#include <fstream>
#include <nlohmann/json.hpp>

#include "io/files.h"
#include "io/json.h"
#include "logattn/error.h"

namespace logattn::model {

namespace {

constexpr const char* kContent = "{content}";
constexpr size_t kMaxString = 4096;
constexpr size_t kMaxStops = 4;

void check_role(const std::string& s, const char* key, const std::string& what) {
  const size_t first = s.find(kContent);
  if (first == std::string::npos || s.find(kContent, first + 1) != std::string::npos)
    throw Error(what + ": the chat template's \"" + key + "\" must hold {content} once");
}

}  // namespace

ChatTemplate ChatTemplate::parse(const std::string& json_text, const std::string& what) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(json_text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(what + ": the chat template is not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw Error(what + ": the chat template must be a JSON object");
  ChatTemplate t;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& k = it.key();
    const auto& v = it.value();
    auto text = [&](const nlohmann::json& x, const std::string& name) {
      if (!x.is_string())
        throw Error(what + ": the chat template's \"" + name + "\" must be a string");
      const std::string s = x.get<std::string>();
      if (s.size() > kMaxString)
        throw Error(what + ": the chat template's \"" + name + "\" is over " +
                    std::to_string(kMaxString) + " bytes");
      return s;
    };
    if (k == "system") {
      t.system = text(v, k);
    } else if (k == "user") {
      t.user = text(v, k);
    } else if (k == "assistant") {
      t.assistant = text(v, k);
    } else if (k == "generation_prompt") {
      t.generation_prompt = text(v, k);
    } else if (k == "stop") {
      if (!v.is_array() || v.size() > kMaxStops)
        throw Error(what + ": the chat template's \"stop\" must be a list of up to " +
                    std::to_string(kMaxStops) + " strings");
      t.stop.clear();
      for (const auto& s : v) {
        t.stop.push_back(text(s, "stop"));
        if (t.stop.back().empty())
          throw Error(what + ": the chat template's stop strings must not be empty");
      }
    } else {
      throw Error(what + ": the chat template has an unknown key \"" + k +
                  "\" (known: system, user, assistant, generation_prompt, stop)");
    }
  }
  check_role(t.system, "system", what);
  check_role(t.user, "user", what);
  check_role(t.assistant, "assistant", what);
  return t;
}

ChatTemplate ChatTemplate::from_file(const std::string& path, const std::string& what) {
  const std::string named = what + " " + path;
  io::require_regular_file(path, named);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(named + ": cannot be read");
  std::string text(64 * 1024 + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > 64 * 1024) throw Error(named + ": a chat template is at most 64 KiB");
  return parse(text, named);
}

std::string ChatTemplate::to_json() const {
  const nlohmann::json j = {{"system", system},
                            {"user", user},
                            {"assistant", assistant},
                            {"generation_prompt", generation_prompt},
                            {"stop", stop}};
  return io::dump_json(j);
}

const std::string& ChatTemplate::of(ChatRole role) const {
  switch (role) {
    case ChatRole::kSystem:
      return system;
    case ChatRole::kUser:
      return user;
    case ChatRole::kAssistant:
      return assistant;
  }
  return user;
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& messages,
                                 bool add_generation_prompt) const {
  std::string out;
  for (const auto& m : messages) {
    const std::string& form = of(m.role);
    const size_t at = form.find(kContent);
    out += form.substr(0, at) + m.content + form.substr(at + std::string(kContent).size());
  }
  if (add_generation_prompt) out += generation_prompt;
  return out;
}

}  // namespace logattn::model
