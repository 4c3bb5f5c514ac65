// Row-block matrix products shared by the kernels' bindings (cpu_gemv.cpp) and the fused decoder
// (lean_stack.cpp): y [M, N] = x [M, K] @ W.T for row-major float32 x and y, weights in one of
// three formats. Weight blocks are spread over torch's threads (see tile() in cpu_gemv.cpp).
#pragma once

#include <torch/extension.h>

#include <cstdint>

namespace wb {

// Which share of a product's weight rows the calling thread computes: part `index` of `count`
// (for threads the caller manages); count 0 spreads the whole product over torch's threads.
struct Part {
  int64_t index = 0, count = 0;
};

// W = q * scale: q int8 [N, K], scale [N] (G == 1) or [N, G] (G groups of K / G inputs, a
// multiple of 32).
void int8_rows(const float* x, int64_t M, int64_t K, const int8_t* q, const float* scale,
               int64_t G, int64_t N, float* y, Part part = {});

// W = code * scale + low per group: codes packed two a byte [N, K / 2] (input 2j in the low
// nibble of byte j), scale and low [N, G].
void int4_rows(const float* x, int64_t M, int64_t K, const uint8_t* q, const float* scale,
               const float* low, int64_t G, int64_t N, float* y, Part part = {});

// W float32 [N, K].
void f32_rows(const float* x, int64_t M, int64_t K, const float* w, int64_t N, float* y,
              Part part = {});

// W bfloat16 [N, K] (the raw 16-bit patterns).
void bf16_rows(const float* x, int64_t M, int64_t K, const uint16_t* w, int64_t N, float* y,
               Part part = {});

// Registers the LeanStack class (lean_stack.cpp) on the extension module.
void bind_lean_stack(pybind11::module& m);

}  // namespace wb
