// Public attention functions: check shapes and inputs, then run the head kernels over
// batch x heads in parallel (one head per thread at a time, so results do not depend on the
// number of threads).
#include "logattn/attention.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "ops/attention/head_kernels.h"

namespace logattn {

namespace {

using attention::ChunkBuffers;
using attention::HeadDims;
using attention::HeadState;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

std::string dims_str(std::initializer_list<int64_t> dims) {
  std::string s = "[";
  for (int64_t d : dims) s += (s.size() > 1 ? ", " : "") + std::to_string(d);
  return s + "]";
}

void expect_size(const char* op, const char* name, size_t got, std::initializer_list<int64_t> d) {
  int64_t want = 1;
  for (int64_t x : d) want *= x;
  if (static_cast<int64_t>(got) != want)
    throw Error(std::string(op) + ": " + name + " has " + std::to_string(got) +
                " elements, expected " + dims_str(d) + " = " + std::to_string(want));
}

void expect_positive(const char* op, const char* name, int64_t v) {
  if (v < 1)
    throw Error(std::string(op) + ": " + name + " must be at least 1, got " + std::to_string(v));
}

// Rejects NaN and infinities (allow_neg_inf: -inf is allowed, as in log-values). The index is
// reported in the tensor's own dims [B, H, n, d].
// first: the index in the whole tensor of x's first element (x may be a part of it).
void expect_finite(const char* op, const char* name, std::span<const float> x, int64_t n, int64_t d,
                   int64_t heads, bool allow_neg_inf = false, int64_t first = 0) {
  // Fast path: x * 0 is 0 for every finite x and NaN otherwise; the sum vectorises.
  float probe = 0.f;
  const float* p = x.data();
  const size_t size = x.size();
#pragma omp simd reduction(+ : probe)
  for (size_t i = 0; i < size; ++i) probe += p[i] * 0.f;
  if (probe == 0.f) return;
  for (size_t i = 0; i < x.size(); ++i) {
    const float v = x[i];
    if (std::isfinite(v) || (allow_neg_inf && v == kNegInf)) continue;
    const int64_t j = first + static_cast<int64_t>(i);
    const int64_t per_head = n * d;
    throw Error(
        std::string(op) + ": " + name + " has a non-finite value (" + std::to_string(v) + ") at " +
        dims_str({j / per_head / heads, (j / per_head) % heads, (j % per_head) / d, j % d}) +
        (allow_neg_inf ? "; only -inf is allowed there" : "; inputs must be finite"));
  }
}

void expect_chunk(const char* op, int64_t chunk) {
  if (chunk < 1 || chunk > kMaxChunk)
    throw Error(std::string(op) + ": chunk must be in [1, " + std::to_string(kMaxChunk) +
                "], got " + std::to_string(chunk));
}

void check_dims(const char* op, const AttentionOptions& opt, const AttentionDims& dm) {
  expect_positive(op, "batch", dm.batch);
  expect_positive(op, "heads", dm.heads);
  expect_positive(op, "n_q", dm.n_q);
  expect_positive(op, "n_k", dm.n_k);
  expect_positive(op, "d_key", dm.d_key);
  expect_positive(op, "d_val", dm.d_val);
  expect_chunk(op, opt.chunk);
  if (opt.causal && dm.n_q != dm.n_k)
    throw Error(std::string(op) + ": causal attention needs n_q == n_k, got n_q = " +
                std::to_string(dm.n_q) + ", n_k = " + std::to_string(dm.n_k));
}

void check_state(const char* op, const AttentionState& st, int64_t b, int64_t h, int64_t dk,
                 int64_t dv, Values values) {
  if (st.batch() != b || st.heads() != h || st.d_key() != dk || st.d_val() != dv)
    throw Error(std::string(op) + ": state is for [B, H, dk, dv] = " +
                dims_str({st.batch(), st.heads(), st.d_key(), st.d_val()}) + ", inputs are " +
                dims_str({b, h, dk, dv}));
  if (st.values() != values)
    throw Error(std::string(op) + ": state holds " +
                (st.values() == Values::kLog ? "log-values" : "signed values") +
                " but the call gives " + (values == Values::kLog ? "log-values" : "signed values"));
  st.check_values(op);
}

HeadState head_state(AttentionState& st, int64_t bh) {
  const auto h = st.head(bh);
  return HeadState{h.m, h.z, h.c, h.s};
}

// An empty state (as AttentionState::reset makes) in storage: m [dk], z [dk], c [dv], s [dk, dv].
HeadState empty_head_state(const HeadDims& hd, std::vector<float>& storage) {
  const int64_t dk = hd.dk, dv = hd.dv;
  storage.resize(2 * dk + dv + dk * dv);
  const auto h = AttentionState::parts(storage.data(), dk, dv);
  AttentionState::clear(h, dk, dv, hd.log_values ? Values::kLog : Values::kSigned);
  return HeadState{h.m, h.z, h.c, h.s};
}

// Runs fn(bh, buffers) for every (batch, head) in parallel.
template <typename Fn>
void for_each_head(int64_t bh_count, Fn fn) {
#pragma omp parallel
  {
    thread_local ChunkBuffers buf;  // see ChunkBuffers: reused by the thread's later calls
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < bh_count; ++bh) fn(bh, buf);
  }
}

// The checks forward and backward share: dims, then q, k, v, y sizes and finite inputs.
void check_inputs(const char* op, const AttentionOptions& opt, const AttentionDims& dm,
                  std::span<const float> q, std::span<const float> k, std::span<const float> v,
                  size_t y_size) {
  check_dims(op, opt, dm);
  const int64_t B = dm.batch, H = dm.heads, nq = dm.n_q, nk = dm.n_k, dk = dm.d_key, dv = dm.d_val;
  const bool log_values = opt.values == Values::kLog;
  expect_size(op, "q", q.size(), {B, H, nq, dk});
  expect_size(op, "k", k.size(), {B, H, nk, dk});
  expect_size(op, "v", v.size(), {B, H, nk, dv});
  expect_size(op, "y", y_size, {B, H, nq, dv});
  expect_finite(op, "q", q, nq, dk, H);
  expect_finite(op, "k", k, nk, dk, H);
  expect_finite(op, log_values ? "log_v" : "v", v, nk, dv, H, log_values);
}

}  // namespace

