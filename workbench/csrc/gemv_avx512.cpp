// AVX-512 versions of the row-block products in cpu_gemv.cpp, for CPUs that have AVX-512F/BW
// (chosen at run time: this file alone is compiled for AVX-512, through the target pragma below,
// so the extension still loads on an AVX2-only CPU).
//
// 16 float lanes a register and 32 registers: a pass takes up to 8 rows of x against a block of
// weight rows, so a batched decode step of 8 streams widens each weight once. Same maths as the
// AVX2 blocks, float32 arithmetic throughout; int4 codes are widened a byte to a lane (the low
// nibble is an even input, the high one an odd input) and looked up in a table of the group's
// 16 weights, against x with its even and odd inputs of each run of 32 split apart beforehand
// (`split_runs`).

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "gemv_blocks.h"

#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx2,fma")

namespace wb::avx512 {
namespace {

inline __m512 widen_i8(const int8_t* p) {  // 16 signed bytes as 16 floats
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}

inline __m512 widen_bf16(const uint16_t* p) {  // 16 bf16 values as 16 floats
  const __m256i half = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
}

float bf16_value(uint16_t bits) {
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float value;
  std::memcpy(&value, &wide, 4);
  return value;
}

// Accumulators a row: enough independent multiply-add chains to cover the FMA latency.
constexpr int chains(int R) { return R == 1 ? 4 : (R <= 3 ? 2 : 1); }

// W given as 16-wide float loads: widen(n, k) gives inputs k..k+15 of weight row n as floats,
// value(n, k) one input (for the tail of a row whose length is not a multiple of 16).
template <int R, typename Widen, typename Value>
void dense_block(const float* x, int64_t ldx, float* y, int64_t ldy, int64_t n0, int64_t n1,
                 int64_t K, const Widen& widen, const Value& value, const float* scale) {
  constexpr int A = chains(R);
  for (int64_t n = n0; n < n1; ++n) {
    __m512 acc[R][A];
    for (int r = 0; r < R; ++r)
      for (int a = 0; a < A; ++a) acc[r][a] = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 16 * A <= K; k += 16 * A) {
      __m512 w[A];
      for (int a = 0; a < A; ++a) w[a] = widen(n, k + 16 * a);
      for (int r = 0; r < R; ++r)
        for (int a = 0; a < A; ++a)
          acc[r][a] = _mm512_fmadd_ps(_mm512_loadu_ps(x + r * ldx + k + 16 * a), w[a], acc[r][a]);
    }
    for (; k + 16 <= K; k += 16) {
      const __m512 w = widen(n, k);
      for (int r = 0; r < R; ++r)
        acc[r][0] = _mm512_fmadd_ps(_mm512_loadu_ps(x + r * ldx + k), w, acc[r][0]);
    }
    for (int r = 0; r < R; ++r) {
      __m512 total = acc[r][0];
      for (int a = 1; a < A; ++a) total = _mm512_add_ps(total, acc[r][a]);
      float s = _mm512_reduce_add_ps(total);
      for (int64_t kk = k; kk < K; ++kk) s += x[r * ldx + kk] * value(n, kk);
      y[r * ldy + n] = scale ? s * scale[n] : s;
    }
  }
}

template <int R>
void int8_grouped(const float* x, int64_t ldx, const int8_t* q, const float* scale, float* y,
                  int64_t ldy, int64_t n0, int64_t n1, int64_t K, int64_t G) {
  const int64_t runs = K / 32, runs_per_group = runs / G;
  for (int64_t n = n0; n < n1; ++n) {
    const int8_t* w = q + n * K;
    const float* sc = scale + n * G;
    __m512 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
    for (int64_t g = 0; g < runs; ++g) {
      const __m512 c0 = widen_i8(w + g * 32), c1 = widen_i8(w + g * 32 + 16);
      const __m512 s = _mm512_set1_ps(sc[g / runs_per_group]);
      for (int r = 0; r < R; ++r) {
        const float* xr = x + r * ldx + g * 32;
        const __m512 t = _mm512_fmadd_ps(_mm512_loadu_ps(xr + 16), c1,
                                         _mm512_mul_ps(_mm512_loadu_ps(xr), c0));
        acc[r] = _mm512_fmadd_ps(t, s, acc[r]);
      }
    }
    for (int r = 0; r < R; ++r) y[r * ldy + n] = _mm512_reduce_add_ps(acc[r]);
  }
}

// x here is split by split_runs: in each run of 32, its 16 even inputs, then its 16 odd ones.
// A group's 16 possible weights (code * scale + low) make a table in one register, and each
// code picks its weight with a lane permute (which reads only the low 4 bits of its index), so
// a run of 32 weights costs two permutes however many rows of x it meets.
template <int R>
void int4_table(const float* x, int64_t ldx, const uint8_t* q, const float* scale,
                const float* low, float* y, int64_t ldy, int64_t n0, int64_t n1, int64_t K,
                int64_t G) {
  const int64_t runs = K / 32, runs_per_group = runs / G;
  const __m512 codes = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  constexpr int A = R == 1 ? 2 : 1;  // one row: two chains (even and odd inputs)
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* w = q + n * (K / 2);
    const float* sc = scale + n * G;
    const float* lo = low + n * G;
    __m512 acc[R][A];
    for (int r = 0; r < R; ++r)
      for (int a = 0; a < A; ++a) acc[r][a] = _mm512_setzero_ps();
    __m512 table = _mm512_setzero_ps();
    for (int64_t g = 0; g < runs; ++g) {
      if (g % runs_per_group == 0) {
        const int64_t group = g / runs_per_group;
        table = _mm512_fmadd_ps(codes, _mm512_set1_ps(sc[group]), _mm512_set1_ps(lo[group]));
      }
      const __m512i bytes =
          _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + g * 16)));
      const __m512 even = _mm512_permutexvar_ps(bytes, table);
      const __m512 odd = _mm512_permutexvar_ps(_mm512_srli_epi32(bytes, 4), table);
      for (int r = 0; r < R; ++r) {
        const float* xr = x + r * ldx + g * 32;
        acc[r][0] = _mm512_fmadd_ps(_mm512_loadu_ps(xr), even, acc[r][0]);
        acc[r][A - 1] = _mm512_fmadd_ps(_mm512_loadu_ps(xr + 16), odd, acc[r][A - 1]);
      }
    }
    for (int r = 0; r < R; ++r) {
      __m512 total = acc[r][0];
      if (A > 1) total = _mm512_add_ps(total, acc[r][A - 1]);
      y[r * ldy + n] = _mm512_reduce_add_ps(total);
    }
  }
}

