#include "ops/int8_kernels.h"

#include <cmath>
#include <cstdlib>
#include <string>

#include "logattn/error.h"
#include "ops/typed_matrix.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define LOGATTN_X86 1
#endif

namespace logattn::ops {

namespace {

// The lanes' final sum, in the order every variant uses.
inline float sum_lanes(const float l[8]) {
  return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

void q8_rows_scalar(int64_t rows, int64_t nb, const int8_t* wq, const float* wd, int64_t m,
                    const int8_t* xq, const float* xd, float* out, int64_t ldo) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < m; ++i) {
      float acc[8] = {};
      const int8_t* w = wq + r * nb * 32;
      const int8_t* x = xq + i * nb * 32;
      for (int64_t b = 0; b < nb; ++b) {
        const float d = wd[r * nb + b] * xd[i * nb + b];
        for (int j = 0; j < 8; ++j) {
          int32_t s = 0;
          for (int t = 0; t < 4; ++t) s += int32_t{w[32 * b + 4 * j + t]} * x[32 * b + 4 * j + t];
          acc[j] = std::fma(static_cast<float>(s), d, acc[j]);
        }
      }
      out[i * ldo + r] = sum_lanes(acc);
    }
}

// A bf16 row's last cols % 8 products, added one by one to the lanes' sum s.
inline float bf16_tail(const uint16_t* wr, const float* x, int64_t c8, int64_t cols, float s) {
  for (int64_t c = c8; c < cols; ++c) s = std::fma(from_bf16(wr[c]), x[c], s);
  return s;
}

void bf16_rows_scalar(int64_t rows, int64_t cols, const uint16_t* w, int64_t m, const float* x,
                      float* out, int64_t ldo) {
  const int64_t c8 = cols / 8 * 8;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t i = 0; i < m; ++i) {
      const uint16_t* wr = w + r * cols;
      const float* xi = x + i * cols;
      float acc[8] = {};
      for (int64_t c = 0; c < c8; c += 8)
        for (int j = 0; j < 8; ++j) acc[j] = std::fma(from_bf16(wr[c + j]), xi[c + j], acc[j]);
      out[i * ldo + r] = bf16_tail(wr, xi, c8, cols, sum_lanes(acc));
    }
}

#ifdef LOGATTN_X86

#define LOGATTN_AVX2 __attribute__((target("avx2,fma")))

LOGATTN_AVX2 inline float sum_lanes_avx(__m256 v) {
  alignas(32) float l[8];
  _mm256_store_ps(l, v);
  return sum_lanes(l);
}

// One block's eight partial sums: lane j = sum_{t < 4} w[4j + t] x[4j + t]. vpmaddubsw takes
// unsigned x signed bytes: |w| against x with w's sign (pairs of products fit int16:
// 2 x 127 x 127 < 32767), then vpmaddwd adds the pairs.
LOGATTN_AVX2 inline __m256i block_avx2(__m256i w, __m256i x) {
  const __m256i aw = _mm256_sign_epi8(w, w);
  const __m256i sx = _mm256_sign_epi8(x, w);
  const __m256i pairs = _mm256_maddubs_epi16(aw, sx);
  return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
}

// Each weight row against G rows of x at once (G accumulators: independent chains of fused
// multiply-adds, each weight block loaded once for them); every (weight row, x row) pair is
// summed by the same operations in the same order whatever G is, so a row of x gets the bits
// it gets alone.
template <int G, typename Block>
LOGATTN_AVX2 inline void q8_group(Block block, int64_t nb, const int8_t* w, const float* d,
                                  const int8_t* xq, const float* xd, float* out, int64_t ldo) {
  __m256 acc[G];
  for (int g = 0; g < G; ++g) acc[g] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 32 * b));
    for (int g = 0; g < G; ++g) {
      const __m256i xv =
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + g * nb * 32 + 32 * b));
      const __m256 s = _mm256_cvtepi32_ps(block(wv, xv));
      acc[g] = _mm256_fmadd_ps(s, _mm256_set1_ps(d[b] * xd[g * nb + b]), acc[g]);
    }
  }
  for (int g = 0; g < G; ++g) out[g * ldo] = sum_lanes_avx(acc[g]);
}