void attention_forward(const AttentionOptions& opt, const AttentionDims& dm,
                       std::span<const float> q, std::span<const float> k, std::span<const float> v,
                       std::span<float> y, std::span<float> log_d, AttentionState* state) {
  const char* op = "attention_forward";
  check_inputs(op, opt, dm, q, k, v, y.size());
  const int64_t B = dm.batch, H = dm.heads, nq = dm.n_q, nk = dm.n_k, dk = dm.d_key, dv = dm.d_val;
  const bool log_values = opt.values == Values::kLog;
  if (!log_d.empty()) expect_size(op, "log_d", log_d.size(), {B, H, nq});
  if (state) check_state(op, *state, B, H, dk, dv, opt.values);
  const HeadDims hd{dk, dv, log_values};
  float* ld = log_d.empty() ? nullptr : log_d.data();
  for_each_head(B * H, [&](int64_t bh, ChunkBuffers& buf) {
    // Without a caller's state, each head starts from an empty one in the thread's buffers.
    const HeadState st = state ? head_state(*state, bh) : empty_head_state(hd, buf.state);
    const float* qh = q.data() + bh * nq * dk;
    const float* kh = k.data() + bh * nk * dk;
    const float* vh = v.data() + bh * nk * dv;
    float* yh = y.data() + bh * nq * dv;
    float* lh = ld ? ld + bh * nq : nullptr;
    if (opt.causal) {
      attention::causal_forward_head(hd, nq, opt.chunk, qh, kh, vh, yh, lh, st, buf);
    } else {
      attention::absorb_head(hd, nk, opt.chunk, kh, vh, st, buf);
      attention::readout_head(hd, nq, opt.chunk, qh, yh, lh, st, buf);
    }
  });
  if (state) state->set_tokens(state->tokens() + nk);
}

namespace {

// attention_step's checks and heads; the token is counted by the caller.
void step_heads(const char* op, std::span<const float> q, std::span<const float> k,
                std::span<const float> v, std::span<float> y, AttentionState& state,
                std::span<float> log_d, int64_t h0, int64_t h1) {
  const int64_t B = state.batch(), H = state.heads(), dk = state.d_key(), dv = state.d_val();
  expect_positive(op, "state heads", B * H);
  if (h0 < 0 || h1 > B * H || h0 >= h1)
    throw Error(std::string(op) + ": heads [" + std::to_string(h0) + ", " + std::to_string(h1) +
                ") are not a non-empty range of the state's " + std::to_string(B * H));
  const bool log_values = state.values() == Values::kLog;
  expect_size(op, "q", q.size(), {B, H, dk});
  expect_size(op, "k", k.size(), {B, H, dk});
  expect_size(op, "v", v.size(), {B, H, dv});
  expect_size(op, "y", y.size(), {B, H, dv});
  if (!log_d.empty()) expect_size(op, "log_d", log_d.size(), {B, H});
  const int64_t n = h1 - h0;
  expect_finite(op, "q", q.subspan(h0 * dk, n * dk), 1, dk, H, false, h0 * dk);
  expect_finite(op, "k", k.subspan(h0 * dk, n * dk), 1, dk, H, false, h0 * dk);
  expect_finite(op, log_values ? "log_v" : "v", v.subspan(h0 * dv, n * dv), 1, dv, H, log_values,
                h0 * dv);
  const HeadDims hd{dk, dv, log_values};
  auto run = [&](int64_t bh) {
    thread_local std::vector<float> work;
    work.resize(2 * (dk + dv));
    attention::step_head(hd, q.data() + bh * dk, k.data() + bh * dk, v.data() + bh * dv,
                         y.data() + bh * dv, log_d.empty() ? nullptr : log_d.data() + bh,
                         head_state(state, bh), work.data());
  };
  // One token per head is little work: threads pay only when there are many heads.
  if (n * dk * dv < 65536) {
    for (int64_t bh = h0; bh < h1; ++bh) run(bh);
  } else {
#pragma omp parallel for schedule(static)
    for (int64_t bh = h0; bh < h1; ++bh) run(bh);
  }
}

}  // namespace

