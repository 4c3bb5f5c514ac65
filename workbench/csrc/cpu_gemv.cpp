// Weight-only int8 / int4 matrix products for x86 CPUs with AVX2 and FMA (see workbench/cpu_gemv.py).
//
// Decoding one token multiplies a few rows of activations by every weight matrix once, so its
// speed is how fast the weights stream from memory. These kernels read int8 or packed int4
// weights, widen them to float32 in registers and multiply-add with float32 activations: a quarter
// (int8) or an eighth (int4) of the bytes of the float32 product, with float32 arithmetic.
//
//   int8_matmul(x [M,K] f32, q [N,K] int8, scale [N] or [N,G] f32)       -> [M,N] f32
//       y[m,n] = scale[n] * sum_k x[m,k] q[n,k], or with G groups of K/G inputs (a multiple of
//       32) sum_g scale[n,g] * sum_{k in g} x[m,k] q[n,k]
//   int4_matmul(x [M,K] f32, q [N,K/2] uint8, scale [N,G], low [N,G] f32)   -> [M,N] f32
//       G groups of K/G inputs (a multiple of 32); code c in 0..15 means c * scale + low. Byte
//       j of a row holds the code of input 2j in its low nibble and of input 2j + 1 in its high
//       one, so each 32-bit word holds 8 inputs in order: one broadcast, a shift per lane and
//       a mask widen them (no byte shuffles, which have one execution port).
//
// Rows of x go in blocks of up to 4 against a block of 32 weight rows (which stays in L2 while
// the blocks of x pass over it); blocks of weight rows are spread over torch's threads.

#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <vector>

#include "gemv.h"
#include "gemv_blocks.h"

namespace {

constexpr int64_t kRowsX = 4;     // rows of x per pass over a weight block
constexpr int64_t kRowsW = 32;    // weight rows per block
constexpr int64_t kRun = 32;      // int4 inputs per 16 packed bytes

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256 widen_i8(__m128i bytes) {  // the low 8 signed bytes as 8 floats
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
}

// The 32 products of x[0..32) with the weights c0..c3 (8 each), summed lane by lane.
inline __m256 dot_run(const float* x, __m256 c0, __m256 c1, __m256 c2, __m256 c3) {
  __m256 t = _mm256_mul_ps(_mm256_loadu_ps(x), c0);
  __m256 u = _mm256_mul_ps(_mm256_loadu_ps(x + 8), c1);
  t = _mm256_fmadd_ps(_mm256_loadu_ps(x + 16), c2, t);
  u = _mm256_fmadd_ps(_mm256_loadu_ps(x + 24), c3, u);
  return _mm256_add_ps(t, u);
}

// R rows of x (R <= kRowsX) against weight rows [n0, n1). Two accumulators per row keep two
// multiply-add chains in flight; one row of x gets four.
template <int R>
void int8_block(const float* x, int64_t ldx, const int8_t* q, const float* scale, float* y,
                int64_t ldy, int64_t n0, int64_t n1, int64_t K) {
  constexpr int A = R == 1 ? 4 : 2;
  constexpr int64_t step = 8 * A;
  for (int64_t n = n0; n < n1; ++n) {
    const int8_t* w = q + n * K;
    __m256 acc[R][A];
    for (int r = 0; r < R; ++r)
      for (int a = 0; a < A; ++a) acc[r][a] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + step <= K; k += step) {
      __m256 wv[A];
      for (int a = 0; a < A; a += 2) {
        __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + k + 8 * a));
        wv[a] = widen_i8(b);
        wv[a + 1] = widen_i8(_mm_srli_si128(b, 8));
      }
      for (int r = 0; r < R; ++r) {
        const float* xr = x + r * ldx + k;
        for (int a = 0; a < A; ++a)
          acc[r][a] = _mm256_fmadd_ps(_mm256_loadu_ps(xr + 8 * a), wv[a], acc[r][a]);
      }
    }
    for (int r = 0; r < R; ++r) {
      __m256 total = acc[r][0];
      for (int a = 1; a < A; ++a) total = _mm256_add_ps(total, acc[r][a]);
      float s = hsum(total);
      for (int64_t kk = k; kk < K; ++kk) s += x[r * ldx + kk] * static_cast<float>(w[kk]);
      y[r * ldy + n] = s * scale[n];
    }
  }
}

