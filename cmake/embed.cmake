# Writes OUT (a header) holding the bytes of IN as a constant array NAME, so that a file the
# binary serves (the chat page) is compiled into it: no file to install or lose beside it.
#   cmake -DIN=... -DOUT=... -DNAME=... -P embed.cmake
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR bytes "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," body "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" body "${body}")
file(WRITE "${OUT}" "// Written by cmake/embed.cmake from ${IN}.\n#pragma once\n#include <string_view>\n"
  "inline constexpr unsigned char ${NAME}_bytes[] = {\n${body}\n};\n"
  "inline const std::string_view ${NAME}(reinterpret_cast<const char*>(${NAME}_bytes), ${bytes});\n")
