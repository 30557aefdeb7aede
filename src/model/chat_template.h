// How chat messages become the text a model reads: a model's chat template, kept in its
// checkpoint's metadata ("chat_template") as a small JSON object (docs/serving.md):
//
//   {"system": "{content}\n\n", "user": "User: {content}\n",
//    "assistant": "Assistant: {content}\n", "generation_prompt": "Assistant:",
//    "stop": ["\nUser:"]}
//
// Each role's string holds "{content}" once, replaced by the message's text; the generation
// prompt follows the messages when the model is to answer; the stop strings end its answer.
// No loops, conditions or expressions: a format small enough to check whole.
#pragma once

#include <string>
#include <vector>

namespace logattn::model {

enum class ChatRole { kSystem, kUser, kAssistant };

struct ChatMessage {
  ChatRole role = ChatRole::kUser;
  std::string content;
};

struct ChatTemplate {
  std::string system = "{content}\n\n";
  std::string user = "User: {content}\n";
  std::string assistant = "Assistant: {content}\n";
  std::string generation_prompt = "Assistant:";
  std::vector<std::string> stop = {"\nUser:"};

  // The template for models whose checkpoint has none: plain dialogue, as text-trained
  // models have seen it.
  static ChatTemplate plain() { return {}; }

  // Parses and checks a template's JSON text; throws logattn::Error naming `what` (the file
  // or the checkpoint) and the problem: unknown keys, a role without "{content}" once,
  // strings over 4 KiB, more than 4 stop strings or an empty one.
  static ChatTemplate parse(const std::string& json_text, const std::string& what);
  // The template in a JSON file (a regular file of at most 64 KiB); `what` names the option.
  static ChatTemplate from_file(const std::string& path, const std::string& what);
  std::string to_json() const;

  // The text of messages, each through its role's string; with the generation prompt after
  // them when add_generation_prompt.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  const std::string& of(ChatRole role) const;
};

// The metadata key of a checkpoint's chat template.
inline constexpr const char* kChatTemplateKey = "chat_template";

}  // namespace logattn::model
