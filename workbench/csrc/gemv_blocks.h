// The AVX-512 row blocks (gemv_avx512.cpp) that cpu_gemv.cpp dispatches to when the CPU has
// AVX-512F/BW: each computes rows [0, rows) of x against weight rows [n0, n1).
#pragma once

#include <cstdint>

namespace wb {

struct RowBlock {
  const float* x;  // the block's first row of x (K inputs a row, ldx apart)
  int64_t ldx;
  int64_t rows;  // 1..8
  float* y;  // its first row of y (ldy apart)
  int64_t ldy;
  int64_t n0, n1, K;
};

namespace avx512 {

constexpr int64_t kRowsX = 8;  // rows of x per pass over a weight block

void int8_block(const RowBlock& b, const int8_t* q, const float* scale, int64_t G);
// x split by split_runs.
void int4_block(const RowBlock& b, const uint8_t* q, const float* scale, const float* low,
                int64_t G);
void bf16_block(const RowBlock& b, const uint16_t* w);
void f32_block(const RowBlock& b, const float* w);
// Each run of 32 inputs of x [M, K] as its 16 even inputs, then its 16 odd ones.
void split_runs(const float* x, int64_t M, int64_t K, float* out);

}  // namespace avx512
}  // namespace wb
