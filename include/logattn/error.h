// Two error channels (see DEVELOPERS.md):
//  - LOGATTN_CHECK: an always-on check of an internal invariant; a failure is a bug in
//    logattn and aborts with file:line.
//  - logattn::Error (a std::invalid_argument): bad input from the caller, with a message
//    naming the operation and what is wrong.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace logattn {

class Error : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

[[noreturn]] inline void check_failed(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "logattn: internal check failed: %s at %s:%d\n", expr, file, line);
  std::abort();
}

}  // namespace logattn

#define LOGATTN_CHECK(cond) ((cond) ? (void)0 : ::logattn::check_failed(#cond, __FILE__, __LINE__))