// As int8_block with a scale per group of 32 * runs_per_group inputs.
template <int R>
void int8_grouped_block(const float* x, int64_t ldx, const int8_t* q, const float* scale,
                        float* y, int64_t ldy, int64_t n0, int64_t n1, int64_t K, int64_t G) {
  const int64_t runs = K / kRun, runs_per_group = runs / G;
  for (int64_t n = n0; n < n1; ++n) {
    const int8_t* w = q + n * K;
    const float* sc = scale + n * G;
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t g = 0; g < runs; ++g) {
      __m128i b0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + g * kRun));
      __m128i b1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + g * kRun + 16));
      __m256 c0 = widen_i8(b0), c1 = widen_i8(_mm_srli_si128(b0, 8));
      __m256 c2 = widen_i8(b1), c3 = widen_i8(_mm_srli_si128(b1, 8));
      __m256 s = _mm256_set1_ps(sc[g / runs_per_group]);
      for (int r = 0; r < R; ++r) {
        acc[r] = _mm256_fmadd_ps(dot_run(x + r * ldx + g * kRun, c0, c1, c2, c3), s, acc[r]);
      }
    }
    for (int r = 0; r < R; ++r) y[r * ldy + n] = hsum(acc[r]);
  }
}

// R rows of x against int4 weight rows [n0, n1), G groups a row. xsum[r * G + g] is the sum of
// x's group g, which the group's `low` multiplies.
template <int R>
void int4_block(const float* x, int64_t ldx, const float* xsum, const uint8_t* q,
                const float* scale, const float* low, float* y, int64_t ldy, int64_t n0,
                int64_t n1, int64_t K, int64_t G) {
  const int64_t runs = K / kRun, runs_per_group = runs / G;
  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  const __m256i nibble = _mm256_set1_epi32(0x0F);
  auto widen = [&](const uint8_t* word) {  // 8 codes of one 32-bit word as 8 floats
    uint32_t bits;
    std::memcpy(&bits, word, 4);
    __m256i lanes = _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(bits)), shifts);
    return _mm256_cvtepi32_ps(_mm256_and_si256(lanes, nibble));
  };
  for (int64_t n = n0; n < n1; ++n) {
    const uint8_t* w = q + n * (K / 2);
    const float* sc = scale + n * G;
    const float* lo = low + n * G;
    __m256 acc[R];
    for (int r = 0; r < R; ++r) acc[r] = _mm256_setzero_ps();
    for (int64_t g = 0; g < runs; ++g) {
      const uint8_t* run = w + g * 16;
      __m256 c0 = widen(run), c1 = widen(run + 4), c2 = widen(run + 8), c3 = widen(run + 12);
      __m256 s = _mm256_set1_ps(sc[g / runs_per_group]);
      for (int r = 0; r < R; ++r) {
        const float* xr = x + r * ldx + g * kRun;
        acc[r] = _mm256_fmadd_ps(dot_run(xr, c0, c1, c2, c3), s, acc[r]);
      }
    }
    for (int r = 0; r < R; ++r) {
      float shift = 0.f;
      for (int64_t g = 0; g < G; ++g) shift += lo[g] * xsum[r * G + g];
      y[r * ldy + n] = hsum(acc[r]) + shift;
    }
  }
}

// Calls block(R, m, n0, n1) for every block of x rows and weight rows, weight blocks in parallel
// where each thread gets at least kBytesPerThread of weights (a small matrix is not worth waking
// threads for, and on a busy machine every parallel region waits for its slowest thread).
constexpr int64_t kBytesPerThread = 256 * 1024;