template <typename Block>
LOGATTN_AVX2 inline void q8_rows_with(Block block, int64_t rows, int64_t nb, const int8_t* wq,
                                      const float* wd, int64_t m, const int8_t* xq, const float* xd,
                                      float* out, int64_t ldo) {
  for (int64_t r = 0; r < rows; ++r) {
    const int8_t* w = wq + r * nb * 32;
    const float* d = wd + r * nb;
    int64_t i = 0;
    for (; i + 4 <= m; i += 4)
      q8_group<4>(block, nb, w, d, xq + i * nb * 32, xd + i * nb, out + i * ldo + r, ldo);
    for (; i < m; ++i)
      q8_group<1>(block, nb, w, d, xq + i * nb * 32, xd + i * nb, out + i * ldo + r, ldo);
  }
}

LOGATTN_AVX2 void q8_rows_avx2(int64_t rows, int64_t nb, const int8_t* wq, const float* wd,
                               int64_t m, const int8_t* xq, const float* xd, float* out,
                               int64_t ldo) {
  q8_rows_with([](__m256i w, __m256i x) LOGATTN_AVX2 { return block_avx2(w, x); }, rows, nb, wq, wd,
               m, xq, xd, out, ldo);
}

// vpdpbusd: unsigned x signed bytes, four products per int32 lane, in one instruction.
__attribute__((target("avx2,fma,avxvnni"))) void q8_rows_avxvnni(int64_t rows, int64_t nb,
                                                                 const int8_t* wq, const float* wd,
                                                                 int64_t m, const int8_t* xq,
                                                                 const float* xd, float* out,
                                                                 int64_t ldo) {
  q8_rows_with(
      [](__m256i w, __m256i x) __attribute__((target("avx2,fma,avxvnni"))) {
        return _mm256_dpbusd_avx_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(w, w),
                                       _mm256_sign_epi8(x, w));
      },
      rows, nb, wq, wd, m, xq, xd, out, ldo);
}

__attribute__((target("avx2,fma,avx512f,avx512vl,avx512vnni"))) void q8_rows_avx512vnni(
    int64_t rows, int64_t nb, const int8_t* wq, const float* wd, int64_t m, const int8_t* xq,
    const float* xd, float* out, int64_t ldo) {
  q8_rows_with(
      [](__m256i w, __m256i x) __attribute__((target("avx2,fma,avx512f,avx512vl,avx512vnni"))) {
        return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_sign_epi8(w, w),
                                   _mm256_sign_epi8(x, w));
      },
      rows, nb, wq, wd, m, xq, xd, out, ldo);
}

// A bf16 weight row against G rows of x at once, each summed as it is alone (as q8_group).
template <int G>
LOGATTN_AVX2 inline void bf16_group(int64_t cols, const uint16_t* wr, const float* x, float* out,
                                    int64_t ldo) {
  const int64_t c8 = cols / 8 * 8;
  __m256 acc[G];
  for (int g = 0; g < G; ++g) acc[g] = _mm256_setzero_ps();
  for (int64_t c = 0; c < c8; c += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wr + c));
    const __m256 f = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    for (int g = 0; g < G; ++g)
      acc[g] = _mm256_fmadd_ps(f, _mm256_loadu_ps(x + g * cols + c), acc[g]);
  }
  for (int g = 0; g < G; ++g)
    out[g * ldo] = bf16_tail(wr, x + g * cols, c8, cols, sum_lanes_avx(acc[g]));
}

LOGATTN_AVX2 void bf16_rows_avx2(int64_t rows, int64_t cols, const uint16_t* w, int64_t m,
                                 const float* x, float* out, int64_t ldo) {
  for (int64_t r = 0; r < rows; ++r) {
    const uint16_t* wr = w + r * cols;
    int64_t i = 0;
    for (; i + 4 <= m; i += 4) bf16_group<4>(cols, wr, x + i * cols, out + i * ldo + r, ldo);
    for (; i < m; ++i) bf16_group<1>(cols, wr, x + i * cols, out + i * ldo + r, ldo);
  }
}

