#include "model/model.h"

#include <algorithm>
#include <string>

#include "logattn/attention.h"
#include "logattn/error.h"
#include "ops/elementwise.h"
#include "ops/layernorm.h"
#include "ops/matmul.h"
#include "ops/softmax_attention.h"
#include "threading/parallel.h"
#include "threading/partner.h"

namespace logattn::model {

namespace {

// proj [B, T, H, 2dk + dv] (per token, head-major) <-> q, k [B, H, T, dk], lv [B, H, T, dv]:
// to_heads copies proj into q, k, lv; otherwise q, k, lv into proj.
void permute_heads(int64_t B, int64_t T, int64_t H, int64_t dk, int64_t dv, float* proj, float* q,
                   float* k, float* lv, bool to_heads) {
  const int64_t w = 2 * dk + dv;
  auto move = [to_heads](float* token_side, float* head_side, int64_t n) {
    if (to_heads)
      std::copy(token_side, token_side + n, head_side);
    else
      std::copy(head_side, head_side + n, token_side);
  };
  parallel_for(B * H, B * T * H * w, [&](int64_t bh) {
    const int64_t b = bh / H, h = bh % H;
    for (int64_t t = 0; t < T; ++t) {
      float* tok = proj + ((b * T + t) * H + h) * w;
      const int64_t r = bh * T + t;
      move(tok, q + r * dk, dk);
      move(tok + dk, k + r * dk, dk);
      move(tok + 2 * dk, lv + r * dv, dv);
    }
  });
}

// [B, H, T, dv] <-> [B, T, H * dv].
void heads_to_tokens(int64_t B, int64_t T, int64_t H, int64_t dv, const float* in, float* out,
                     bool inverse) {
  parallel_for(B * H, B * T * H * dv, [&](int64_t bh) {
    const int64_t b = bh / H, h = bh % H;
    for (int64_t t = 0; t < T; ++t) {
      const int64_t hr = (bh * T + t) * dv, tr = ((b * T + t) * H + h) * dv;
      if (inverse)
        std::copy(in + tr, in + tr + dv, out + hr);
      else
        std::copy(in + hr, in + hr + dv, out + tr);
    }
  });
}

// The paper's attention in the model: causal, on log-values (the reference's LogAttention).
AttentionOptions model_attention() {
  AttentionOptions opt;
  opt.causal = true;
  opt.values = Values::kLog;
  return opt;
}

// Buffers follow the shape down as well as up: after a long prompt's chunks, one-token
// steps should not keep the chunks' activations resident.
void resize(std::vector<float>& v, int64_t n) {
  if (static_cast<size_t>(n) < v.capacity() / 2) {
    std::vector<float>(static_cast<size_t>(n)).swap(v);
    return;
  }
  v.resize(static_cast<size_t>(n));
}

}  // namespace

Model::Model(const ModelConfig& cfg, ops::WeightType weights)
    : cfg_(cfg), wtype_(weights), layout_(cfg, weights != ops::WeightType::kF32) {
  cfg_.validate();
  w_.assign(layout_.total(), 0.f);
  switch (wtype_) {
    case ops::WeightType::kF32:
      break;
    case ops::WeightType::kBF16:
      bf16_.assign(layout_.matrix_total(), 0);
      break;
    case ops::WeightType::kQ8_0:
      for (const auto& p : layout_.params())
        if (p.matrix && p.shape[1] % ops::kQ8Block != 0)
          throw Error("model: q8_0 needs rows of whole blocks of 32, and '" + p.name + "' has " +
                      std::to_string(p.shape[1]) + " columns");
      q8_.assign(layout_.matrix_total(), 0);
      q8_scales_.assign(layout_.matrix_total() / ops::kQ8Block, 0.f);
      break;
  }
}

void Model::init(uint64_t seed) {
  if (wtype_ != ops::WeightType::kF32)
    throw Error("model: initialise a float32 model and quantize it (quantize_model)");
  init_params(cfg_, layout_, seed, w_.data());
}

ops::Matrix Model::matrix(int64_t offset, int64_t rows, int64_t cols) const {
  switch (wtype_) {
    case ops::WeightType::kBF16:
      return {wtype_, rows, cols, bf16_.data() + offset, nullptr};
    case ops::WeightType::kQ8_0:
      return {wtype_, rows, cols, q8_.data() + offset, q8_scales_.data() + offset / ops::kQ8Block};
    case ops::WeightType::kF32:
      break;
  }
  return {wtype_, rows, cols, w_.data() + offset, nullptr};
}

std::vector<float>& Model::grads() {
  if (g_.empty() && wtype_ == ops::WeightType::kF32) g_.assign(layout_.total(), 0.f);
  return g_;
}

void Model::zero_grads() {
  auto& g = grads();
  std::fill(g.begin(), g.end(), 0.f);
}

void Model::ensure_shape(int64_t B, int64_t T) {
  if (B == B_ && T == T_) return;
  B_ = B, T_ = T;
  const int64_t N = B * T, E = cfg_.d_emb, H = cfg_.n_heads, dk = cfg_.d_key, dv = cfg_.d_val;
  const int64_t A = H * dv;
  acts_.assign(cfg_.n_layers, LayerActs{});
  for (auto& l : acts_) {
    resize(l.x, N * E), resize(l.xn, N * E), resize(l.mean, N), resize(l.rstd, N);
    resize(l.q, N * H * dk), resize(l.k, N * H * dk), resize(l.lv, N * A);
    resize(l.logy, N * A), resize(l.log_d, N * H), resize(l.a, N * A);
    resize(l.g, N * 2 * E), resize(l.glu, N * E);
  }
  resize(emb_, N * E), resize(ul_, N * 2 * E), resize(h_, N * E), resize(x_last_, N * E);
  resize(xf_, N * E), resize(meanf_, N), resize(rstdf_, N), resize(logits_, N * cfg_.vocab);
  resize(proj_, N * cfg_.proj_width());
  for (auto* v : {&dx_, &dglu_, &dxn_}) resize(*v, N * E);
  resize(dg_, N * 2 * E), resize(da_, N * A), resize(dlogy_, N * A), resize(dq_, N * H * dk),
      resize(dk_, N * H * dk);
  resize(dlv_, N * A), resize(dproj_, N * cfg_.proj_width()), resize(dul_, N * 2 * E);
}

int64_t Model::activation_bytes() const {
  int64_t n = 0;
  for (const auto& l : acts_)
    for (const auto* v :
         {&l.x, &l.xn, &l.mean, &l.rstd, &l.q, &l.k, &l.lv, &l.logy, &l.log_d, &l.a, &l.g, &l.glu})
      n += static_cast<int64_t>(v->size());
  for (const auto* v : {&emb_, &ul_, &h_, &x_last_, &xf_, &logits_, &proj_, &dx_, &dglu_, &dg_,
                        &da_, &dlogy_, &dq_, &dk_, &dlv_, &dproj_, &dxn_, &dul_})
    n += static_cast<int64_t>(v->size());
  return 4 * n;
}

double Model::forward(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t T,
                      bool backward_pass, float grad_scale, float* logits) {
  return run(tokens, targets, B, T, backward_pass, grad_scale, logits, nullptr, Reading::kStep,
             nullptr);
}

int64_t ModelState::bytes() const {
  int64_t floats = static_cast<int64_t>(h.size());
  for (const auto& a : layers) floats += static_cast<int64_t>(a.data().size());
  return floats * static_cast<int64_t>(sizeof(float));
}

namespace {

// gather and scatter: one, a one-sequence state of batch's model; i, a sequence of batch.
void check_sequence(const ModelState& batch, const ModelState& one, int64_t i, const char* op) {
  if (one.batch != 1 || i < 0 || i >= batch.batch || one.layers.size() != batch.layers.size() ||
      static_cast<int64_t>(one.h.size()) * batch.batch != static_cast<int64_t>(batch.h.size()))
    throw Error(std::string("model state: ") + op +
                " needs a one-sequence state of the same model and a sequence of the batch");
}

}  // namespace

void ModelState::gather(const ModelState& one, int64_t i) {
  check_sequence(*this, one, i, "gather");
  for (size_t l = 0; l < layers.size(); ++l) {
    const auto src = one.layers[l].data();
    std::copy(src.begin(), src.end(), layers[l].data().begin() + i * src.size());
  }
  std::copy(one.h.begin(), one.h.end(), h.begin() + i * one.h.size());
}

void ModelState::scatter(int64_t i, ModelState& one) const {
  check_sequence(*this, one, i, "scatter");
  for (size_t l = 0; l < layers.size(); ++l) {
    auto dst = one.layers[l].data();
    const auto src = layers[l].data().subspan(i * dst.size(), dst.size());
    std::copy(src.begin(), src.end(), dst.begin());
  }
  const auto hi = h.begin() + i * one.h.size();
  std::copy(hi, hi + one.h.size(), one.h.begin());
}

ModelState Model::new_state(int64_t B) const {
  if (B < 1) throw Error("model state: batch must be at least 1");
  ModelState st;
  st.batch = B;
  for (int64_t l = 0; l < cfg_.n_layers; ++l)
    st.layers.emplace_back(B, cfg_.n_heads, cfg_.d_key, cfg_.d_val, Values::kLog);
  st.h.assign(B * cfg_.d_emb, 0.f);
  if (cfg_.attention == AttentionKind::kSoftmax)  // a key/value cache per layer and head
    st.caches.resize(cfg_.n_layers * B * cfg_.n_heads);
  return st;
}

void Model::forward_with_state(const int32_t* tokens, int64_t B, int64_t T, ModelState& state,
                               float* last_logits, Reading reading, float* position_logits) {
  if (state.batch != B || static_cast<int64_t>(state.layers.size()) != cfg_.n_layers ||
      static_cast<int64_t>(state.h.size()) != B * cfg_.d_emb)
    throw Error("model forward: the state is for another batch size or model");
  if (position_logits && reading != Reading::kPrompt)
    throw Error("model forward: every position's logits come with a prompt's reading");
  run(tokens, nullptr, B, T, false, 1.f, last_logits, &state, reading, position_logits);
}

void Model::step_heads(int64_t l, AttentionState& state) {
  const int64_t E = cfg_.d_emb, H = cfg_.n_heads, dk = cfg_.d_key, dv = cfg_.d_val;
  const int64_t w = 2 * dk + dv;
  LayerActs& a = acts_[l];
  const auto& p = layout_.layers[l];
  const float* W = w_.data();
  const ops::Matrix w1 = matrix(p.w1, cfg_.proj_width(), E);
  run_blocks(H, [&](int64_t h) {
    float* proj = proj_.data() + h * w;
    ops::linear(w1.rows_view(h * w, w), 1, a.xn.data(), W + p.b1 + h * w, proj);
    std::copy(proj, proj + dk, a.q.data() + h * dk);
    std::copy(proj + dk, proj + 2 * dk, a.k.data() + h * dk);
    std::copy(proj + 2 * dk, proj + w, a.lv.data() + h * dv);
    attention_step_heads(a.q, a.k, a.lv, a.logy, state, a.log_d, h, h + 1);
  });
  state.set_tokens(state.tokens() + 1);
}

void Model::attend(int64_t l, int64_t B, int64_t T, ModelState* state, Reading reading) {
  const int64_t H = cfg_.n_heads, dk = cfg_.d_key, dv = cfg_.d_val;
  LayerActs& a = acts_[l];
  switch (cfg_.attention) {
    case AttentionKind::kLog: {
      AttentionOptions opt = model_attention();
      const AttentionDims dims{B, H, T, T, dk, dv};
      if (state && reading == Reading::kPrompt) {
        // The chunks then start where a call that begins at a multiple of kPromptBlock starts
        // them; a chunk's result depends on every key in it (its references are maxima).
        opt.chunk = kPromptBlock;
        attention_forward(opt, dims, a.q, a.k, a.lv, a.logy, a.log_d, &state->layers[l]);
      } else if (!state) {
        attention_forward(opt, dims, a.q, a.k, a.lv, a.logy, a.log_d);
      } else if (T == 1) {  // [B, H, 1, d] is the step's [B, H, d]
        attention_step(a.q, a.k, a.lv, a.logy, state->layers[l], a.log_d);
      } else {
        attention_forward(opt, dims, a.q, a.k, a.lv, a.logy, a.log_d, &state->layers[l]);
      }
      return;
    }
    case AttentionKind::kSoftmax:
      if (state) {  // forward_with_state: through the key/value cache
        ops::softmax_attention_extend(B, H, T, dk, dv, a.q.data(), a.k.data(), a.lv.data(),
                                      a.logy.data(), state->caches.data() + l * B * H);
        return;
      }
      resize(a.p, B * H * T * T);  // the weights, for backward
      ops::softmax_attention_forward(B, H, T, dk, dv, a.q.data(), a.k.data(), a.lv.data(),
                                     a.logy.data(), a.p.data());
      return;
  }
}

void Model::attend_backward(int64_t l, int64_t B, int64_t T) {
  const int64_t H = cfg_.n_heads, dk = cfg_.d_key, dv = cfg_.d_val;
  LayerActs& a = acts_[l];
  switch (cfg_.attention) {
    case AttentionKind::kLog: {
      attention_backward(model_attention(), AttentionDims{B, H, T, T, dk, dv}, a.q, a.k, a.lv,
                         a.logy, a.log_d, dlogy_, dq_, dk_, dlv_);
      return;
    }
    case AttentionKind::kSoftmax:
      ops::softmax_attention_backward(B, H, T, dk, dv, a.q.data(), a.k.data(), a.lv.data(),
                                      a.logy.data(), a.p.data(), dlogy_.data(), dq_.data(),
                                      dk_.data(), dlv_.data());
      return;
  }
}

double Model::run(const int32_t* tokens, const int32_t* targets, int64_t B, int64_t T,
                  bool backward_pass, float grad_scale, float* logits, ModelState* state,
                  Reading reading, float* position_logits) {
  if (B < 1 || T < 1) throw Error("model forward: batch and length must be at least 1");
  const int64_t N = B * T, E = cfg_.d_emb, H = cfg_.n_heads, dk = cfg_.d_key, dv = cfg_.d_val;
  const int64_t A = H * dv, P = cfg_.proj_width(), V = cfg_.vocab;
  for (int64_t i = 0; i < N; ++i) {
    if (tokens[i] < 0 || tokens[i] >= V)
      throw Error("model forward: token id " + std::to_string(tokens[i]) + " at position " +
                  std::to_string(i) + " is outside the vocabulary [0, " + std::to_string(V) + ")");
    if (targets && (targets[i] < 0 || targets[i] >= V))
      throw Error("model forward: target id " + std::to_string(targets[i]) + " is outside [0, " +
                  std::to_string(V) + ")");
  }
  if (backward_pass && !targets) throw Error("model forward: backward needs targets");
  if (backward_pass && wtype_ != ops::WeightType::kF32)
    throw Error(std::string("model: training needs float32 weights, and these are ") +
                ops::weight_type_name(wtype_));
  ensure_shape(B, T);
  const float* W = w_.data();
  // A generation step of several sequences: each sequence's products summed as when it steps
  // alone, so that its tokens do not depend on which others share the batch. A prompt: in
  // blocks of rows that start at the sequence's multiples of kPromptBlock, so that a
  // position's sums do not depend on the call it is read in.
  const bool prompt = state && reading == Reading::kPrompt;
  const ops::Reduce reduce = prompt            ? ops::Reduce::kRowBlocks
                             : state && T == 1 ? ops::Reduce::kEachRowAlone
                                               : ops::Reduce::kFastest;

  // Embedding and EmbedPosition: x0 = emb + h, h the log-space recurrence from h_{-1} = 0.
  const ops::Matrix embed = matrix(layout_.embed, V, E);
  timed(Op::kEmbedding, false, [&] {
    parallel_for(N, N * E,
                 [&](int64_t i) { ops::matrix_row(embed, tokens[i], emb_.data() + i * E); });
  });
  timed(Op::kPosition, false, [&] {
    ops::linear(matrix(layout_.pos_w, 2 * E, E), N, emb_.data(), W + layout_.pos_b, ul_.data(),
                reduce);
    ops::log_recurrence_forward(B, T, E, ul_.data(), state ? state->h.data() : nullptr, h_.data());
  });
  trace("emb", -1, emb_, N * E), trace("ul", -1, ul_, N * 2 * E), trace("h", -1, h_, N * E);
  if (state)
    for (int64_t b = 0; b < B; ++b)
      std::copy(h_.begin() + ((b * T) + T - 1) * E, h_.begin() + (b * T + T) * E,
                state->h.begin() + b * E);

  for (int64_t l = 0; l < cfg_.n_layers; ++l) {
    LayerActs& a = acts_[l];
    const auto& p = layout_.layers[l];
    if (l == 0) {
      timed(Op::kResidual, false, [&] {
        for (int64_t i = 0; i < N * E; ++i) a.x[i] = emb_[i] + h_[i];
      });
    }
    timed(Op::kLayerNorm, false, [&] {
      ops::layernorm_forward(N, E, a.x.data(), W + p.ln_w, W + p.ln_b, a.xn.data(), a.mean.data(),
                             a.rstd.data());
    });
    trace("x", l, a.x, N * E), trace("xn", l, a.xn, N * E);
    if (state && N == 1 && !prompt && cfg_.attention == AttentionKind::kLog) {
      // One sequence, one token: W1 and the step fused.
      timed(Op::kFusedStep, false, [&] { step_heads(l, state->layers[l]); });
    } else {
      timed(Op::kProjection, false, [&] {
        ops::linear(matrix(p.w1, P, E), N, a.xn.data(), W + p.b1, proj_.data(), reduce);
      });
      timed(Op::kPermute, false, [&] {
        permute_heads(B, T, H, dk, dv, proj_.data(), a.q.data(), a.k.data(), a.lv.data(), true);
      });
      timed(Op::kAttention, false, [&] { attend(l, B, T, state, reading); });
    }
    timed(Op::kPermute, false,
          [&] { heads_to_tokens(B, T, H, dv, a.logy.data(), a.a.data(), false); });
    trace("proj", l, proj_, N * P), trace("a", l, a.a, N * A);
    timed(Op::kMix, false, [&] {
      ops::linear(matrix(p.w2, 2 * E, A), N, a.a.data(), W + p.b2, a.g.data(), reduce);
    });
    timed(Op::kGlu, false, [&] { ops::glu_forward(N, E, a.g.data(), a.glu.data()); });
    trace("g", l, a.g, N * 2 * E), trace("glu", l, a.glu, N * E);
    float* next = l + 1 < cfg_.n_layers ? acts_[l + 1].x.data() : x_last_.data();
    timed(Op::kOut, false,
          [&] { ops::linear(matrix(p.w3, E, E), N, a.glu.data(), nullptr, next, reduce); });
    timed(Op::kResidual, false, [&] {
      for (int64_t i = 0; i < N * E; ++i) next[i] += a.x[i];
    });
  }
  if (cfg_.n_layers == 0)
    for (int64_t i = 0; i < N * E; ++i) x_last_[i] = emb_[i] + h_[i];
  trace("x_last", -1, x_last_, N * E);
  if (state) {
    // Generation needs only each sequence's last position.
    state->tokens += T;
    for (int64_t b = 0; b < B; ++b)
      std::copy(x_last_.begin() + (b * T + T - 1) * E, x_last_.begin() + (b * T + T) * E,
                dxn_.begin() + b * E);
    timed(Op::kLayerNorm, false, [&] {
      ops::layernorm_forward(B, E, dxn_.data(), W + layout_.lnf_w, W + layout_.lnf_b, xf_.data(),
                             meanf_.data(), rstdf_.data());
    });
    timed(Op::kHead, false, [&] { ops::linear(embed, B, xf_.data(), nullptr, logits, reduce); });
    trace("xf", -1, xf_, B * E);
    if (trace_) trace_->record("logits", logits, B * V);
    if (position_logits) {
      ops::layernorm_forward(N, E, x_last_.data(), W + layout_.lnf_w, W + layout_.lnf_b, xf_.data(),
                             meanf_.data(), rstdf_.data());
      ops::linear(embed, N, xf_.data(), nullptr, position_logits, reduce);
    }
    return 0.0;
  }
  timed(Op::kLayerNorm, false, [&] {
    ops::layernorm_forward(N, E, x_last_.data(), W + layout_.lnf_w, W + layout_.lnf_b, xf_.data(),
                           meanf_.data(), rstdf_.data());
  });
  timed(Op::kHead, false, [&] { ops::linear(embed, N, xf_.data(), nullptr, logits_.data()); });
  if (logits) std::copy(logits_.begin(), logits_.end(), logits);
  trace("xf", -1, xf_, N * E), trace("logits", -1, logits_, N * V);
  if (!targets) return 0.0;
  // The logits buffer becomes dlogits when a backward follows.
  double loss = 0.0;
  timed(Op::kCrossEntropy, false, [&] {
    loss =
        ops::cross_entropy(N, V, logits_.data(), targets, backward_pass ? logits_.data() : nullptr,
                           grad_scale / static_cast<float>(N));
  });
  if (backward_pass) {
    trace("dlogits", -1, logits_, N * V);
    backward(tokens, B, T);
  }
  return loss;
}

void Model::backward(const int32_t* tokens, int64_t B, int64_t T) {
  const int64_t N = B * T, E = cfg_.d_emb, H = cfg_.n_heads, dk = cfg_.d_key, dv = cfg_.d_val;
  const int64_t A = H * dv, P = cfg_.proj_width(), V = cfg_.vocab;
  const float* W = w_.data();
  float* G = grads().data();
  const float* dlogits = logits_.data();
  // Tied head: logits = xf embed^T.
  timed(Op::kHead, true, [&] {
    ops::gemm(true, false, V, E, N, 1.f, dlogits, V, xf_.data(), E, 1.f, G + layout_.embed, E);
    ops::gemm(false, false, N, E, V, 1.f, dlogits, V, W + layout_.embed, E, 0.f, dxn_.data(), E);
  });
  timed(Op::kLayerNorm, true, [&] {
    ops::layernorm_backward(N, E, x_last_.data(), W + layout_.lnf_w, meanf_.data(), rstdf_.data(),
                            dxn_.data(), dx_.data(), G + layout_.lnf_w, G + layout_.lnf_b, false);
  });
  trace("dxf", -1, dxn_, N * E), trace("dx", cfg_.n_layers, dx_, N * E);
  for (int64_t l = cfg_.n_layers - 1; l >= 0; --l) {
    LayerActs& a = acts_[l];
    const auto& p = layout_.layers[l];
    // x_{l+1} = x_l + W3 glu(W2 a + b2): dx passes through the residual unchanged.
    timed(Op::kOut, true, [&] {
      ops::linear_backward(N, E, E, a.glu.data(), W + p.w3, dx_.data(), dglu_.data(), G + p.w3,
                           nullptr, false);
    });
    timed(Op::kGlu, true, [&] { ops::glu_backward(N, E, a.g.data(), dglu_.data(), dg_.data()); });
    trace("dglu", l, dglu_, N * E), trace("dg", l, dg_, N * 2 * E);
    timed(Op::kMix, true, [&] {
      ops::linear_backward(N, A, 2 * E, a.a.data(), W + p.w2, dg_.data(), da_.data(), G + p.w2,
                           G + p.b2, false);
    });
    timed(Op::kPermute, true,
          [&] { heads_to_tokens(B, T, H, dv, da_.data(), dlogy_.data(), true); });
    timed(Op::kAttention, true, [&] { attend_backward(l, B, T); });
    timed(Op::kPermute, true, [&] {
      permute_heads(B, T, H, dk, dv, dproj_.data(), dq_.data(), dk_.data(), dlv_.data(), false);
    });
    timed(Op::kProjection, true, [&] {
      ops::linear_backward(N, E, P, a.xn.data(), W + p.w1, dproj_.data(), dxn_.data(), G + p.w1,
                           G + p.b1, false);
    });
    timed(Op::kLayerNorm, true, [&] {
      ops::layernorm_backward(N, E, a.x.data(), W + p.ln_w, a.mean.data(), a.rstd.data(),
                              dxn_.data(), dx_.data(), G + p.ln_w, G + p.ln_b, true);
    });
    trace("da", l, da_, N * A), trace("dproj", l, dproj_, N * P);
    trace("dxn", l, dxn_, N * E), trace("dx", l, dx_, N * E);
    if (layer_grads_ready_) layer_grads_ready_(l);
  }
  // x0 = emb + h(dense(emb)).
  timed(Op::kPosition, true, [&] {
    ops::log_recurrence_backward(B, T, E, ul_.data(), nullptr, h_.data(), dx_.data(), dul_.data());
    ops::linear_backward(N, E, 2 * E, emb_.data(), W + layout_.pos_w, dul_.data(), dx_.data(),
                         G + layout_.pos_w, G + layout_.pos_b, true);
  });
  trace("dul", -1, dul_, N * 2 * E), trace("demb", -1, dx_, N * E);
  // Embedding rows: columns in parallel, tokens in order (deterministic).
  float* ge = G + layout_.embed;
  timed(Op::kEmbedding, true, [&] {
    parallel_for((E + 15) / 16, N * E, [&](int64_t blk) {
      const int64_t j0 = blk * 16;
      for (int64_t i = 0; i < N; ++i)
        for (int64_t j = j0; j < std::min(j0 + 16, E); ++j) ge[tokens[i] * E + j] += dx_[i * E + j];
    });
  });
}

}  // namespace logattn::model
