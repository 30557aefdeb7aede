// Sizes that come from outside (command-line options, file headers) are range-checked and
// multiplied with overflow checks before anything is allocated: a product that overflows
// int64 or passes its limit is an error that names what it sizes and the limit.
#pragma once

#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "logattn/error.h"

namespace logattn::util {

// Elements of one buffer that no input may ask for: 2^34 floats are 64 GiB, beyond the
// memory of the machines this runs on, and far below int64's range.
inline constexpr int64_t kMaxElements = int64_t{1} << 34;

// The product of factors (each >= 0), or an Error "<what> = a x b x ... is more than
// <limit>".
inline int64_t checked_product(std::initializer_list<int64_t> factors, const std::string& what,
                               int64_t limit = kMaxElements) {
  int64_t p = 1;
  bool over = false;
  for (int64_t f : factors) {
    if (f < 0) throw Error(what + ": a negative size (" + std::to_string(f) + ")");
    if (over || (f != 0 && p > limit / f)) {
      over = true;
      continue;
    }
    p *= f;
  }
  if (over) {
    std::string s;
    for (int64_t f : factors) s += (s.empty() ? "" : " x ") + std::to_string(f);
    throw Error(what + " = " + s + " is more than " + std::to_string(limit));
  }
  return p;
}

// A whole decimal integer in [lo, hi], all of text ("1e3", "26abc", " 7" and "" are
// refused); otherwise an Error "<what> is '<text>', not a whole number in [lo, hi]".
inline int64_t parse_integer(const std::string& text, int64_t lo, int64_t hi,
                             const std::string& what) {
  int64_t v = 0;
  const char* end = text.data() + text.size();
  const auto [p, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || p != end || v < lo || v > hi)
    throw Error(what + " is '" + text + "', not a whole number in [" + std::to_string(lo) + ", " +
                std::to_string(hi) + "]");
  return v;
}

// Token and step counts in files: far beyond any run, far below int64's overflow.
inline constexpr int64_t kMaxCount = int64_t{1} << 62;

}  // namespace logattn::util
