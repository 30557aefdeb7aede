// logattn: softmax attention with constant cost per token (Heinsen, 2024).
//
// Per query t, with keys s (causal: s <= t):
//     w_ts = sum_d exp(q_td + k_sd),   y_t = sum_s w_ts v_s / sum_s w_ts
// computed in a stable linear-domain form (docs/design.md section 1): any sign of v, a state of
// constant size per head, exact to float32 rounding on inputs where the float64 oracle is
// finite. Tensors are dense, row-major float32.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "logattn/error.h"

namespace logattn {

// How values are given: signed values V (returns Y), or log-values log V with -inf allowed
// (V = exp(log V) >= 0; returns log Y), the reference LogAttention's interface.
enum class Values { kSigned, kLog };

struct AttentionDims {
  int64_t batch = 1;
  int64_t heads = 1;
  int64_t n_q = 0;  // queries per head
  int64_t n_k = 0;  // keys (and values) per head; causal needs n_q == n_k
  int64_t d_key = 0;
  int64_t d_val = 0;
};

struct AttentionOptions {
  bool causal = true;
  Values values = Values::kSigned;
  // Tokens per chunk of the parallel path: the intra-chunk part is a masked chunk x chunk
  // matrix product. Results do not depend on it beyond float rounding. At most kMaxChunk.
  int64_t chunk = 64;
};

// The largest chunk: its chunk x chunk buffers (64 MiB at 4096) stay within any machine.
inline constexpr int64_t kMaxChunk = 4096;

// Constant-size state of batch x heads attention heads, after some number of keys.
// Per head: m [dk] (running maximum of each key feature), z [dk], s [dk, dv] (sums scaled by
// exp(-m)), c [dv] (log-values: running maximum of each value feature; 0 for signed values).
class AttentionState {
 public:
  AttentionState() = default;
  AttentionState(int64_t batch, int64_t heads, int64_t d_key, int64_t d_val, Values values);

  int64_t batch() const { return batch_; }
  int64_t heads() const { return heads_; }
  int64_t d_key() const { return d_key_; }
  int64_t d_val() const { return d_val_; }
  Values values() const { return values_; }
  // Keys absorbed so far (per head; the same for every head).
  int64_t tokens() const { return tokens_; }
  void set_tokens(int64_t n) { tokens_ = n; }
  // Forget every key: back to the empty sum (log 0 = -inf), as the reference starts.
  void reset();
  // Throws logattn::Error naming op and the first bad value, for a state that no sequence of
  // keys could have made: m or c NaN or +inf, z negative or not finite, s not finite, a
  // negative token count. States from outside (raw storage, files) are checked with it.
  void check_values(const std::string& op) const;

  // Floats per head, and the raw storage [B, H, floats_per_head] in the order m, z, c, s.
  int64_t floats_per_head() const { return 2 * d_key_ + d_val_ + d_key_ * d_val_; }
  // One head's parts: m [dk], z [dk], c [dv], s [dk, dv]. parts() is the one place the
  // layout is written down; head(bh) applies it to head bh of this state.
  template <typename F>
  struct HeadParts {
    F *m, *z, *c, *s;
  };
  template <typename F>
  static HeadParts<F> parts(F* p, int64_t d_key, int64_t d_val) {
    return {p, p + d_key, p + 2 * d_key, p + 2 * d_key + d_val};
  }
  // Empties one head's sums (log 0 = -inf): m = -inf, z = s = 0, c = -inf for log-values.
  static void clear(HeadParts<float> h, int64_t d_key, int64_t d_val, Values values);
  HeadParts<float> head(int64_t bh) {
    return parts(data_.data() + bh * floats_per_head(), d_key_, d_val_);
  }
  HeadParts<const float> head(int64_t bh) const {
    return parts(data_.data() + bh * floats_per_head(), d_key_, d_val_);
  }
  std::span<float> data() { return data_; }
  std::span<const float> data() const { return data_; }

  // The paper's log-space state (positive values only): h_s [B, H, dk, dv] = log S,
  // h_z [B, H, dk] = log Z, with -inf for empty sums. Signed-value states must hold only
  // non-negative sums; otherwise this throws.
  void to_log_space(std::span<float> h_s, std::span<float> h_z) const;
  static AttentionState from_log_space(int64_t batch, int64_t heads, int64_t d_key, int64_t d_val,
                                       Values values, std::span<const float> h_s,
                                       std::span<const float> h_z, int64_t tokens);

 private:
  int64_t batch_ = 0, heads_ = 0, d_key_ = 0, d_val_ = 0;
  Values values_ = Values::kSigned;
  int64_t tokens_ = 0;
  std::vector<float> data_;
};

// Forward pass.
//   q: [B, H, n_q, dk], k: [B, H, n_k, dk], v: [B, H, n_k, dv] (values or log-values)
//   y: [B, H, n_q, dv] (values, or log-values for Values::kLog)
//   log_d: [B, H, n_q] or empty: log of each query's normaliser sum_s w_ts, kept for backward.
//   state: nullptr (start empty), or a state that is read (earlier keys) and updated to the
//          state after the last key.
// Causal: query t sees earlier keys (the state) and keys 0..t. Non-causal: every query sees
// every key (and the state's). Inputs must be finite, except log-values, which may be -inf.
void attention_forward(const AttentionOptions& opt, const AttentionDims& dims,
                       std::span<const float> q, std::span<const float> k, std::span<const float> v,
                       std::span<float> y, std::span<float> log_d = {},
                       AttentionState* state = nullptr);

// One token per head through the state (generation): absorbs k, v, then reads q.
//   q: [B, H, dk], k: [B, H, dk], v: [B, H, dv], y: [B, H, dv], log_d: [B, H] or empty.
void attention_step(std::span<const float> q, std::span<const float> k, std::span<const float> v,
                    std::span<float> y, AttentionState& state, std::span<float> log_d = {});

// attention_step for the heads [head_begin, head_end) of the B * H only, without counting the
// token in state.tokens(): for a caller that runs a step's heads on several threads (each
// right after making its heads' q, k, v) and then counts the token once. Spans as in
// attention_step (every head); other heads' entries are neither read nor written.
void attention_step_heads(std::span<const float> q, std::span<const float> k,
                          std::span<const float> v, std::span<float> y, AttentionState& state,
                          std::span<float> log_d, int64_t head_begin, int64_t head_end);

// Non-causal streaming: add keys to the state (k: [B, H, n, dk], v: [B, H, n, dv]), and read
// any queries against it (q: [B, H, n, dk] -> y: [B, H, n, dv], log_d: [B, H, n] or empty).
void attention_add_keys(std::span<const float> k, std::span<const float> v, int64_t n,
                        AttentionState& state, int64_t chunk = 64);
void attention_read(std::span<const float> q, int64_t n, std::span<float> y,
                    const AttentionState& state, std::span<float> log_d = {});

// Backward pass: given the forward's inputs, its outputs y and log_d, and gy = dL/dy (for
// Values::kLog: y is log Y and gy is dL/d(log Y)), writes gq, gk, gv (gv is dL/d(log V) for
// Values::kLog). state_in: the state the forward started from, or nullptr; no gradient flows
// into it. Saves O(n (dk + dv)) per head besides the inputs, never n x dk x dv.
void attention_backward(const AttentionOptions& opt, const AttentionDims& dims,
                        std::span<const float> q, std::span<const float> k,
                        std::span<const float> v, std::span<const float> y,
                        std::span<const float> log_d, std::span<const float> gy,
                        std::span<float> gq, std::span<float> gk, std::span<float> gv,
                        const AttentionState* state_in = nullptr);

}  // namespace logattn
