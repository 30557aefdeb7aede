#include "ops/typed_matrix.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "logattn/error.h"
#include "ops/elementwise.h"
#include "ops/gemv.h"
#include "ops/int8_kernels.h"
#include "threading/parallel.h"
#include "threading/partner.h"

namespace logattn::ops {

namespace {

// Rows per task: whole cache lines of y; one-row products below this many weights stay on
// the calling thread (a handover costs more than they take).
constexpr int64_t kRowsPerBlock = 64;
constexpr int64_t kSplitWeights = int64_t{1} << 15;

// x's rows quantized as q8_0 (the activations' side of the integer dot products).
void quantize_rows(int64_t m, int64_t cols, const float* x, std::vector<int8_t>& q,
                   std::vector<float>& d) {
  q.resize(static_cast<size_t>(m * cols));
  d.resize(static_cast<size_t>(m * cols / kQ8Block));
  quantize_q8_0(m, cols, x, q.data(), d.data());
}

template <typename RowsFn>
void split_rows(int64_t rows, int64_t m, int64_t cols, RowsFn rows_fn) {
  const int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  auto block = [&](int64_t i) {
    const int64_t r0 = i * kRowsPerBlock;
    rows_fn(r0, std::min(rows, r0 + kRowsPerBlock));
  };
  if (m == 1) {
    if (rows * cols < kSplitWeights || !partner_available())
      for (int64_t i = 0; i < blocks; ++i) block(i);
    else
      run_blocks(blocks, block);
  } else {
    parallel_for(blocks, rows * cols * m, block);
  }
}

}  // namespace

const char* weight_type_name(WeightType t) {
  switch (t) {
    case WeightType::kF32:
      return "f32";
    case WeightType::kBF16:
      return "bf16";
    case WeightType::kQ8_0:
      return "q8_0";
  }
  return "?";
}

WeightType parse_weight_type(const std::string& name, const std::string& what) {
  for (WeightType t : {WeightType::kF32, WeightType::kBF16, WeightType::kQ8_0})
    if (name == weight_type_name(t)) return t;
  throw Error(what + ": unknown weight type '" + name + "' (known: f32, bf16, q8_0)");
}

Matrix Matrix::rows_view(int64_t r0, int64_t n) const {
  Matrix v = *this;
  v.rows = n;
  switch (type) {
    case WeightType::kF32:
      v.data = static_cast<const float*>(data) + r0 * cols;
      break;
    case WeightType::kBF16:
      v.data = static_cast<const uint16_t*>(data) + r0 * cols;
      break;
    case WeightType::kQ8_0:
      v.data = static_cast<const int8_t*>(data) + r0 * cols;
      v.scales = scales + r0 * (cols / kQ8Block);
      break;
  }
  return v;
}

void linear(const Matrix& w, int64_t m, const float* x, const float* bias, float* y,
            Reduce reduce) {
  const int64_t rows = w.rows, cols = w.cols;
  if (w.type == WeightType::kF32 && reduce == Reduce::kRowBlocks) {
    const auto* wf = static_cast<const float*>(w.data);
    thread_local std::vector<float> xb, yb;
    for (int64_t r0 = 0; r0 < m; r0 += kReduceBlock) {
      const int64_t n = std::min(kReduceBlock, m - r0);
      if (n == kReduceBlock) {
        linear_forward(n, cols, rows, x + r0 * cols, wf, bias, y + r0 * rows);
        continue;
      }
      xb.assign(static_cast<size_t>(kReduceBlock * cols), 0.f);
      yb.resize(static_cast<size_t>(kReduceBlock * rows));
      std::copy(x + r0 * cols, x + (r0 + n) * cols, xb.begin());
      linear_forward(kReduceBlock, cols, rows, xb.data(), wf, bias, yb.data());
      std::copy(yb.begin(), yb.begin() + n * rows, y + r0 * rows);
    }
    return;
  }
  if (w.type == WeightType::kF32 && (reduce == Reduce::kFastest || m == 1)) {
    linear_forward(m, cols, rows, x, static_cast<const float*>(w.data), bias, y);
    return;
  }
  if (w.type == WeightType::kF32) {
    // Each row through the one-row kernel that ops::gemm uses for m = 1 (a row's sum does not
    // depend on the block of weight rows it is handed with).
    const auto* wf = static_cast<const float*>(w.data);
    split_rows(rows, m, cols, [&](int64_t r0, int64_t r1) {
      for (int64_t i = 0; i < m; ++i)
        kernels::gemv_rows(r1 - r0, cols, 1.f, wf + r0 * cols, cols, x + i * cols, 0.f,
                           y + i * rows + r0);
    });
    if (bias) add_bias(m, rows, bias, y);
    return;
  }
  const Int8Kernel k = int8_kernel();
  if (w.type == WeightType::kBF16) {
    const auto* wb = static_cast<const uint16_t*>(w.data);
    split_rows(rows, m, cols, [&](int64_t r0, int64_t r1) {
      kernels::bf16_rows(k, r1 - r0, cols, wb + r0 * cols, m, x, y + r0, rows);
    });
  } else {
    const int64_t nb = cols / kQ8Block;
    thread_local std::vector<int8_t> xq;
    thread_local std::vector<float> xd;
    quantize_rows(m, cols, x, xq, xd);
    const auto* wq = static_cast<const int8_t*>(w.data);
    const int8_t* xqp = xq.data();
    const float* xdp = xd.data();
    split_rows(rows, m, cols, [&](int64_t r0, int64_t r1) {
      kernels::q8_rows(k, r1 - r0, nb, wq + r0 * cols, w.scales + r0 * nb, m, xqp, xdp, y + r0,
                       rows);
    });
  }
  if (bias) add_bias(m, rows, bias, y);
}

void matrix_row(const Matrix& w, int64_t r, float* out) {
  const int64_t cols = w.cols;
  switch (w.type) {
    case WeightType::kF32: {
      const float* p = static_cast<const float*>(w.data) + r * cols;
      std::copy(p, p + cols, out);
      return;
    }
    case WeightType::kBF16: {
      const uint16_t* p = static_cast<const uint16_t*>(w.data) + r * cols;
      for (int64_t i = 0; i < cols; ++i) out[i] = from_bf16(p[i]);
      return;
    }
    case WeightType::kQ8_0: {
      const int8_t* p = static_cast<const int8_t*>(w.data) + r * cols;
      const float* d = w.scales + r * (cols / kQ8Block);
      for (int64_t i = 0; i < cols; ++i) out[i] = d[i / kQ8Block] * static_cast<float>(p[i]);
      return;
    }
  }
}

void quantize_q8_0(int64_t rows, int64_t cols, const float* w, int8_t* q, float* scales) {
  if (cols % kQ8Block != 0)
    throw Error("q8_0: rows of " + std::to_string(cols) + " values do not split into blocks of 32");
  const int64_t nb = cols / kQ8Block;
  for (int64_t b = 0; b < rows * nb; ++b) {
    const float* x = w + b * kQ8Block;
    float amax = 0.f;
    bool finite = true;
    for (int64_t i = 0; i < kQ8Block; ++i) {
      finite = finite && std::isfinite(x[i]);
      amax = std::max(amax, std::fabs(x[i]));
    }
    // A non-finite value makes its block's scale NaN, so that the products it enters are NaN
    // as they would be in float32 (and are caught where non-finite values are).
    const float d = finite ? amax / 127.f : NAN;
    scales[b] = d;
    for (int64_t i = 0; i < kQ8Block; ++i)
      q[b * kQ8Block + i] =
          !finite || d == 0.f
              ? 0
              : static_cast<int8_t>(std::clamp(std::nearbyint(x[i] / d), -127.f, 127.f));
  }
}

uint16_t to_bf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>(bits >> 16);
}

}  // namespace logattn::ops