void attention_step(std::span<const float> q, std::span<const float> k, std::span<const float> v,
                    std::span<float> y, AttentionState& state, std::span<float> log_d) {
  step_heads("attention_step", q, k, v, y, state, log_d, 0, state.batch() * state.heads());
  state.set_tokens(state.tokens() + 1);
}

void attention_step_heads(std::span<const float> q, std::span<const float> k,
                          std::span<const float> v, std::span<float> y, AttentionState& state,
                          std::span<float> log_d, int64_t head_begin, int64_t head_end) {
  step_heads("attention_step_heads", q, k, v, y, state, log_d, head_begin, head_end);
}

void attention_add_keys(std::span<const float> k, std::span<const float> v, int64_t n,
                        AttentionState& state, int64_t chunk) {
  const char* op = "attention_add_keys";
  const int64_t B = state.batch(), H = state.heads(), dk = state.d_key(), dv = state.d_val();
  expect_positive(op, "n", n);
  expect_chunk(op, chunk);
  const bool log_values = state.values() == Values::kLog;
  expect_size(op, "k", k.size(), {B, H, n, dk});
  expect_size(op, "v", v.size(), {B, H, n, dv});
  expect_finite(op, "k", k, n, dk, H);
  expect_finite(op, log_values ? "log_v" : "v", v, n, dv, H, log_values);
  const HeadDims hd{dk, dv, log_values};
  for_each_head(B * H, [&](int64_t bh, ChunkBuffers& buf) {
    attention::absorb_head(hd, n, chunk, k.data() + bh * n * dk, v.data() + bh * n * dv,
                           head_state(state, bh), buf);
  });
  state.set_tokens(state.tokens() + n);
}

void attention_read(std::span<const float> q, int64_t n, std::span<float> y,
                    const AttentionState& state, std::span<float> log_d) {
  const char* op = "attention_read";
  const int64_t B = state.batch(), H = state.heads(), dk = state.d_key(), dv = state.d_val();
  expect_positive(op, "n", n);
  if (state.tokens() == 0) throw Error("attention_read: the state holds no keys yet");
  expect_size(op, "q", q.size(), {B, H, n, dk});
  expect_size(op, "y", y.size(), {B, H, n, dv});
  if (!log_d.empty()) expect_size(op, "log_d", log_d.size(), {B, H, n});
  expect_finite(op, "q", q, n, dk, H);
  const HeadDims hd{dk, dv, state.values() == Values::kLog};
  // Read-out does not change the state; the kernel takes a mutable view for uniformity.
  auto& st = const_cast<AttentionState&>(state);
  for_each_head(B * H, [&](int64_t bh, ChunkBuffers& buf) {
    attention::readout_head(hd, n, 64, q.data() + bh * n * dk, y.data() + bh * n * dv,
                            log_d.empty() ? nullptr : log_d.data() + bh * n, head_state(st, bh),
                            buf);
  });
}