#endif  // LOGATTN_X86

Int8Kernel best_kernel() {
  for (Int8Kernel k : {Int8Kernel::kAvx512Vnni, Int8Kernel::kAvxVnni, Int8Kernel::kAvx2})
    if (int8_kernel_supported(k)) return k;
  return Int8Kernel::kScalar;
}

Int8Kernel initial_kernel() {
  const char* env = std::getenv("LOGATTN_INT8");
  if (!env || !*env) return best_kernel();
  for (Int8Kernel k :
       {Int8Kernel::kScalar, Int8Kernel::kAvx2, Int8Kernel::kAvxVnni, Int8Kernel::kAvx512Vnni})
    if (std::string(env) == int8_kernel_name(k)) {
      if (!int8_kernel_supported(k))
        throw Error(std::string("LOGATTN_INT8=") + env + ": this CPU lacks those instructions");
      return k;
    }
  throw Error(std::string("LOGATTN_INT8=") + env +
              " is not a kernel (known: scalar, avx2, avx-vnni, avx512-vnni)");
}

Int8Kernel& current() {
  static Int8Kernel k = initial_kernel();
  return k;
}

}  // namespace

const char* int8_kernel_name(Int8Kernel k) {
  switch (k) {
    case Int8Kernel::kScalar:
      return "scalar";
    case Int8Kernel::kAvx2:
      return "avx2";
    case Int8Kernel::kAvxVnni:
      return "avx-vnni";
    case Int8Kernel::kAvx512Vnni:
      return "avx512-vnni";
  }
  return "?";
}

bool int8_kernel_supported(Int8Kernel k) {
#ifdef LOGATTN_X86
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  switch (k) {
    case Int8Kernel::kScalar:
      return true;
    case Int8Kernel::kAvx2:
      return avx2;
    case Int8Kernel::kAvxVnni: {
      // CPUID leaf 7, subleaf 1, EAX bit 4 (not every compiler's __builtin_cpu_supports
      // knows "avxvnni"); the YMM state it needs is AVX2's.
      unsigned a = 0, b = 0, c = 0, d = 0;
      return avx2 && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 4));
    }
    case Int8Kernel::kAvx512Vnni:
      return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("avx512vnni");
  }
  return false;
#else
  return k == Int8Kernel::kScalar;
#endif
}

Int8Kernel int8_kernel() {
  return current();
}

void set_int8_kernel(Int8Kernel k) {
  if (!int8_kernel_supported(k))
    throw Error(std::string("int8 kernel ") + int8_kernel_name(k) + ": this CPU lacks it");
  current() = k;
}

namespace kernels {

void q8_rows(Int8Kernel k, int64_t rows, int64_t nb, const int8_t* wq, const float* wd, int64_t m,
             const int8_t* xq, const float* xd, float* out, int64_t ldo) {
  switch (k) {
#ifdef LOGATTN_X86
    case Int8Kernel::kAvx512Vnni:
      return q8_rows_avx512vnni(rows, nb, wq, wd, m, xq, xd, out, ldo);
    case Int8Kernel::kAvxVnni:
      return q8_rows_avxvnni(rows, nb, wq, wd, m, xq, xd, out, ldo);
    case Int8Kernel::kAvx2:
      return q8_rows_avx2(rows, nb, wq, wd, m, xq, xd, out, ldo);
#endif
    default:
      return q8_rows_scalar(rows, nb, wq, wd, m, xq, xd, out, ldo);
  }
}

void bf16_rows(Int8Kernel k, int64_t rows, int64_t cols, const uint16_t* w, int64_t m,
               const float* x, float* out, int64_t ldo) {
#ifdef LOGATTN_X86
  if (k != Int8Kernel::kScalar) return bf16_rows_avx2(rows, cols, w, m, x, out, ldo);
#endif
  bf16_rows_scalar(rows, cols, w, m, x, out, ldo);
}

}  // namespace kernels
}  // namespace logattn::ops
