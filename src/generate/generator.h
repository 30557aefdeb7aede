// Generation at constant cost per token: a prompt is read through the parallel (chunked)
// path, then one token at a time through the model's constant-size state. The state (every
// layer's attention state, the position recurrence, the last logits) saves to a versioned
// file whose size does not depend on the length of the text.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "generate/sample.h"
#include "io/safetensors.h"
#include "model/model.h"

namespace logattn::generate {

inline constexpr const char* kStateFormat = "logattn-state";
inline constexpr int kStateVersion = 1;

class Generator {
 public:
  explicit Generator(model::Model& model);

  // Reads tokens (at least one) into the state as a prompt (Model::Reading::kPrompt), in
  // pieces of at most `piece` tokens (a multiple of Model::kPromptBlock) so that activations
  // stay bounded however long the prompt. From a state at a multiple of kPromptBlock tokens,
  // the result does not depend on how the tokens are split between calls at such multiples.
  void feed(std::span<const int32_t> tokens, int64_t piece = 512);
  // As feed, also giving each token's log-probability given everything before it, with its
  // `top` most likely alternatives, appended to out (scoring a text): the first token's from
  // the last logits (NaN when the generator was empty), the others' from the logits of the
  // position before them.
  void feed(std::span<const int32_t> tokens, int64_t piece, std::vector<TokenLogprob>& out,
            int64_t top);
  // Samples the next token from the last logits, feeds it, returns it.
  int32_t next(const SampleOptions& opt, uint64_t& rng_state);
  bool empty() const { return state_.tokens == 0; }
  const std::vector<float>& last_logits() const { return logits_; }
  int64_t tokens() const { return state_.tokens; }
  const model::ModelState& state() const { return state_; }

  // The state and last logits, as a value: copied out and back in (a server keeps such
  // copies at prompt positions and starts later prompts from them).
  struct Snapshot {
    model::ModelState state;
    std::vector<float> logits;
    int64_t bytes() const {
      return state.bytes() + static_cast<int64_t>(logits.size() * sizeof(float));
    }
  };
  // Bytes of one sequence's snapshot of model (the same at any length of text).
  static int64_t snapshot_bytes(const model::Model& model) {
    return Snapshot{model.new_state(1), std::vector<float>(model.config().vocab)}.bytes();
  }
  Snapshot snapshot() const { return {state_, logits_}; }
  // Continues from s (a snapshot of a generator of the same model).
  void restore(const Snapshot& s);

  void save(const std::string& path) const;  // through a temporary name and a rename
  void load(const std::string& path);        // checks format, version, model and sizes
  // The same as bytes in memory (name stands for the path in errors).
  std::string bytes() const;
  void load(std::string_view bytes, const std::string& name);

  // Several generators (of one model) each take one token in one batched step: gens[i] reads
  // tokens[i]. Their states and logits go into batch-sized buffers (kept by the caller from
  // step to step) and back. One generator: its own step, as next() takes.
  struct Batch {
    model::ModelState state;
    std::vector<float> logits;
  };
  static void step_together(const std::vector<Generator*>& gens, const std::vector<int32_t>& tokens,
                            Batch& batch);

 private:
  void load_from(const io::SafeTensors& st);
  // Both feeds: out (when given) gets each token's log-probability.
  void read_prompt(std::span<const int32_t> tokens, int64_t piece, std::vector<TokenLogprob>* out,
                   int64_t top);

  model::Model& model_;
  model::ModelState state_;
  std::vector<float> logits_;
};

// Several prompts at once (throughput): each prompt is read alone (prompts differ in
// length), then the sequences advance together, one batched step per token. Sequence i
// samples with its own generator seeded seed + i. Returns each sequence's n new tokens.
std::vector<std::vector<int32_t>> generate_batch(model::Model& model,
                                                 const std::vector<std::vector<int32_t>>& prompts,
                                                 int64_t n, const SampleOptions& opt,
                                                 uint64_t seed);

}  // namespace logattn::generate
