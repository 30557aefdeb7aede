// The paper's generative language model (docs/design.md section 2) on logattn's attention:
// embedding -> EmbedPosition -> residual layers (LayerNorm, Linear, log-attention per head,
// Linear, GLU, Linear) -> LayerNorm -> tied head. Float32, forward and backward.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "logattn/attention.h"
#include "model/config.h"
#include "model/params.h"
#include "model/profile.h"
#include "model/trace.h"
#include "ops/softmax_attention.h"
#include "ops/typed_matrix.h"

namespace logattn::model {

// What generation carries from one call to the next: constant size, whatever the length of
// the text so far. A value: copied, and its sequences moved in and out of batches.
struct ModelState {
  std::vector<AttentionState> layers;  // per layer, batch x heads attention states
  std::vector<float> h;                // [B, d_emb]: EmbedPosition's recurrence, last token
  // The softmax twin's key/value caches, per layer x B x H. They grow with the context
  // (log-attention's states do not).
  std::vector<ops::SoftmaxCache> caches;
  int64_t batch = 0;
  int64_t tokens = 0;

  // Bytes of its log-attention states and recurrence (the twin's caches not counted).
  int64_t bytes() const;
  // Sequence i of this batch state from a one-sequence state (its attention states are
  // [B, H, floats per head], so sequence i is one contiguous run; h is [B, d_emb]), and back.
  // Log-attention states only.
  void gather(const ModelState& one, int64_t i);
  void scatter(int64_t i, ModelState& one) const;
};

class Model {
 public:
  // weights: the matrices' storage type. Float32 models train; bf16 and q8_0 models (made by
  // quantize_model, or read from a quantized checkpoint) only infer: their matrices live in a
  // typed store and weights() holds the rest (LayerNorm, biases; see ParamLayout).
  explicit Model(const ModelConfig& cfg, ops::WeightType weights = ops::WeightType::kF32);

  const ModelConfig& config() const { return cfg_; }
  const ParamLayout& layout() const { return layout_; }
  ops::WeightType weight_type() const { return wtype_; }
  // A weight matrix (a ParamInfo with .matrix, at its layout offset) as the products see it.
  ops::Matrix matrix(int64_t offset, int64_t rows, int64_t cols) const;
  ops::Matrix matrix(const ParamInfo& p) const { return matrix(p.offset, p.shape[0], p.shape[1]); }
  // The typed store (bf16: uint16 elements; q8_0: int8 elements and the float scales of
  // their blocks of 32), written by quantize_model and the checkpoint reader.
  std::vector<uint16_t>& bf16_store() { return bf16_; }
  std::vector<int8_t>& q8_store() { return q8_; }
  std::vector<float>& q8_scales() { return q8_scales_; }
  std::vector<float>& weights() { return w_; }
  const std::vector<float>& weights() const { return w_; }
  // The gradients' buffer, allocated on first use (a model that only infers has none).
  std::vector<float>& grads();
  // The reference's initialisation (float32 models; a typed model comes from one).
  void init(uint64_t seed);
  void zero_grads();

  // tokens, targets: [B, T] token ids. Returns the mean cross-entropy (nats per token) of
  // predicting targets; with backward, grads += grad_scale * d(mean loss)/d(weights).
  // logits (optional): [B, T, vocab]. targets may be null (no loss; logits only).
  double forward(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t T, bool backward,
                 float grad_scale = 1.f, float* logits = nullptr);

  // An empty generation state for B sequences (h = 0, empty attention sums).
  ModelState new_state(int64_t B) const;
  // How forward_with_state reads its tokens.
  enum class Reading {
    // T = 1 through the attention's one-token step, more through the chunked path; a batched
    // step sums each sequence's products as when it steps alone.
    kStep,
    // A prompt, so that its result does not depend on how the text is split into calls:
    // the attention's chunks and the products' blocks of rows (ops::Reduce::kRowBlocks)
    // start at the sequence's multiples of kPromptBlock (T = 1 too). From a state at a multiple of
    // kPromptBlock
    // tokens, reading a text in one call or in several split at multiples of kPromptBlock
    // gives the same state and logits, bit for bit (docs/design.md, "Exact prefix reuse").
    kPrompt,
  };
  static constexpr int64_t kPromptBlock = ops::kReduceBlock;
  // Continues the B sequences of state with tokens [B, T]; writes the logits of the last
  // position, last_logits [B, vocab], and updates state. position_logits (a prompt's, when
  // given): the logits of every position [B, T, vocab] (scoring a text).
  void forward_with_state(const int32_t* tokens, int64_t B, int64_t T, ModelState& state,
                          float* last_logits, Reading reading = Reading::kStep,
                          float* position_logits = nullptr);

