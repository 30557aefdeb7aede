// The kernels under ops::linear's bf16 and q8_0 products, one variant per instruction set,
// chosen at run time from the CPU's features, so that one binary serves every x86-64 CPU:
// AVX-512 VNNI (vpdpbusd on 256-bit registers), AVX-VNNI (the same instruction, VEX-coded),
// AVX2 (vpmaddubsw + vpmaddwd), or plain C++. Every variant sums in the same order, so their
// results are identical bit for bit: a block's integer sum is exact whatever the
// instructions, its eight partial sums (lane j: products 4j .. 4j + 3) are scaled and
// accumulated into eight float lanes with fused multiply-adds, block after block, and the
// lanes are added as ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
#pragma once

#include <cstdint>

namespace logattn::ops {

enum class Int8Kernel { kScalar, kAvx2, kAvxVnni, kAvx512Vnni };

const char* int8_kernel_name(Int8Kernel k);  // "scalar", "avx2", "avx-vnni", "avx512-vnni"
bool int8_kernel_supported(Int8Kernel k);
// The variant in use: the best the CPU supports, unless LOGATTN_INT8 (scalar, avx2, avx-vnni,
// avx512-vnni) names another it supports (an unknown or unsupported name throws
// logattn::Error naming the variable).
Int8Kernel int8_kernel();
// Overrides the choice (tests force each variant); throws if the CPU lacks it.
void set_int8_kernel(Int8Kernel k);

namespace kernels {

// Each row of x against every row of the weights; a row of x gets the same bits whatever m
// is (several rows of x share each load of the weights, each summed as it is alone).
// out[i ldo + r] = sum_b (wd[r nb + b] xd[i nb + b]) sum_{t < 32} wq[r, 32 b + t] xq[i, 32 b + t],
// r < rows, i < m. wq: [rows, 32 nb] int8 (|q| <= 127), wd: [rows, nb]; xq: [m, 32 nb]
// (|q| <= 127), xd: [m, nb].
void q8_rows(Int8Kernel k, int64_t rows, int64_t nb, const int8_t* wq, const float* wd, int64_t m,
             const int8_t* xq, const float* xd, float* out, int64_t ldo);

// out[i ldo + r] = sum_c bf16(w[r, c]) x[i, c], r < rows, i < m; w: [rows, cols] bf16,
// x: [m, cols]; as q8_rows, a row of x gets the same bits whatever m is.
void bf16_rows(Int8Kernel k, int64_t rows, int64_t cols, const uint16_t* w, int64_t m,
               const float* x, float* out, int64_t ldo);

}  // namespace kernels
}  // namespace logattn::ops
