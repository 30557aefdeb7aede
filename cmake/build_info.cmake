# Writes OUT (a header) with the source tree's commit, at every build: `logattn --version`
# names the commit the binary was built from, "+" marking uncommitted changes. The file is
# rewritten only when its text changes, so that an unchanged tree rebuilds nothing.
#   cmake -DSOURCE_DIR=... -DOUT=... -P build_info.cmake
execute_process(COMMAND git -C "${SOURCE_DIR}" rev-parse --short=12 HEAD
                OUTPUT_VARIABLE commit OUTPUT_STRIP_TRAILING_WHITESPACE
                RESULT_VARIABLE rc ERROR_QUIET)
if(NOT rc EQUAL 0 OR commit STREQUAL "")
  set(commit "unknown (not a git checkout)")
else()
  execute_process(COMMAND git -C "${SOURCE_DIR}" diff --quiet HEAD --
                  RESULT_VARIABLE dirty ERROR_QUIET)
  if(NOT dirty EQUAL 0)
    string(APPEND commit "+")
  endif()
endif()
set(text "// Written by cmake/build_info.cmake at build time.\n#define LOGATTN_COMMIT \"${commit}\"\n")
if(EXISTS "${OUT}")
  file(READ "${OUT}" old)
endif()
if(NOT old STREQUAL text)
  file(WRITE "${OUT}" "${text}")
endif()
