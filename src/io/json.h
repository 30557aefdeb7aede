// JSON from outside (file metadata, configurations): parsed with the file named in the
// error, never a library exception escaping with its own wording; and JSON written out.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "logattn/error.h"

namespace logattn::io {

// Throws logattn::Error("<what> is not valid JSON: ...").
inline nlohmann::json parse_json(std::string_view text, const std::string& what) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(what + " is not valid JSON: " + e.what());
  }
}

// JSON text for output (responses, files, printed records): invalid UTF-8 (a client's bytes, a
// token cut inside a character) becomes U+FFFD instead of an exception.
inline std::string dump_json(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace logattn::io
