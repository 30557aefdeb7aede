// AttentionState: storage, reset, and conversion to and from the paper's log-space state.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "logattn/attention.h"
#include "util/checked.h"

namespace logattn {

namespace {
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
}

AttentionState::AttentionState(int64_t batch, int64_t heads, int64_t d_key, int64_t d_val,
                               Values values)
    : batch_(batch), heads_(heads), d_key_(d_key), d_val_(d_val), values_(values) {
  if (batch < 1 || heads < 1 || d_key < 1 || d_val < 1)
    throw Error("AttentionState: batch, heads, d_key and d_val must be at least 1, got " +
                std::to_string(batch) + ", " + std::to_string(heads) + ", " +
                std::to_string(d_key) + ", " + std::to_string(d_val));
  // floats_per_head() = 2 d_key + d_val + d_key d_val <= (d_key + 1) (d_val + 2): checked
  // before it is computed.
  util::checked_product({d_key}, "AttentionState: d_key");
  util::checked_product({d_val}, "AttentionState: d_val");
  const int64_t bound = util::checked_product({d_key + 1, d_val + 2}, "AttentionState: per head");
  util::checked_product({batch, heads, bound}, "AttentionState: batch x heads x per head");
  data_.resize(static_cast<size_t>(batch * heads * floats_per_head()));
  reset();
}

void AttentionState::reset() {
  tokens_ = 0;
  for (int64_t bh = 0; bh < batch_ * heads_; ++bh) clear(head(bh), d_key_, d_val_, values_);
}

void AttentionState::clear(HeadParts<float> h, int64_t d_key, int64_t d_val, Values values) {
  std::fill(h.m, h.m + d_key, kNegInf);
  std::fill(h.z, h.z + d_key, 0.f);
  std::fill(h.c, h.c + d_val, values == Values::kLog ? kNegInf : 0.f);
  std::fill(h.s, h.s + d_key * d_val, 0.f);
}

void AttentionState::to_log_space(std::span<float> h_s, std::span<float> h_z) const {
  const int64_t dk = d_key_, dv = d_val_, n = batch_ * heads_;
  if (static_cast<int64_t>(h_s.size()) != n * dk * dv || static_cast<int64_t>(h_z.size()) != n * dk)
    throw Error(
        "AttentionState::to_log_space: h_s must have B*H*dk*dv = " + std::to_string(n * dk * dv) +
        " and h_z B*H*dk = " + std::to_string(n * dk) + " elements");
  for (int64_t bh = 0; bh < n; ++bh) {
    const auto [m, z, c, s] = head(bh);
    for (int64_t d = 0; d < dk; ++d) {
      h_z[bh * dk + d] = z[d] > 0.f ? std::log(z[d]) + m[d] : kNegInf;
      for (int64_t j = 0; j < dv; ++j) {
        const float x = s[d * dv + j];
        if (x < 0.f)
          throw Error(
              "AttentionState::to_log_space: the state holds a negative sum (signed "
              "values); the log-space form needs non-negative values");
        h_s[(bh * dk + d) * dv + j] = x > 0.f ? std::log(x) + m[d] + c[j] : kNegInf;
      }
    }
  }
}

void AttentionState::check_values(const std::string& op) const {
  if (tokens_ < 0)
    throw Error(op + ": the state's token count is negative (" + std::to_string(tokens_) + ")");
  const int64_t dk = d_key_, dv = d_val_;
  auto bad = [&](int64_t bh, const char* part, int64_t i, float x, const char* rule) {
    throw Error(op + ": the state of head " + std::to_string(bh % heads_) + " of batch " +
                std::to_string(bh / heads_) + " has " + part + "[" + std::to_string(i) +
                "] = " + std::to_string(x) + "; " + rule);
  };
  for (int64_t bh = 0; bh < batch_ * heads_; ++bh) {
    const auto h = head(bh);
    for (int64_t i = 0; i < dk; ++i) {
      if (std::isnan(h.m[i]) || h.m[i] == INFINITY) bad(bh, "m", i, h.m[i], "m is finite or -inf");
      if (!std::isfinite(h.z[i]) || h.z[i] < 0) bad(bh, "z", i, h.z[i], "z is finite and >= 0");
    }
    for (int64_t j = 0; j < dv; ++j)
      if (std::isnan(h.c[j]) || h.c[j] == INFINITY) bad(bh, "c", j, h.c[j], "c is finite or -inf");
    for (int64_t i = 0; i < dk * dv; ++i)
      if (!std::isfinite(h.s[i])) bad(bh, "s", i, h.s[i], "s is finite");
  }
}

AttentionState AttentionState::from_log_space(int64_t batch, int64_t heads, int64_t d_key,
                                              int64_t d_val, Values values,
                                              std::span<const float> h_s,
                                              std::span<const float> h_z, int64_t tokens) {
  AttentionState st(batch, heads, d_key, d_val, values);
  const int64_t dk = d_key, dv = d_val, n = batch * heads;
  if (static_cast<int64_t>(h_s.size()) != n * dk * dv || static_cast<int64_t>(h_z.size()) != n * dk)
    throw Error(
        "AttentionState::from_log_space: h_s must have B*H*dk*dv = " + std::to_string(n * dk * dv) +
        " and h_z B*H*dk = " + std::to_string(n * dk) + " elements");
  for (float x : h_s)
    if (std::isnan(x) || x == INFINITY)
      throw Error("AttentionState::from_log_space: h_s has NaN or +inf");
  for (float x : h_z)
    if (std::isnan(x) || x == INFINITY)
      throw Error("AttentionState::from_log_space: h_z has NaN or +inf");
  if (tokens < 0)
    throw Error("AttentionState::from_log_space: tokens must be at least 0, got " +
                std::to_string(tokens));
  st.tokens_ = tokens;
  for (int64_t bh = 0; bh < n; ++bh) {
    const auto [m, z, c, s] = st.head(bh);
    const float* hs = h_s.data() + bh * dk * dv;
    const float* hz = h_z.data() + bh * dk;
    // Reference each key feature at its own log Z, so z = 1 where the sum is not empty.
    for (int64_t d = 0; d < dk; ++d) {
      m[d] = hz[d];
      z[d] = hz[d] == kNegInf ? 0.f : 1.f;
    }
    if (values == Values::kLog) {
      for (int64_t j = 0; j < dv; ++j) {
        c[j] = kNegInf;
        for (int64_t d = 0; d < dk; ++d)
          if (hz[d] != kNegInf) c[j] = std::max(c[j], hs[d * dv + j] - hz[d]);
      }
    }
    for (int64_t d = 0; d < dk; ++d)
      for (int64_t j = 0; j < dv; ++j) {
        const float x = hs[d * dv + j];
        if (hz[d] == kNegInf || x == kNegInf) {
          if (x != kNegInf)
            throw Error("AttentionState::from_log_space: h_s is finite where h_z is -inf");
          continue;
        }
        const float cj = values == Values::kLog ? c[j] : 0.f;
        s[d * dv + j] = std::exp(x - hz[d] - cj);
      }
  }
  return st;
}

}  // namespace logattn
