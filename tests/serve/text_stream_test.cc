// What a client is sent of a completion's text as tokens come: whole UTF-8 characters, text
// that may begin a stop string held back until known, the text cut before a stop string.
#include "serve/text_stream.h"

#include <gtest/gtest.h>

namespace logattn::serve {
namespace {

TEST(TextStream, WholeCharactersOnly) {
  TextStream s({});
  EXPECT_EQ(s.add("a\xc3", false), "a");  // the first byte of a two-byte character
  EXPECT_EQ(s.add("\xa9", false), "\xc3\xa9");
  EXPECT_EQ(s.add("\xe2\x82", false), "");  // two bytes of three
  EXPECT_EQ(s.add("\xac!", false), "\xe2\x82\xac!");
  EXPECT_EQ(s.add("\xf0", /*last=*/true), "\xf0");  // the end sends what is left
  EXPECT_FALSE(s.stopped());
}

TEST(TextStream, StopStringsAcrossTokens) {
  TextStream s({"\nUser:", "END"});
  EXPECT_EQ(s.add("Hello", false), "Hello");
  EXPECT_EQ(s.add("\nUs", false), "");        // may begin "\nUser:"
  EXPECT_EQ(s.add("ual", false), "\nUsual");  // it did not
  EXPECT_EQ(s.add(" E", false), " ");
  EXPECT_EQ(s.add("N", false), "");
  EXPECT_EQ(s.add("Dless", false), "");  // "END": the text ends before it
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ(s.add("more", false), "");
}

TEST(TextStream, AStopStringInsideOneToken) {
  TextStream s({"stop"});
  EXPECT_EQ(s.add("go on, stop here", false), "go on, ");
  EXPECT_TRUE(s.stopped());
  TextStream t({"xyz"});
  EXPECT_EQ(t.add("abcx", false), "abc");
  EXPECT_EQ(t.add("y", /*last=*/true), "xy");  // the end: nothing more can complete it
}

}  // namespace
}  // namespace logattn::serve
