#include "generate/sample.h"

#include <algorithm>
#include <cmath>
#include <random>

namespace logattn::generate {

TokenLogprob token_logprob(const float* logits, int64_t vocab, int32_t token, int64_t k) {
  const float mx = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  const double lse = mx + std::log(sum);
  TokenLogprob out;
  out.token = token;
  out.logprob = static_cast<float>(logits[token] - lse);
  if (k == 0) return out;
  std::vector<int32_t> order(static_cast<size_t>(vocab));
  for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
  k = std::min(k, vocab);
  // Ties by id, so that the list is the same whatever the sort does with equal logits.
  std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  for (int64_t i = 0; i < k; ++i)
    out.top.emplace_back(order[i], static_cast<float>(logits[order[i]] - lse));
  return out;
}

int32_t pick_token(const float* logits, int64_t vocab, const SampleOptions& opt,
                   uint64_t& rng_state) {
  if (opt.temperature <= 0)
    return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  std::vector<std::pair<float, int32_t>> c(vocab);
  for (int64_t i = 0; i < vocab; ++i) c[i] = {logits[i], static_cast<int32_t>(i)};
  int64_t k = opt.top_k > 0 ? std::min(opt.top_k, vocab) : vocab;
  std::partial_sort(c.begin(), c.begin() + k, c.end(),
                    [](auto& a, auto& b) { return a.first > b.first; });
  std::vector<double> p(k);
  double sum = 0;
  for (int64_t i = 0; i < k; ++i)
    sum += p[i] = std::exp((c[i].first - c[0].first) / opt.temperature);
  if (opt.top_p < 1) {
    // Nucleus: the fewest most likely tokens (c is sorted) whose probability reaches top_p,
    // at least one.
    double kept = 0;
    int64_t n = 0;
    while (n < k) {
      kept += p[n++];
      if (kept >= opt.top_p * sum) break;
    }
    k = n;
    sum = kept;
  }
  std::mt19937_64 rng(rng_state);
  rng_state = rng();
  double u = std::uniform_real_distribution<double>(0, sum)(rng);
  for (int64_t i = 0; i < k; ++i) {
    u -= p[i];
    if (u <= 0) return c[i].second;
  }
  return c[k - 1].second;
}

std::string sample_bytes_windowed(model::Model& model, const std::string& prompt,
                                  const SampleOptions& opt) {
  std::vector<int32_t> ids;
  for (unsigned char ch : prompt) ids.push_back(ch);
  if (ids.empty()) ids.push_back('\n');
  const int64_t V = model.config().vocab, T = model.config().context;
  std::vector<float> logits;
  uint64_t rng = opt.seed;
  std::string out;
  for (int64_t i = 0; i < opt.tokens; ++i) {
    const int64_t n = std::min<int64_t>(T, static_cast<int64_t>(ids.size()));
    logits.resize(n * V);
    model.forward(ids.data() + ids.size() - n, nullptr, 1, n, false, 1.f, logits.data());
    const int32_t t = pick_token(logits.data() + (n - 1) * V, V, opt, rng);
    ids.push_back(t);
    out.push_back(static_cast<char>(t));
  }
  return out;
}

}  // namespace logattn::generate
