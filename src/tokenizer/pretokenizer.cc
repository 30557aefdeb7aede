#define PCRE2_CODE_UNIT_WIDTH 8
#include "tokenizer/pretokenizer.h"

#include <pcre2.h>

#include <string>

#include "logattn/error.h"

namespace logattn::tokenizer {

namespace {

// GPT-2's expression (tiktoken's r50k_base / 'gpt2'), with \s spelled out as Unicode's
// White_Space property, which is what tiktoken's regex engine means by \s (PCRE2's \s under
// UCP differs on U+0085).
constexpr char kWhite[] =
    "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}"
    "\\x{202F}\\x{205F}\\x{3000}";

std::string gpt2_expression() {
  const std::string ws = std::string("[") + kWhite + "]";
  const std::string not_ws = std::string("[^") + kWhite + "]";
  return "'(?:[sdmt]|ll|ve|re)| ?\\p{L}+| ?\\p{N}+| ?[^" + std::string(kWhite) + "\\p{L}\\p{N}]+|" +
         ws + "+(?!" + not_ws + ")|" + ws + "+";
}

// Whether text ends with a character of kWhite (UTF-8 is self-synchronising: a valid
// encoding at the end is that character whatever precedes it).
bool ends_with_white(std::string_view text) {
  if (text.empty()) return false;
  if (std::string_view("\t\n\v\f\r ").find(text.back()) != std::string_view::npos) return true;
  for (const std::string_view w : {"\xc2\x85", "\xc2\xa0", "\xe1\x9a\x80", "\xe2\x80\xa8",
                                   "\xe2\x80\xa9", "\xe2\x80\xaf", "\xe2\x81\x9f", "\xe3\x80\x80"})
    if (text.ends_with(w)) return true;
  const size_t n = text.size();  // U+2000 .. U+200A
  return n >= 3 && text.substr(n - 3, 2) == "\xe2\x80" &&
         static_cast<unsigned char>(text[n - 1]) >= 0x80 &&
         static_cast<unsigned char>(text[n - 1]) <= 0x8a;
}

}  // namespace

Gpt2Pattern::Gpt2Pattern() {
  const std::string expr = gpt2_expression();
  int err = 0;
  PCRE2_SIZE offset = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(expr.c_str()), expr.size(),
                        PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &offset, nullptr);
  LOGATTN_CHECK(code_ != nullptr);
  // Without the JIT (some platforms) matching still works, only slower.
  pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
}

Gpt2Pattern::~Gpt2Pattern() {
  pcre2_code_free(code_);
}

PieceSplitter::PieceSplitter(const Gpt2Pattern& pattern)
    : pattern_(pattern), match_(pcre2_match_data_create_from_pattern(pattern.code(), nullptr)) {
  LOGATTN_CHECK(match_ != nullptr);
}

PieceSplitter::~PieceSplitter() {
  pcre2_match_data_free(match_);
}

bool PieceSplitter::next_match(std::string_view text, size_t pos, size_t* s, size_t* e) {
  const int rc = pcre2_match(pattern_.code(), reinterpret_cast<PCRE2_SPTR>(text.data()),
                             text.size(), pos, 0, match_, nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  if (rc < 0) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(rc, msg, sizeof msg);
    throw Error(std::string("tokenizer: pre-tokenisation failed: ") +
                reinterpret_cast<const char*>(msg));
  }
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match_);
  *s = ov[0];
  *e = ov[1];
  LOGATTN_CHECK(*e > *s);  // no alternative matches the empty string
  return true;
}

size_t safe_cut(std::string_view text, size_t from) {
  if (from == 0) from = 1;
  for (size_t p = from; p < text.size(); ++p) {
    const auto c = static_cast<unsigned char>(text[p]);
    if (text[p - 1] == '\n' && c > 0x20 && c < 0x7f && !ends_with_white(text.substr(0, p - 1)))
      return p;
  }
  return text.size();
}

}  // namespace logattn::tokenizer
