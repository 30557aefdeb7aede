// Sampling text from the model: temperature (0 = greedy), top-k, seeded.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/model.h"

namespace logattn::generate {

struct SampleOptions {
  int64_t tokens = 200;
  double temperature = 0.8;
  int64_t top_k = 0;   // 0: the whole vocabulary
  double top_p = 1.0;  // nucleus: the fewest tokens whose probabilities sum to at least top_p
  uint64_t seed = 0;
};

// Picks a token from logits [vocab] (greedy when temperature is 0).
int32_t pick_token(const float* logits, int64_t vocab, const SampleOptions& opt,
                   uint64_t& rng_state);

// A token's log-probability under the model's distribution (the logits before temperature,
// top-k and top-p), and the most likely tokens' (most likely first). logprob is NaN for a
// token nothing came before (the first of a text).
struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;
};

// log softmax(logits)[token] and the k most likely tokens', in float64 (the sums of exps);
// ties by id.
TokenLogprob token_logprob(const float* logits, int64_t vocab, int32_t token, int64_t k);

// Byte-level continuation of prompt by re-reading a sliding window of the model's context
// through the parallel path at each token.
std::string sample_bytes_windowed(model::Model& model, const std::string& prompt,
                                  const SampleOptions& opt);

}  // namespace logattn::generate
