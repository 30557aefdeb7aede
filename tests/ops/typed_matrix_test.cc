// Typed weight matrices (ops/typed_matrix.h): each int8 / bf16 kernel variant this CPU has
// (the scalar one always, so a machine without VNNI or AVX2 still runs the fallback) against
// a float64 oracle of the dequantized weights, within the error bound derived below; every
// variant gives the same bits; quantization's rounding and its refusals.
#include "ops/typed_matrix.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "logattn/error.h"
#include "ops/int8_kernels.h"

namespace logattn::ops {
namespace {

constexpr double kU = 1.0 / (1 << 24);  // float32's unit roundoff

std::vector<float> random_floats(int64_t n, uint64_t seed, float scale = 1.f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

std::vector<Int8Kernel> supported_kernels() {
  std::vector<Int8Kernel> ks;
  for (Int8Kernel k :
       {Int8Kernel::kScalar, Int8Kernel::kAvx2, Int8Kernel::kAvxVnni, Int8Kernel::kAvx512Vnni})
    if (int8_kernel_supported(k)) ks.push_back(k);
  return ks;
}

// Restores the process's kernel choice after a test forced others.
struct KernelGuard {
  Int8Kernel saved = int8_kernel();
  ~KernelGuard() { set_int8_kernel(saved); }
};

struct Q8 {
  std::vector<int8_t> q;
  std::vector<float> d;
};

Q8 quantize(int64_t rows, int64_t cols, const std::vector<float>& w) {
  Q8 r{std::vector<int8_t>(rows * cols), std::vector<float>(rows * cols / kQ8Block)};
  quantize_q8_0(rows, cols, w.data(), r.q.data(), r.d.data());
  return r;
}

// The q8_0 product's bound, per output: the activations' rounding to int8 (|x - d_x q_x| <=
// d_x (1/2 + 128 u): q_x = round(fl(x / d_x)), and fl(x / d_x) is within 127 u of x / d_x)
// against the dequantized weights, plus float32's rounding of the scaled block sums
// (nb + 5) u sum_b |d_w d_x S_b|: the scale product, nb fused multiply-adds per lane and
// three additions of lanes, each one rounding (S_b, an integer sum, is exact).
TEST(TypedMatrix, Q8_0AgainstTheOracleInEveryVariant) {
  KernelGuard guard;
  const int64_t rows = 200, cols = 256, nb = cols / kQ8Block;
  const auto w = random_floats(rows * cols, 1, 0.05f);
  const auto bias = random_floats(rows, 2);
  const Q8 wq = quantize(rows, cols, w);
  const Matrix m{WeightType::kQ8_0, rows, cols, wq.q.data(), wq.d.data()};
  std::vector<float> first;
  for (const int64_t batch : {int64_t{1}, int64_t{5}}) {
    const auto x = random_floats(batch * cols, 3 + batch, 2.f);
    const Q8 xq = quantize(batch, cols, x);
    for (Int8Kernel k : supported_kernels()) {
      set_int8_kernel(k);
      std::vector<float> y(batch * rows);
      linear(m, batch, x.data(), bias.data(), y.data());
      for (int64_t i = 0; i < batch; ++i)
        for (int64_t r = 0; r < rows; ++r) {
          double exact = bias[r], act = 0, sums = 0;
          for (int64_t c = 0; c < cols; ++c) {
            const double wd = static_cast<double>(wq.d[r * nb + c / kQ8Block]) * wq.q[r * cols + c];
            exact += wd * x[i * cols + c];
            act += std::fabs(wd) * xq.d[i * nb + c / kQ8Block] * (0.5 + 128 * kU);
          }
          for (int64_t b = 0; b < nb; ++b) {
            double s = 0;
            for (int64_t t = 0; t < kQ8Block; ++t)
              s += std::abs(int{wq.q[r * cols + b * kQ8Block + t]} *
                            int{xq.q[i * cols + b * kQ8Block + t]});
            sums += std::fabs(static_cast<double>(wq.d[r * nb + b]) * xq.d[i * nb + b]) * s;
          }
          const double got = y[i * rows + r];
          const double tol = act + (nb + 5) * kU * sums + kU * std::fabs(got);
          ASSERT_LE(std::fabs(got - exact), tol)
              << int8_kernel_name(k) << " row " << i << ", output " << r;
        }
      if (batch == 1 && k == Int8Kernel::kScalar) first = y;
      if (batch == 1) {
        EXPECT_EQ(y, first) << int8_kernel_name(k) << " differs from scalar";
      }
    }
  }
}

// bf16: the weights rounded to bf16 are the oracle's; float32's error is that of a dot
// product in eight lanes (cols / 8 fused multiply-adds each), three additions of lanes and
// the tail's fused multiply-adds: (cols / 8 + 3 + cols % 8) u sum |w x|.
TEST(TypedMatrix, Bf16AgainstTheOracleInEveryVariant) {
  KernelGuard guard;
  const int64_t rows = 70, cols = 203;
  const auto w = random_floats(rows * cols, 4);
  std::vector<uint16_t> wb(w.size());
  for (size_t i = 0; i < w.size(); ++i) wb[i] = to_bf16(w[i]);
  const Matrix m{WeightType::kBF16, rows, cols, wb.data(), nullptr};
  const int64_t batch = 3;
  const auto x = random_floats(batch * cols, 5);
  std::vector<float> first;
  for (Int8Kernel k : supported_kernels()) {
    set_int8_kernel(k);
    std::vector<float> y(batch * rows);
    linear(m, batch, x.data(), nullptr, y.data());
    for (int64_t i = 0; i < batch; ++i)
      for (int64_t r = 0; r < rows; ++r) {
        double exact = 0, mag = 0;
        for (int64_t c = 0; c < cols; ++c) {
          const double p = static_cast<double>(from_bf16(wb[r * cols + c])) * x[i * cols + c];
          exact += p, mag += std::fabs(p);
        }
        ASSERT_LE(std::fabs(y[i * rows + r] - exact), (cols / 8 + 3 + cols % 8) * kU * mag)
            << int8_kernel_name(k);
      }
    if (first.empty()) first = y;
    EXPECT_EQ(y, first) << int8_kernel_name(k) << " differs from scalar";
  }
}

// A batch's rows share each load of the weights (several accumulators at once), yet each row
// must get the bits of a product of that row alone, in every variant, whatever the batch's
// size (groups of 4 and the rows left over), so that a sequence's tokens do not depend on the
// batch it steps in.
TEST(TypedMatrix, EveryRowOfABatchHasTheBitsOfThatRowAlone) {
  KernelGuard guard;
  const int64_t rows = 150, cols = 96;
  const auto w = random_floats(rows * cols, 11, 0.1f);
  const Q8 wq = quantize(rows, cols, w);
  std::vector<uint16_t> wb(w.size());
  for (size_t i = 0; i < w.size(); ++i) wb[i] = to_bf16(w[i]);
  const auto bias = random_floats(rows, 12);
  for (const Matrix& m : {Matrix{WeightType::kQ8_0, rows, cols, wq.q.data(), wq.d.data()},
                          Matrix{WeightType::kBF16, rows, cols, wb.data(), nullptr}})
    for (Int8Kernel k : supported_kernels()) {
      set_int8_kernel(k);
      for (const int64_t batch : {2, 3, 4, 5, 8, 9, 33}) {
        const auto x = random_floats(batch * cols, 13 + batch, 2.f);
        std::vector<float> y(batch * rows), alone(rows);
        linear(m, batch, x.data(), bias.data(), y.data(), Reduce::kEachRowAlone);
        for (int64_t i = 0; i < batch; ++i) {
          linear(m, 1, x.data() + i * cols, bias.data(), alone.data(), Reduce::kEachRowAlone);
          ASSERT_EQ(std::vector<float>(y.begin() + i * rows, y.begin() + (i + 1) * rows), alone)
              << weight_type_name(m.type) << " " << int8_kernel_name(k) << ", batch " << batch
              << ", row " << i;
        }
      }
    }
}

TEST(TypedMatrix, RowsAndRowViewsDequantize) {
  const int64_t rows = 4, cols = 64;
  const auto w = random_floats(rows * cols, 6);
  const Q8 wq = quantize(rows, cols, w);
  const Matrix m{WeightType::kQ8_0, rows, cols, wq.q.data(), wq.d.data()};
  std::vector<float> row(cols);
  matrix_row(m.rows_view(2, 2), 1, row.data());
  for (int64_t c = 0; c < cols; ++c) {
    EXPECT_EQ(row[c], wq.d[3 * 2 + c / 32] * wq.q[3 * cols + c]);
    // Rounding to the nearest of 255 steps: within half a step.
    EXPECT_LE(std::fabs(row[c] - w[3 * cols + c]), wq.d[3 * 2 + c / 32] * (0.5 + 1e-6));
  }
}

TEST(TypedMatrix, QuantizationRoundsAndRefuses) {
  std::vector<float> w(64, 0.f);
  w[33] = -2.54f, w[40] = 1.27f;
  const Q8 q = quantize(1, 64, w);
  EXPECT_EQ(q.d[0], 0.f);  // an all-zero block
  EXPECT_EQ(q.q[0], 0);
  EXPECT_EQ(q.d[1], 2.54f / 127.f);
  EXPECT_EQ(q.q[33], -127);
  EXPECT_EQ(q.q[40], 64);  // 1.27 / d = 63.5: a tie, to even
  w[40] = NAN;
  EXPECT_TRUE(std::isnan(quantize(1, 64, w).d[1]));
  std::vector<int8_t> qq(48);
  std::vector<float> dd(2);
  EXPECT_THROW(quantize_q8_0(1, 48, w.data(), qq.data(), dd.data()), Error);
  // bf16: round to nearest, ties to even; NaN stays NaN.
  EXPECT_EQ(to_bf16(1.f), 0x3f80);
  EXPECT_EQ(from_bf16(to_bf16(1.f + 1.f / 256)), 1.f);             // a tie: to even
  EXPECT_EQ(from_bf16(to_bf16(1.f + 3.f / 256)), 1.f + 1.f / 64);  // a tie: to even (up)
  EXPECT_EQ(from_bf16(to_bf16(1.f + 1.f / 128 + 1.f / 1024)), 1.f + 1.f / 128);
  EXPECT_TRUE(std::isnan(from_bf16(to_bf16(NAN))));
  EXPECT_THROW(parse_weight_type("q4_0", "quantize"), Error);
}

TEST(TypedMatrix, TheFallbackCanBeForcedAndAMissingVariantIsRefused) {
  KernelGuard guard;
  set_int8_kernel(Int8Kernel::kScalar);
  EXPECT_EQ(int8_kernel(), Int8Kernel::kScalar);
  for (Int8Kernel k : {Int8Kernel::kAvx2, Int8Kernel::kAvxVnni, Int8Kernel::kAvx512Vnni})
    if (!int8_kernel_supported(k)) {
      EXPECT_THROW(set_int8_kernel(k), Error);
    }
}

}  // namespace
}  // namespace logattn::ops