template <typename Block>
void tile(int64_t M, int64_t N, int64_t row_bytes, int64_t rows_x, const Block& block,
          wb::Part part) {
  const int64_t blocks = (N + kRowsW - 1) / kRowsW;
  auto run = [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t n0 = b * kRowsW, n1 = std::min(N, n0 + kRowsW);
      for (int64_t m = 0; m < M; m += rows_x) block(std::min(rows_x, M - m), m, n0, n1);
    }
  };
  if (part.count > 0) {  // the caller's threads split the blocks (lean_stack.cpp)
    run(blocks * part.index / part.count, blocks * (part.index + 1) / part.count);
    return;
  }
  const int64_t grain = std::max<int64_t>(1, kBytesPerThread / (kRowsW * row_bytes));
  at::parallel_for(0, blocks, grain, run);
}

bool cpu_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl");
}

std::atomic<bool> g_avx512{cpu_has_avx512()};

void check_x(const torch::Tensor& x, int64_t K) {
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat32 && x.is_contiguous(),
              "x must be a contiguous float32 matrix [M, K]");
  TORCH_CHECK(x.size(1) == K, "x has ", x.size(1), " columns, the weights ", K);
}

// R rows of x against float32 weight rows [n0, n1) (a model kept in float32).
template <int R>
void f32_block(const float* x, int64_t ldx, const float* w_all, float* y, int64_t ldy, int64_t n0,
               int64_t n1, int64_t K) {
  for (int64_t n = n0; n < n1; ++n) {
    const float* w = w_all + n * K;
    __m256 acc[R][2];
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
      const __m256 w0 = _mm256_loadu_ps(w + k), w1 = _mm256_loadu_ps(w + k + 8);
      for (int r = 0; r < R; ++r) {
        acc[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * ldx + k), w0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * ldx + k + 8), w1, acc[r][1]);
      }
    }
    for (int r = 0; r < R; ++r) {
      float s = hsum(_mm256_add_ps(acc[r][0], acc[r][1]));
      for (int64_t kk = k; kk < K; ++kk) s += x[r * ldx + kk] * w[kk];
      y[r * ldy + n] = s;
    }
  }
}

// R rows of x against bfloat16 weight rows [n0, n1): a bf16 value is the top half of a float32,
// so widening is a shift.
template <int R>
void bf16_block(const float* x, int64_t ldx, const uint16_t* w_all, float* y, int64_t ldy,
                int64_t n0, int64_t n1, int64_t K) {
  auto widen = [](const uint16_t* p) {
    const __m128i half = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(half), 16));
  };
  for (int64_t n = n0; n < n1; ++n) {
    const uint16_t* w = w_all + n * K;
    __m256 acc[R][2];
    for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
      const __m256 w0 = widen(w + k), w1 = widen(w + k + 8);
      for (int r = 0; r < R; ++r) {
        acc[r][0] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * ldx + k), w0, acc[r][0]);
        acc[r][1] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * ldx + k + 8), w1, acc[r][1]);
      }
    }
    for (int r = 0; r < R; ++r) {
      float s = hsum(_mm256_add_ps(acc[r][0], acc[r][1]));
      for (int64_t kk = k; kk < K; ++kk) {
        const uint32_t bits = static_cast<uint32_t>(w[kk]) << 16;
        float value;
        std::memcpy(&value, &bits, 4);
        s += x[r * ldx + kk] * value;
      }
      y[r * ldy + n] = s;
    }
  }
}

// Calls f.template operator()<R>() for R = rows (1..kRowsX).
template <typename F>
void with_rows(int64_t rows, const F& f) {
  switch (rows) {
    case 1: f.template operator()<1>(); break;
    case 2: f.template operator()<2>(); break;
    case 3: f.template operator()<3>(); break;
    default: f.template operator()<4>(); break;
  }
}

}  // namespace