void attention_backward(const AttentionOptions& opt, const AttentionDims& dm,
                        std::span<const float> q, std::span<const float> k,
                        std::span<const float> v, std::span<const float> y,
                        std::span<const float> log_d, std::span<const float> gy,
                        std::span<float> gq, std::span<float> gk, std::span<float> gv,
                        const AttentionState* state_in) {
  const char* op = "attention_backward";
  check_inputs(op, opt, dm, q, k, v, y.size());
  const int64_t B = dm.batch, H = dm.heads, nq = dm.n_q, nk = dm.n_k, dk = dm.d_key, dv = dm.d_val;
  const bool log_values = opt.values == Values::kLog;
  expect_size(op, "log_d", log_d.size(), {B, H, nq});
  expect_size(op, "gy", gy.size(), {B, H, nq, dv});
  expect_size(op, "gq", gq.size(), {B, H, nq, dk});
  expect_size(op, "gk", gk.size(), {B, H, nk, dk});
  expect_size(op, "gv", gv.size(), {B, H, nk, dv});
  expect_finite(op, log_values ? "log_y" : "y", y, nq, dv, H, log_values);
  expect_finite(op, "log_d", log_d, nq, 1, H);
  expect_finite(op, "gy", gy, nq, dv, H);
  if (state_in) check_state(op, *state_in, B, H, dk, dv, opt.values);
  const HeadDims hd{dk, dv, false};
  for_each_head(B * H, [&](int64_t bh, ChunkBuffers& buf) {
    const bool st = state_in != nullptr;
    const auto h = st ? state_in->head(bh) : AttentionState::HeadParts<const float>{};
    const float *sm = h.m, *sz = h.z, *sc_in = h.c, *ss = h.s;
    const float* qh = q.data() + bh * nq * dk;
    const float* kh = k.data() + bh * nk * dk;
    const float* lh = log_d.data() + bh * nq;
    float* gqh = gq.data() + bh * nq * dk;
    float* gkh = gk.data() + bh * nk * dk;
    float* gvh = gv.data() + bh * nk * dv;
    if (!log_values) {
      attention::backward_head(hd, opt.causal, true, nq, nk, opt.chunk, qh, kh,
                               v.data() + bh * nk * dv, y.data() + bh * nq * dv, lh,
                               gy.data() + bh * nq * dv, gqh, gkh, gvh, sm, sz, ss, buf);
      return;
    }
    // Log-values: with one reference c*_j per value column (the maximum over the state and
    // the keys), vc = exp(log v - c*), yc = exp(log y - c*) and gyc = g / yc turn the
    // log-value backward into the signed one; d(log v) = dvc * vc.
    const float* lv = v.data() + bh * nk * dv;
    const float* ly = y.data() + bh * nq * dv;
    const float* lg = gy.data() + bh * nq * dv;
    std::vector<float> cs(dv, kNegInf), sc;
    std::vector<float>& vc = buf.log_v;
    std::vector<float>& yc = buf.log_y;
    std::vector<float>& gyc = buf.log_g;
    vc.resize(nk * dv);
    yc.resize(nq * dv);
    gyc.resize(nq * dv);
    if (st) {
      for (int64_t j = 0; j < dv; ++j) cs[j] = sc_in[j];
    }
    for (int64_t s = 0; s < nk; ++s)
      for (int64_t j = 0; j < dv; ++j) cs[j] = std::max(cs[j], lv[s * dv + j]);
    for (int64_t s = 0; s < nk; ++s)
      for (int64_t j = 0; j < dv; ++j)
        vc[s * dv + j] = cs[j] == kNegInf ? 0.f : std::exp(lv[s * dv + j] - cs[j]);
    for (int64_t t = 0; t < nq; ++t) {
      for (int64_t j = 0; j < dv; ++j) {
        const float l = ly[t * dv + j];
        const bool live = cs[j] != kNegInf && l != kNegInf;
        yc[t * dv + j] = live ? std::exp(l - cs[j]) : 0.f;
        gyc[t * dv + j] = live ? lg[t * dv + j] * std::exp(cs[j] - l) : 0.f;
      }
    }
    if (st) {
      sc.assign(ss, ss + dk * dv);
      for (int64_t d = 0; d < dk; ++d)
        for (int64_t j = 0; j < dv; ++j) {
          const float cj = sc_in[j];
          sc[d * dv + j] *= cj == kNegInf ? 0.f : std::exp(cj - cs[j]);
        }
    }
    attention::backward_head(hd, opt.causal, false, nq, nk, opt.chunk, qh, kh, vc.data(), yc.data(),
                             lh, gyc.data(), gqh, gkh, gvh, sm, sz, st ? sc.data() : nullptr, buf);
    // d(log v) = dvc * exp(log v - c*), with that exp in float64: where a column spans more
    // than about 87 nats, exp(log v - c*) falls below float32's normal range, and a
    // subnormal factor would carry its lost digits into a gradient that is representable.
    for (int64_t s = 0; s < nk; ++s)
      for (int64_t j = 0; j < dv; ++j) {
        const int64_t i = s * dv + j;
        gvh[i] = cs[j] == kNegInf
                     ? 0.f
                     : static_cast<float>(gvh[i] * std::exp(static_cast<double>(lv[i]) - cs[j]));
      }
  });
}

}  // namespace logattn
