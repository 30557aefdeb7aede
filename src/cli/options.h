// One place declares each command-line option: its name, its default (the value the target
// holds when declared) and its help. CLI11 parsing, --help and the printed run
// configuration all come from the same table.
#pragma once

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace logattn::cli {

class OptionTable {
 public:
  // flag: "--name" (or "-s,--name"); target: the variable, holding its default.
  template <typename T>
  OptionTable& add(std::string flag, T* target, std::string help) {
    Entry e;
    e.flag = flag;
    e.name = flag.substr(flag.rfind(',') + 1);  // "-s,--name" -> "--name"
    e.name = e.name.substr(e.name.find_first_not_of('-'));
    e.help = std::move(help);
    e.attach = [flag, target, help = e.help](CLI::App* app) {
      if constexpr (std::is_same_v<T, bool>) {
        app->add_flag(flag, *target, help);
      } else if constexpr (std::is_same_v<T, uint64_t>) {
        // Whole numbers in [0, 2^64 - 1], all digits: CLI11 would take "-1" as 2^64 - 1 and
        // saturate a larger number, so that two different seeds would give the same run.
        app->add_option(flag, *target, help)
            ->capture_default_str()
            ->check(CLI::Validator(
                [](std::string& s) -> std::string {
                  const std::string max = "18446744073709551615";
                  const bool digits =
                      !s.empty() && s.find_first_not_of("0123456789") == std::string::npos;
                  const std::string t =
                      digits ? s.substr(std::min(s.find_first_not_of('0'), s.size() - 1)) : s;
                  if (!digits || t.size() > max.size() || (t.size() == max.size() && t > max))
                    return "'" + s + "' is not a whole number in [0, " + max + "]";
                  return "";
                },
                ""));
      } else {
        app->add_option(flag, *target, help)->capture_default_str();
      }
    };
    e.value = [target] {
      if constexpr (std::is_same_v<T, std::vector<int64_t>>) {
        return fmt::format("{}", fmt::join(*target, ","));
      } else {
        return fmt::format("{}", *target);
      }
    };
    entries_.push_back(std::move(e));
    return *this;
  }

  void attach(CLI::App* app) const {
    for (const auto& e : entries_) e.attach(app);
  }

  // "name=value" pairs, in declaration order, for the printed run configuration.
  std::string describe() const {
    std::string s;
    for (const auto& e : entries_)
      s += fmt::format("{}{}={}", s.empty() ? "" : " ", e.name, e.value());
    return s;
  }

  // ("--name", value) for every option, in declaration order: what processes of one job
  // compare.
  std::vector<std::pair<std::string, std::string>> items() const {
    std::vector<std::pair<std::string, std::string>> out;
    for (const auto& e : entries_) out.emplace_back("--" + e.name, e.value());
    return out;
  }

 private:
  struct Entry {
    std::string flag, name, help;
    std::function<void(CLI::App*)> attach;
    std::function<std::string()> value;
  };
  std::vector<Entry> entries_;
};

}  // namespace logattn::cli