// Calls f.template operator()<R>() for R = rows (1..8).
template <typename F>
void with_rows(int64_t rows, const F& f) {
  switch (rows) {
    case 1: f.template operator()<1>(); break;
    case 2: f.template operator()<2>(); break;
    case 3: f.template operator()<3>(); break;
    case 4: f.template operator()<4>(); break;
    case 5: f.template operator()<5>(); break;
    case 6: f.template operator()<6>(); break;
    case 7: f.template operator()<7>(); break;
    default: f.template operator()<8>(); break;
  }
}

}  // namespace

void int8_block(const RowBlock& b, const int8_t* q, const float* scale, int64_t G) {
  if (G > 1) {
    with_rows(b.rows, [&]<int R>() {
      int8_grouped<R>(b.x, b.ldx, q, scale, b.y, b.ldy, b.n0, b.n1, b.K, G);
    });
    return;
  }
  auto widen = [&](int64_t n, int64_t k) { return widen_i8(q + n * b.K + k); };
  auto value = [&](int64_t n, int64_t k) { return static_cast<float>(q[n * b.K + k]); };
  with_rows(b.rows, [&]<int R>() {
    dense_block<R>(b.x, b.ldx, b.y, b.ldy, b.n0, b.n1, b.K, widen, value, scale);
  });
}

void int4_block(const RowBlock& b, const uint8_t* q, const float* scale, const float* low,
                int64_t G) {
  with_rows(b.rows, [&]<int R>() {
    int4_table<R>(b.x, b.ldx, q, scale, low, b.y, b.ldy, b.n0, b.n1, b.K, G);
  });
}

void bf16_block(const RowBlock& b, const uint16_t* w) {
  auto widen = [&](int64_t n, int64_t k) { return widen_bf16(w + n * b.K + k); };
  auto value = [&](int64_t n, int64_t k) { return bf16_value(w[n * b.K + k]); };
  with_rows(b.rows, [&]<int R>() {
    dense_block<R>(b.x, b.ldx, b.y, b.ldy, b.n0, b.n1, b.K, widen, value, nullptr);
  });
}

void f32_block(const RowBlock& b, const float* w) {
  auto widen = [&](int64_t n, int64_t k) { return _mm512_loadu_ps(w + n * b.K + k); };
  auto value = [&](int64_t n, int64_t k) { return w[n * b.K + k]; };
  with_rows(b.rows, [&]<int R>() {
    dense_block<R>(b.x, b.ldx, b.y, b.ldy, b.n0, b.n1, b.K, widen, value, nullptr);
  });
}

void split_runs(const float* x, int64_t M, int64_t K, float* out) {
  for (int64_t m = 0; m < M; ++m)
    for (int64_t run = 0; run < K / 32; ++run) {
      const float* in = x + m * K + run * 32;
      float* o = out + m * K + run * 32;
      for (int j = 0; j < 16; ++j) {
        o[j] = in[2 * j];
        o[16 + j] = in[2 * j + 1];
      }
    }
}

}  // namespace wb::avx512

#pragma GCC pop_options