namespace wb {

void int8_rows(const float* xp, int64_t M, int64_t K, const int8_t* qp, const float* sp,
               int64_t G, int64_t N, float* yp, Part part) {
  if (g_avx512.load(std::memory_order_relaxed)) {
    tile(M, N, K, avx512::kRowsX, [&](int64_t rows, int64_t m, int64_t n0, int64_t n1) {
      avx512::int8_block({xp + m * K, K, rows, yp + m * N, N, n0, n1, K}, qp, sp, G);
    }, part);
    return;
  }
  tile(M, N, K, kRowsX, [&](int64_t rows, int64_t m, int64_t n0, int64_t n1) {
    const float* xm = xp + m * K;
    float* ym = yp + m * N;
    with_rows(rows, [&]<int R>() {
      if (G > 1)
        int8_grouped_block<R>(xm, K, qp, sp, ym, N, n0, n1, K, G);
      else
        int8_block<R>(xm, K, qp, sp, ym, N, n0, n1, K);
    });
  }, part);
}

void int4_rows(const float* xp, int64_t M, int64_t K, const uint8_t* qp, const float* sp,
               const float* lp, int64_t G, int64_t N, float* yp, Part part) {
  if (g_avx512.load(std::memory_order_relaxed)) {
    std::vector<float> split(M * K);
    avx512::split_runs(xp, M, K, split.data());
    const float* sx = split.data();
    tile(M, N, K / 2, avx512::kRowsX, [&](int64_t rows, int64_t m, int64_t n0, int64_t n1) {
      avx512::int4_block({sx + m * K, K, rows, yp + m * N, N, n0, n1, K}, qp, sp, lp, G);
    }, part);
    return;
  }
  std::vector<float> xsum(M * G);  // sum of each group of x's inputs, which `low` multiplies
  const int64_t width = K / G;
  for (int64_t m = 0; m < M; ++m)
    for (int64_t g = 0; g < G; ++g) {
      float s = 0.f;
      for (int64_t k = g * width; k < (g + 1) * width; ++k) s += xp[m * K + k];
      xsum[m * G + g] = s;
    }
  const float* xs = xsum.data();
  tile(M, N, K / 2, kRowsX, [&](int64_t rows, int64_t m, int64_t n0, int64_t n1) {
    const float* xm = xp + m * K;
    const float* sm = xs + m * G;
    float* ym = yp + m * N;
    with_rows(rows, [&]<int R>() { int4_block<R>(xm, K, sm, qp, sp, lp, ym, N, n0, n1, K, G); });
  }, part);
}

void f32_rows(const float* xp, int64_t M, int64_t K, const float* wp, int64_t N, float* yp,
              Part part) {
  if (g_avx512.load(std::memory_order_relaxed)) {
    tile(M, N, K * 4, avx512::kRowsX, [&](int64_t rows, int64_t m, int64_t n0, int64_t n1) {
      avx512::f32_block({xp + m * K, K, rows, yp + m * N, N, n0, n1, K}, wp);
    }, part);
    return;
  }
  tile(M, N, K * 4, kRowsX, [&](int64_t rows, int64_t m, int64_t n0, int64_t n1) {
    with_rows(rows, [&]<int R>() { f32_block<R>(xp + m * K, K, wp, yp + m * N, N, n0, n1, K); });
  }, part);
}

void bf16_rows(const float* xp, int64_t M, int64_t K, const uint16_t* wp, int64_t N, float* yp,
               Part part) {
  if (g_avx512.load(std::memory_order_relaxed)) {
    tile(M, N, K * 2, avx512::kRowsX, [&](int64_t rows, int64_t m, int64_t n0, int64_t n1) {
      avx512::bf16_block({xp + m * K, K, rows, yp + m * N, N, n0, n1, K}, wp);
    }, part);
    return;
  }
  tile(M, N, K * 2, kRowsX, [&](int64_t rows, int64_t m, int64_t n0, int64_t n1) {
    with_rows(rows, [&]<int R>() { bf16_block<R>(xp + m * K, K, wp, yp + m * N, N, n0, n1, K); });
  }, part);
}

}  // namespace wb

