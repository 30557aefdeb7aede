#include "cli/compare.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>

#include "cli/bench_util.h"

namespace logattn::cli {

std::vector<GemmSetting> gemm_settings(const std::vector<std::string>& cores) {
  std::vector<GemmSetting> s = {
      {"LOGATTN_GEMM=onednn", {{"LOGATTN_GEMM", "onednn"}}, ops::GemmBackend::kOneDnn, "", {}},
      {"LOGATTN_GEMM=openblas",
       {{"LOGATTN_GEMM", "openblas"}},
       ops::GemmBackend::kOpenBlas,
       "",
       {}}};
  for (const auto& core : cores)
    s.push_back({"LOGATTN_GEMM=openblas OPENBLAS_CORETYPE=" + core,
                 {{"LOGATTN_GEMM", "openblas"}, {"OPENBLAS_CORETYPE", core}},
                 ops::GemmBackend::kOpenBlas,
                 "",
                 {}});
  return s;
}

void measure_settings(
    std::vector<GemmSetting>& settings, int64_t rounds,
    const std::function<std::vector<std::string>(const GemmSetting&)>& args_of,
    const std::function<std::pair<std::string, double>(const nlohmann::json&)>& read) {
  for (int64_t r = 0; r < rounds; ++r)
    for (auto& s : settings) {
      const std::string out = run_self(args_of(s), s.env);
      const auto [kernel, rate] = read(nlohmann::json::parse(out.substr(out.find('{'))));
      s.kernel = kernel;
      s.rates.push_back(rate);
    }
}

void report_settings(const std::vector<GemmSetting>& settings, const std::string& key,
                     const std::string& unit, int64_t rounds, bool json, nlohmann::json record) {
  // This process's setting: its backend, with the OpenBLAS kernel it was given, if any.
  const char* core = std::getenv("OPENBLAS_CORETYPE");
  std::string mine = ops::gemm_backend() == ops::GemmBackend::kOneDnn ? "LOGATTN_GEMM=onednn"
                                                                      : "LOGATTN_GEMM=openblas";
  double best = 0, mine_rate = 0;
  for (const auto& s : settings) best = std::max(best, median(s.rates));
  nlohmann::json results = nlohmann::json::array();
  for (const auto& s : settings) {
    results.push_back(
        {{"setting", s.label}, {"kernel", s.kernel}, {key, median(s.rates)}, {"rounds", s.rates}});
    if (s.label == mine) mine_rate = median(s.rates);
  }
  if (json) {
    record["results"] = results;
    if (mine_rate > 0) record["default_of_best"] = mine_rate / best;
    fmt::print("{}\n", record.dump());
    return;
  }
  fmt::print("{:<52} {:<26} {:>10} {:>8}\n", "setting", "kernel", unit, "of best");
  for (const auto& s : settings)
    fmt::print("{:<52} {:<26} {:>10.1f} {:>7.0f}%\n", s.label, s.kernel, median(s.rates),
               100 * median(s.rates) / best);
  if (mine_rate > 0)
    fmt::print("this process's setting ({}{}): {:.0f}% of the best (median of {} rounds)\n", mine,
               core && *core ? std::string(" with OPENBLAS_CORETYPE=") + core : "",
               100 * mine_rate / best, rounds);
}

}  // namespace logattn::cli
