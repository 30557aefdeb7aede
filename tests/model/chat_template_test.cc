// Chat templates: messages rendered through each role's string, the format checked whole.
#include "model/chat_template.h"

#include <gtest/gtest.h>

#include <string>

#include "logattn/error.h"

namespace logattn::model {
namespace {

std::string refusal(const std::string& json) {
  try {
    ChatTemplate::parse(json, "t.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ChatTemplate, RendersEachRoleAndTheGenerationPrompt) {
  const auto t = ChatTemplate::parse(
      R"({"system": "<s>{content}</s>", "user": "<u>{content}</u>", "assistant": "<a>{content}</a>",
          "generation_prompt": "<a>", "stop": ["</a>"]})",
      "t.json");
  const std::vector<ChatMessage> m = {{ChatRole::kSystem, "Be brief."},
                                      {ChatRole::kUser, "Hi {content}"},
                                      {ChatRole::kAssistant, "Hello."},
                                      {ChatRole::kUser, "Again"}};
  // A message's own "{content}" is text, not a placeholder.
  EXPECT_EQ(t.render(m, /*add_generation_prompt=*/true),
            "<s>Be brief.</s><u>Hi {content}</u><a>Hello.</a><u>Again</u><a>");
  EXPECT_EQ(t.render(m, /*add_generation_prompt=*/false),
            "<s>Be brief.</s><u>Hi {content}</u><a>Hello.</a><u>Again</u>");
  EXPECT_EQ(t.stop, std::vector<std::string>{"</a>"});
  // Round trip through the checkpoint's metadata.
  EXPECT_EQ(ChatTemplate::parse(t.to_json(), "again").to_json(), t.to_json());
}

TEST(ChatTemplate, ThePlainDefaultIsDialogue) {
  const auto t = ChatTemplate::plain();
  EXPECT_EQ(t.render({{ChatRole::kSystem, "S"}, {ChatRole::kUser, "Q"}}, true),
            "S\n\nUser: Q\nAssistant:");
  EXPECT_EQ(ChatTemplate::parse("{}", "empty").to_json(), t.to_json());  // keys default
}

TEST(ChatTemplate, EveryProblemIsNamed) {
  EXPECT_NE(refusal("[1]").find("t.json: the chat template must be a JSON object"),
            std::string::npos);
  EXPECT_NE(refusal("{bad").find("t.json: the chat template is not valid JSON"), std::string::npos);
  EXPECT_NE(refusal(R"({"user": "no placeholder"})").find("\"user\" must hold {content} once"),
            std::string::npos);
  EXPECT_NE(refusal(R"({"system": "{content}{content}"})").find("\"system\" must hold {content}"),
            std::string::npos);
  EXPECT_NE(refusal(R"({"role": "x"})").find("unknown key \"role\""), std::string::npos);
  EXPECT_NE(refusal(R"({"stop": ["a", "b", "c", "d", "e"]})").find("up to 4 strings"),
            std::string::npos);
  EXPECT_NE(refusal(R"({"stop": [""]})").find("must not be empty"), std::string::npos);
  EXPECT_NE(refusal(R"({"user": 5})").find("\"user\" must be a string"), std::string::npos);
  const std::string huge = "{\"user\": \"{content}" + std::string(5000, 'x') + "\"}";
  EXPECT_NE(refusal(huge).find("over 4096 bytes"), std::string::npos);
}

}  // namespace
}  // namespace logattn::model
