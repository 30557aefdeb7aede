// Weight matrices that carry their storage type, and the one place products dispatch on it:
// float32, bf16 (float32's upper half, rounded to nearest even), or q8_0 (llama.cpp's Q8_0
// scheme: blocks of 32 int8 along a row, one scale per block, here a float32 scale). The
// model asks for y = x W^T through linear(); adding a type touches this file and its
// kernels, not the model.
#pragma once

#include <cstdint>
#include <string>

namespace logattn::ops {

enum class WeightType { kF32, kBF16, kQ8_0 };

const char* weight_type_name(WeightType t);  // "f32", "bf16", "q8_0"
// Throws logattn::Error naming `what` and the known types.
WeightType parse_weight_type(const std::string& name, const std::string& what);

inline constexpr int64_t kQ8Block = 32;  // q8_0's block: values per scale

// A row-major [rows, cols] matrix. f32: data is float[rows * cols]; bf16: uint16[rows * cols];
// q8_0: int8[rows * cols] and scales float[rows * cols / 32] (cols a multiple of 32).
struct Matrix {
  WeightType type = WeightType::kF32;
  int64_t rows = 0, cols = 0;
  const void* data = nullptr;
  const float* scales = nullptr;

  // Rows [r0, r0 + n) of this matrix.
  Matrix rows_view(int64_t r0, int64_t n) const;
};

// How the m rows of x are reduced against the weights.
//  kFastest: as the backend does it fastest (training, prompts): float32 through ops::gemm,
//    whose matrix products may sum a row in another order than a product of that row alone.
//  kEachRowAlone: every row exactly as a product of that row alone (m = 1) sums it, so that
//    a sequence's results do not depend on the others in its batch (a generation step of
//    several sequences); the weights are still read once for all rows (a block of weight
//    rows stays in cache while every row of x goes over it).
//  kRowBlocks: the rows in products of exactly kReduceBlock rows each (the last one padded
//    with zeros), so that a row's sum is made by the same code in the same order whatever m
//    is, when its place in its block is the same: a prompt read in blocks that start at the
//    same positions of the sequence gives the same bits however it is split into calls.
// bf16 and q8_0 always reduce each row alone.
enum class Reduce { kFastest, kEachRowAlone, kRowBlocks };
inline constexpr int64_t kReduceBlock = 64;

// y[m, rows] = x[m, cols] W^T (+ bias[rows] when given). float32 goes to ops::gemm, or to
// the one-row kernels row by row (Reduce::kEachRowAlone); bf16 and q8_0 to logattn's kernels,
// chosen by the CPU's features (ops/int8_kernels.h). One row splits its rows with the
// partner thread, more rows go to OpenMP's threads; a row's sum is the same either way.
void linear(const Matrix& w, int64_t m, const float* x, const float* bias, float* y,
            Reduce reduce = Reduce::kFastest);

// Row r of w as float32 (an embedding lookup): out[cols].
void matrix_row(const Matrix& w, int64_t r, float* out);

// Quantization. q8_0: per block of 32, d = max |w| / 127, q = round(w / d) (d = 0, q = 0 for an
// all-zero block); w: [rows, cols], q: [rows, cols], scales: [rows, cols / 32].
void quantize_q8_0(int64_t rows, int64_t cols, const float* w, int8_t* q, float* scales);
// bf16: round to nearest even (NaN stays NaN).
uint16_t to_bf16(float x);
inline float from_bf16(uint16_t h) {
  const uint32_t bits = uint32_t{h} << 16;
  float f;
  __builtin_memcpy(&f, &bits, 4);
  return f;
}

}  // namespace logattn::ops
