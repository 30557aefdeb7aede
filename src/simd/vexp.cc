#include "simd/vexp.h"

#include <cmath>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#include <sleef.h>
#endif

namespace logattn::simd {

namespace {

// op(x, b) is applied lane-wise before the exp; the tail goes through a masked-off copy so
// that every element takes the same vector code path (bit-identical results for any n).
#if defined(__AVX512F__)
constexpr int kLanes = 16;
using Vec = __m512;
inline Vec load(const float* p) {
  return _mm512_loadu_ps(p);
}
inline void store(float* p, Vec v) {
  _mm512_storeu_ps(p, v);
}
inline Vec vadd(Vec a, Vec b) {
  return _mm512_add_ps(a, b);
}
inline Vec vsub(Vec a, Vec b) {
  return _mm512_sub_ps(a, b);
}
inline Vec vexp(Vec a) {
  return Sleef_expf16_u10avx512f(a);
}
inline Vec vlog1p(Vec a) {
  return Sleef_log1pf16_u10avx512f(a);
}
inline Vec vlog(Vec a) {
  return Sleef_logf16_u10avx512f(a);
}
#elif defined(__AVX2__)
constexpr int kLanes = 8;
using Vec = __m256;
inline Vec load(const float* p) {
  return _mm256_loadu_ps(p);
}
inline void store(float* p, Vec v) {
  _mm256_storeu_ps(p, v);
}
inline Vec vadd(Vec a, Vec b) {
  return _mm256_add_ps(a, b);
}
inline Vec vsub(Vec a, Vec b) {
  return _mm256_sub_ps(a, b);
}
inline Vec vexp(Vec a) {
  return Sleef_expf8_u10avx2(a);
}
inline Vec vlog1p(Vec a) {
  return Sleef_log1pf8_u10avx2(a);
}
inline Vec vlog(Vec a) {
  return Sleef_logf8_u10avx2(a);
}
#endif

enum class Op { kNone, kAdd, kSub, kLog1p, kLog };

template <Op op>
void apply(const float* x, const float* b, float* y, int64_t n) {
#if defined(__AVX512F__) || defined(__AVX2__)
  auto finish = [](Vec v) {
    if constexpr (op == Op::kLog1p) return vlog1p(v);
    if constexpr (op == Op::kLog) return vlog(v);
    if constexpr (op != Op::kLog1p && op != Op::kLog) return vexp(v);
  };
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    Vec v = load(x + i);
    if constexpr (op == Op::kAdd) v = vadd(v, load(b + i));
    if constexpr (op == Op::kSub) v = vsub(v, load(b + i));
    store(y + i, finish(v));
  }
  if (i < n) {
    alignas(64) float xs[kLanes] = {}, bs[kLanes] = {}, ys[kLanes];
    for (int64_t j = i; j < n; ++j) {
      xs[j - i] = x[j];
      if constexpr (op == Op::kAdd || op == Op::kSub) bs[j - i] = b[j];
    }
    Vec v = load(xs);
    if constexpr (op == Op::kAdd) v = vadd(v, load(bs));
    if constexpr (op == Op::kSub) v = vsub(v, load(bs));
    store(ys, finish(v));
    for (int64_t j = i; j < n; ++j) y[j] = ys[j - i];
  }
#else
  for (int64_t i = 0; i < n; ++i) {
    float v = x[i];
    if constexpr (op == Op::kAdd) v += b[i];
    if constexpr (op == Op::kSub) v -= b[i];
    y[i] = op == Op::kLog1p ? std::log1p(v) : op == Op::kLog ? std::log(v) : std::exp(v);
  }
#endif
}

}  // namespace

void exp(const float* x, float* y, int64_t n) {
  apply<Op::kNone>(x, nullptr, y, n);
}
void exp_add(const float* x, const float* b, float* y, int64_t n) {
  apply<Op::kAdd>(x, b, y, n);
}
void exp_sub(const float* x, const float* b, float* y, int64_t n) {
  apply<Op::kSub>(x, b, y, n);
}
void log1p(const float* x, float* y, int64_t n) {
  apply<Op::kLog1p>(x, nullptr, y, n);
}
void log(const float* x, float* y, int64_t n) {
  apply<Op::kLog>(x, nullptr, y, n);
}

std::string sleef_version() {
#if defined(__AVX512F__) || defined(__AVX2__)
  return "SLEEF " + std::to_string(SLEEF_VERSION_MAJOR) + "." +
         std::to_string(SLEEF_VERSION_MINOR) + "." + std::to_string(SLEEF_VERSION_PATCHLEVEL);
#else
  return "libm (no SLEEF: built without AVX2)";
#endif
}

const char* exp_isa() {
#if defined(__AVX512F__)
  return "avx512f (SLEEF)";
#elif defined(__AVX2__)
  return "avx2 (SLEEF)";
#else
  return "scalar (libm)";
#endif
}

}  // namespace logattn::simd
