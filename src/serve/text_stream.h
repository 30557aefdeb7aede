// A completion's text as its tokens come, and what of it a client may be sent at each token:
// whole UTF-8 characters only (a token may end inside one), and never text that may begin a
// stop string, until it is known not to; the text ends before the first stop string.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace logattn::serve {

class TextStream {
 public:
  explicit TextStream(std::vector<std::string> stop) : stop_(std::move(stop)) {}

  // Adds a token's bytes; returns the text that may be sent now. last: no token follows
  // (everything not cut by a stop string is sent).
  std::string add(std::string_view bytes, bool last);
  // A stop string was found: the text ends before it, and nothing more is added.
  bool stopped() const { return stopped_; }
  // The text so far (cut before a stop string once one is found).
  const std::string& text() const { return text_; }

 private:
  std::vector<std::string> stop_;
  std::string text_;
  size_t sent_ = 0;
  bool stopped_ = false;
};

}  // namespace logattn::serve
