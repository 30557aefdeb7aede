#include "serve/text_stream.h"

#include <algorithm>

namespace logattn::serve {

namespace {

// The length of s's longest prefix of whole UTF-8 characters (a token may end inside one).
size_t whole_utf8(const std::string& s, size_t from) {
  size_t end = s.size();
  // Back up over at most 3 continuation bytes to the lead byte of the last character.
  size_t i = end;
  for (int k = 0; k < 4 && i > from; ++k) {
    --i;
    const auto c = static_cast<unsigned char>(s[i]);
    if ((c & 0xc0) == 0x80) continue;  // continuation
    const size_t need = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
    return i + need <= end ? end : i;
  }
  return end;
}

// How much of text's end may begin one of the stop strings (held back until it is known).
size_t stop_holdback(const std::string& text, const std::vector<std::string>& stop) {
  size_t hold = 0;
  for (const auto& s : stop)
    for (size_t k = std::min(s.size() - 1, text.size()); k > hold; --k)
      if (text.compare(text.size() - k, k, s, 0, k) == 0) {
        hold = k;
        break;
      }
  return hold;
}

}  // namespace

std::string TextStream::add(std::string_view bytes, bool last) {
  if (stopped_) return {};
  text_ += bytes;
  size_t upto = text_.size();
  size_t found = std::string::npos;
  for (const auto& s : stop_) {
    // Only where the new bytes could complete it: what was sent holds no stop string.
    const size_t from = sent_ > s.size() ? sent_ - s.size() : 0;
    const size_t p = text_.find(s, from);
    if (p != std::string::npos && p < found) found = p;
  }
  if (found != std::string::npos) {
    upto = found;
    text_.resize(found);
    stopped_ = true;
  } else if (!last) {
    upto = std::min(whole_utf8(text_, sent_), text_.size() - stop_holdback(text_, stop_));
  }
  if (upto <= sent_) return {};
  std::string out = text_.substr(sent_, upto - sent_);
  sent_ = upto;
  return out;
}

}  // namespace logattn::serve