torch::Tensor int8_matmul(torch::Tensor x, torch::Tensor q, torch::Tensor scale) {
  TORCH_CHECK(q.dim() == 2 && q.scalar_type() == torch::kInt8 && q.is_contiguous(),
              "q must be a contiguous int8 matrix [N, K]");
  const int64_t N = q.size(0), K = q.size(1), M = x.size(0);
  check_x(x, K);
  TORCH_CHECK(scale.scalar_type() == torch::kFloat32 && scale.is_contiguous() &&
                  scale.size(0) == N && scale.dim() <= 2,
              "scale must be contiguous float32 [N] or [N, groups]");
  const int64_t G = scale.dim() == 2 ? scale.size(1) : 1;
  TORCH_CHECK(G == 1 || (G > 0 && K % G == 0 && (K / G) % kRun == 0),
              "groups must be a multiple of 32 inputs: K ", K, ", groups ", G);
  auto y = torch::empty({M, N}, x.options());
  wb::int8_rows(x.data_ptr<float>(), M, K, q.data_ptr<int8_t>(), scale.data_ptr<float>(), G, N,
                y.data_ptr<float>());
  return y;
}

torch::Tensor int4_matmul(torch::Tensor x, torch::Tensor q, torch::Tensor scale,
                          torch::Tensor low) {
  TORCH_CHECK(q.dim() == 2 && q.scalar_type() == torch::kUInt8 && q.is_contiguous(),
              "q must be a contiguous uint8 matrix [N, K / 2]");
  const int64_t N = q.size(0), K = q.size(1) * 2, M = x.size(0);
  TORCH_CHECK(scale.dim() == 2 && scale.size(1) > 0, "scale must be [N, groups]");
  const int64_t G = scale.size(1);
  TORCH_CHECK(K % G == 0 && (K / G) % kRun == 0,
              "groups must be a multiple of 32 inputs: K ", K, ", groups ", G);
  check_x(x, K);
  for (const auto* t : {&scale, &low})
    TORCH_CHECK(t->scalar_type() == torch::kFloat32 && t->dim() == 2 && t->size(0) == N &&
                    t->size(1) == G && t->is_contiguous(),
                "scale and low must be contiguous float32 [N, groups]");
  auto y = torch::empty({M, N}, x.options());
  wb::int4_rows(x.data_ptr<float>(), M, K, q.data_ptr<uint8_t>(), scale.data_ptr<float>(),
                low.data_ptr<float>(), G, N, y.data_ptr<float>());
  return y;
}

torch::Tensor bf16_matmul(torch::Tensor x, torch::Tensor w) {
  TORCH_CHECK(w.dim() == 2 && w.scalar_type() == torch::kBFloat16 && w.is_contiguous(),
              "w must be a contiguous bfloat16 matrix [N, K]");
  const int64_t N = w.size(0), K = w.size(1), M = x.size(0);
  check_x(x, K);
  auto y = torch::empty({M, N}, x.options());
  wb::bf16_rows(x.data_ptr<float>(), M, K, reinterpret_cast<const uint16_t*>(w.data_ptr()), N,
                y.data_ptr<float>());
  return y;
}

// The GIL is released while a product runs, as torch's own operators do: a server's other threads
// (readers of the streams, HTTP handlers) run meanwhile instead of queueing for the lock.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("int8_matmul", &int8_matmul, py::call_guard<py::gil_scoped_release>(),
        "x @ W.T, int8 weights (a scale per row or per group), float32 activations");
  m.def("int4_matmul", &int4_matmul, py::call_guard<py::gil_scoped_release>(),
        "x @ W.T, int4 weights in groups, float32 activations");
  m.def("set_avx512", [](bool on) {
    const bool previous = g_avx512.exchange(on && cpu_has_avx512());
    return previous;
  }, "use the AVX-512 blocks (where the CPU has them) or the AVX2 ones; returns the old setting");
  m.def("uses_avx512", [] { return g_avx512.load(); });
  m.def("bf16_matmul", &bf16_matmul, py::call_guard<py::gil_scoped_release>(),
        "x @ W.T, bfloat16 weights, float32 activations");
  wb::bind_lean_stack(m);
}
