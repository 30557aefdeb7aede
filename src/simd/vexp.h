// Vector exp, log1p and log over arrays, through SLEEF (1-ulp exp; exp(-inf) = 0; denormals
// kept, which the attention's underflow analysis relies on: never build with -ffast-math).
#pragma once

#include <cstdint>
#include <string>

namespace logattn::simd {

// y[i] = exp(x[i]) for i < n; x and y may be the same array.
void exp(const float* x, float* y, int64_t n);

// y[i] = exp(x[i] + b[i]) for i < n.
void exp_add(const float* x, const float* b, float* y, int64_t n);

// y[i] = exp(x[i] - b[i]) for i < n.
void exp_sub(const float* x, const float* b, float* y, int64_t n);

// y[i] = log(1 + x[i]) and y[i] = log(x[i]) for i < n (SLEEF, 1 ulp).
void log1p(const float* x, float* y, int64_t n);
void log(const float* x, float* y, int64_t n);

// Which implementation this build uses ("avx512f", "avx2", "scalar").
const char* exp_isa();
// SLEEF's version ("SLEEF 3.5.1"), for --version.
std::string sleef_version();

}  // namespace logattn::simd
