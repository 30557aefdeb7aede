// JSON from outside (file metadata, configurations): parsed with the file named in the
// error, never a library exception escaping with its own wording.
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

}  // namespace logattn::io
