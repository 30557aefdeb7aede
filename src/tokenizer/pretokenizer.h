// GPT-2's pre-tokenisation: the text is cut into pieces by a regular expression (letters
// with an optional leading space, numbers, punctuation runs, whitespace runs, English
// contractions) and each piece is byte-pair encoded on its own. PCRE2 with its JIT.
#pragma once

#include <cstddef>
#include <string_view>

typedef struct pcre2_real_code_8 pcre2_code_8;
typedef struct pcre2_real_match_data_8 pcre2_match_data_8;

namespace logattn::tokenizer {

// The compiled expression; shared (read-only) by every thread.
class Gpt2Pattern {
 public:
  Gpt2Pattern();
  ~Gpt2Pattern();
  Gpt2Pattern(const Gpt2Pattern&) = delete;
  Gpt2Pattern& operator=(const Gpt2Pattern&) = delete;
  const pcre2_code_8* code() const { return code_; }

 private:
  pcre2_code_8* code_ = nullptr;
};

// Walks the pieces of text[begin, end); the text may go on past `end` (the expression looks
// one character ahead), and pieces start before `end`. Bytes that are not valid UTF-8 never
// match the expression: each maximal run of them is a piece of its own, so that every byte
// string is covered exactly. One splitter per thread.
class PieceSplitter {
 public:
  explicit PieceSplitter(const Gpt2Pattern& pattern);
  ~PieceSplitter();
  PieceSplitter(const PieceSplitter&) = delete;
  PieceSplitter& operator=(const PieceSplitter&) = delete;

  template <typename F>  // F(std::string_view piece)
  void split(std::string_view text, size_t begin, size_t end, F&& on_piece) {
    size_t pos = begin;
    while (pos < end) {
      size_t s, e;
      if (!next_match(text, pos, &s, &e) || s >= end) {
        on_piece(text.substr(pos, end - pos));
        return;
      }
      if (s > pos) on_piece(text.substr(pos, s - pos));  // bytes that are not UTF-8
      on_piece(text.substr(s, e - s));
      pos = e;
    }
  }

 private:
  // The first match at or after pos: [*s, *e). False if none.
  bool next_match(std::string_view text, size_t pos, size_t* s, size_t* e);
  const Gpt2Pattern& pattern_;
  pcre2_match_data_8* match_ = nullptr;
};

// A position p >= from where text may be cut into [.., p) and [p, ..) and each part split
// alone (with the lookahead rule above) into the same pieces as the whole: just after a
// newline that is followed by a printable ASCII character and comes after anything but white
// space. (After a longer run of white space, the whole splits the run before its last
// newline, while the left part alone keeps the run as one piece.) text.size() if none.
size_t safe_cut(std::string_view text, size_t from);

}  // namespace logattn::tokenizer