  // Attaches a profile that forward and backward add their time per operation to (nullptr:
  // none, the default).
  void set_profile(Profile* profile) { profile_ = profile; }
  // Attaches a trace that forward and backward record each stage's output in (nullptr:
  // none, the default).
  void set_trace(Trace* trace) { trace_ = trace; }

  // Called by the backward as soon as layer l's gradients, layout().layers[l], are complete
  // (layers in descending order; the embedding's, EmbedPosition's and the final LayerNorm's
  // come last, when forward returns), so that their reduction across processes can start
  // while the layers below are still in the backward. Empty: none (the default).
  void set_layer_grads_ready(std::function<void(int64_t l)> f) {
    layer_grads_ready_ = std::move(f);
  }

  // Bytes held for activations at the last shape used.
  int64_t activation_bytes() const;

 private:
  struct LayerActs {
    std::vector<float> x, xn, mean, rstd, q, k, lv, logy, log_d, a, g, glu;
    std::vector<float> p;  // the softmax twin's attention weights [B, H, T, T]
  };
  void ensure_shape(int64_t B, int64_t T);
  double run(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t T, bool backward,
             float grad_scale, float* logits, ModelState* state, Reading reading,
             float* position_logits);
  void backward(const int32_t* tokens, int64_t B, int64_t T);
  // A one-sequence generation step's projection and attention for layer l: each head's rows
  // of W1 and its attention step in one block, the heads split with the partner thread, so
  // that q, k, v stay in the core that made them and the attention runs on both cores.
  void step_heads(int64_t l, AttentionState& state);
  // Layer l's attention, q, k, lv -> logy (and what its backward needs), by the
  // configuration's kind: the one place the kinds differ. With state, continuing it.
  void attend(int64_t l, int64_t B, int64_t T, ModelState* state, Reading reading);
  // Its backward: dlogy_ -> dq_, dk_, dlv_.
  void attend_backward(int64_t l, int64_t B, int64_t T);
  // Runs f, adding its wall time to the profile's op when one is attached.
  template <typename F>
  void timed(Op op, bool backward_pass, F&& f) {
    if (!profile_) return f();
    const auto t0 = std::chrono::steady_clock::now();
    f();
    profile_->seconds[backward_pass][static_cast<int>(op)] +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }

  // Records n values of a stage (of layer l when l >= 0) when a trace is attached.
  void trace(const char* name, int64_t l, const std::vector<float>& v, int64_t n) const {
    if (!trace_) return;
    std::string key = name;
    if (l >= 0) key.append(".").append(std::to_string(l));
    trace_->record(key, v.data(), n);
  }

  ModelConfig cfg_;
  ops::WeightType wtype_;
  ParamLayout layout_;
  Profile* profile_ = nullptr;
  Trace* trace_ = nullptr;
  std::function<void(int64_t)> layer_grads_ready_;
  std::vector<float> w_, g_;
  std::vector<uint16_t> bf16_;
  std::vector<int8_t> q8_;
  std::vector<float> q8_scales_;
  int64_t B_ = 0, T_ = 0;
  std::vector<LayerActs> acts_;
  std::vector<float> emb_, ul_, h_, x_last_, xf_, meanf_, rstdf_, logits_, proj_;
  // Backward scratch.
  std::vector<float> dx_, dglu_, dg_, da_, dlogy_, dq_, dk_, dlv_, dproj_, dxn_, dul_;
};

}  // namespace logattn::model
