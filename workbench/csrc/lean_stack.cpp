// The decoder layers of a Llama-family model in one C++ call (see workbench/engine/lean.py).
//
// With the weights packed, a CPU decode step of a small model is about half weight streaming and
// half per-operation overhead: 30 layers of a dozen small torch operations, each a few
// microseconds of dispatch for a few microseconds of work. LeanStack runs every layer's
// operations (RMS norm, the fused q/k/v product, rotary embedding, the key/value cache write,
// attention, the output product, the gated MLP, the residuals) over raw float32 buffers, so a
// step costs one call from Python.
//
// Its threads are its own (StepPool): a step is a few hundred short phases (a product, then the
// attention, then the next product), and torch's parallel regions cost a wake-up each — tens of
// microseconds where OpenMP cannot spin, which is the case for a decode loop on its own thread
// while the main thread's team exists (measured: 2 threads slower than 1). The pool's threads
// meet at spinning barriers between phases and sleep between steps.
//
//   stack = LeanStack(layers, head, heads, kv_heads, head_dim, eps, threads)
//   normed, logits = stack.forward(x [M, C], slots [M], positions [M], cache_k, cache_v, cos, sin,
//                                  head_rows)
//
// Row m of x is the hidden state of the token at `positions[m]` of the sequence in cache slot
// `slots[m]`; its key and value are written there, and it attends to that slot's positions
// 0..positions[m]. Keys and values of every row are written before any row attends, so the
// rows of one prompt (positions 0..T-1 of one slot) are a causal prefill, and one row for each
// of several slots is a batched decode step. The results are the hidden states after the last
// layer and the final norm, and the output head's logits of the last `head_rows` rows (0: all).
//
// Each layer is a list of 18 tensors: input norm weight, post-attention norm weight, then for
// each of q/k/v (fused), o, gate/up (fused) and down: weight, scale, low, bias (an empty tensor
// where a matrix has none). The weight's dtype says its format: float32 or bfloat16 [N, K];
// int8 [N, K] with scale [N] or [N, G]; uint8 [N, K / 2] packed int4 codes with scale and low
// [N, G].
// `head` is the final norm's weight and the output head's weight, scale, low and bias; threads
// 0 means torch's number of threads.

#include <ATen/Parallel.h>
#include <immintrin.h>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "gemv.h"

namespace wb {
namespace {

constexpr int kTensorsPerLayer = 18;

struct Matrix {
  enum class Kind { kF32, kBF16, kInt8, kInt4 };
  Kind kind = Kind::kF32;
  torch::Tensor w, scale, low, bias;
  int64_t N = 0, K = 0, G = 1;

  // This thread's share of y [M, N] = x [M, K] @ W.T (without the bias: add_bias).
  void apply(const float* x, int64_t M, float* y, Part part) const {
    switch (kind) {
      case Kind::kF32: f32_rows(x, M, K, w.data_ptr<float>(), N, y, part); break;
      case Kind::kBF16:
        bf16_rows(x, M, K, reinterpret_cast<const uint16_t*>(w.data_ptr()), N, y, part);
        break;
      case Kind::kInt8:
        int8_rows(x, M, K, w.data_ptr<int8_t>(), scale.data_ptr<float>(), G, N, y, part);
        break;
      case Kind::kInt4:
        int4_rows(x, M, K, w.data_ptr<uint8_t>(), scale.data_ptr<float>(),
                  low.data_ptr<float>(), G, N, y, part);
        break;
    }
  }

  void add_bias(float* y, int64_t M) const {
    if (!bias.numel()) return;
    const float* b = bias.data_ptr<float>();
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) y[m * N + n] += b[n];
  }
};

// A barrier that spins (yielding after a while, for a machine busier than its cores).
class SpinBarrier {
 public:
  explicit SpinBarrier(int parties) : parties_(parties) {}

  void wait() {
    const int generation = generation_.load(std::memory_order_acquire);
    if (arrived_.fetch_add(1, std::memory_order_acq_rel) == parties_ - 1) {
      arrived_.store(0, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_acq_rel);
      return;
    }
    for (int spins = 0; generation_.load(std::memory_order_acquire) == generation; ++spins) {
      if (spins < 4096) _mm_pause(); else std::this_thread::yield();
    }
  }

 private:
  const int parties_;
  std::atomic<int> arrived_{0}, generation_{0};
};

// Threads 1..n-1 run each job beside the caller (thread 0); between jobs they spin a little,
// then sleep until the next one.
class StepPool {
 public:
  explicit StepPool(int threads) : threads_(std::max(1, threads)), barrier_(threads_) {
    for (int t = 1; t < threads_; ++t) workers_.emplace_back([this, t] { serve(t); });
  }

  ~StepPool() {
    if (getpid() != owner_) {  // a forked child: its copies of the workers never ran
      for (auto& worker : workers_) worker.detach();
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
      jobs_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    for (auto& worker : workers_) worker.join();
  }

  // A forked child has none of the workers (fork copies only the calling thread): it runs alone.
  int threads() const { return getpid() == owner_ ? threads_ : 1; }
  void barrier() { if (threads() > 1) barrier_.wait(); }

  // Runs job(thread index) on every thread; returns when all are done. One caller at a time.
  void run(const std::function<void(int)>& job) {
    if (threads() == 1) {
      job(0);
      return;
    }
    job_ = &job;
    finished_.store(0, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      jobs_.fetch_add(1, std::memory_order_release);
    }
    wake_.notify_all();
    std::exception_ptr error;
    try {
      job(0);
    } catch (...) {
      error = std::current_exception();
    }
    for (int spins = 0; finished_.load(std::memory_order_acquire) < threads_ - 1; ++spins) {
      if (spins < 4096) _mm_pause(); else std::this_thread::yield();
    }
    job_ = nullptr;
    if (error) std::rethrow_exception(error);
  }

 private:
  void serve(int index) {
    uint64_t seen = 0;
    while (true) {
      for (int spins = 0; jobs_.load(std::memory_order_acquire) == seen && spins < 20000; ++spins)
        _mm_pause();
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return jobs_.load(std::memory_order_acquire) != seen; });
        seen = jobs_.load(std::memory_order_acquire);
        if (stopping_) return;
      }
      (*job_)(index);
      finished_.fetch_add(1, std::memory_order_acq_rel);
    }
  }

  const int threads_;
  const pid_t owner_ = getpid();
  SpinBarrier barrier_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::atomic<uint64_t> jobs_{0};
  std::atomic<int> finished_{0};
  const std::function<void(int)>* job_ = nullptr;
  bool stopping_ = false;
};

void check_f32(const torch::Tensor& t, const std::string& what) {
  TORCH_CHECK(t.scalar_type() == torch::kFloat32 && t.is_contiguous() && t.device().is_cpu(),
              what, " must be a contiguous float32 CPU tensor");
}

Matrix make_matrix(const std::vector<torch::Tensor>& t, int first, const std::string& what) {
  Matrix mat;
  mat.w = t[first];
  mat.scale = t[first + 1];
  mat.low = t[first + 2];
  mat.bias = t[first + 3];
  TORCH_CHECK(mat.w.dim() == 2 && mat.w.is_contiguous(), what, ": weight must be a contiguous matrix");
  mat.N = mat.w.size(0);
  switch (mat.w.scalar_type()) {
    case torch::kFloat32: mat.kind = Matrix::Kind::kF32; mat.K = mat.w.size(1); break;
    case torch::kBFloat16: mat.kind = Matrix::Kind::kBF16; mat.K = mat.w.size(1); break;
    case torch::kInt8: mat.kind = Matrix::Kind::kInt8; mat.K = mat.w.size(1); break;
    case torch::kUInt8: mat.kind = Matrix::Kind::kInt4; mat.K = mat.w.size(1) * 2; break;
    default: TORCH_CHECK(false, what, ": weights must be float32, bfloat16, int8 or packed int4 (uint8)");
  }
  if (mat.kind == Matrix::Kind::kInt8 || mat.kind == Matrix::Kind::kInt4) {
    check_f32(mat.scale, what + " scale");
    TORCH_CHECK(mat.scale.size(0) == mat.N, what, ": scale has ", mat.scale.size(0), " rows");
    mat.G = mat.scale.dim() == 2 ? mat.scale.size(1) : 1;
    TORCH_CHECK(mat.G == 1 || (mat.K % mat.G == 0 && (mat.K / mat.G) % 32 == 0),
                what, ": groups must be a multiple of 32 inputs");
  }
  if (mat.kind == Matrix::Kind::kInt4) {
    TORCH_CHECK(mat.scale.dim() == 2, what, ": int4 needs a scale per group");
    check_f32(mat.low, what + " low");
    TORCH_CHECK(mat.low.sizes() == mat.scale.sizes(), what, ": low and scale differ in shape");
  }
  if (mat.bias.numel()) {
    check_f32(mat.bias, what + " bias");
    TORCH_CHECK(mat.bias.numel() == mat.N, what, ": bias has ", mat.bias.numel(), " values");
  }
  return mat;
}

struct Layer {
  torch::Tensor input_norm, post_norm;
  Matrix qkv, o, gate_up, down;
};

float dot(const float* a, const float* b, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  float total = _mm_cvtss_f32(s);
  for (; i < n; ++i) total += a[i] * b[i];
  return total;
}

void axpy(float a, const float* x, float* y, int64_t n) {  // y += a * x
  const __m256 av = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}

// out [M, C] = rms_norm(x [M, C]) * weight, computed in float32 as transformers' LlamaRMSNorm.
void rms_norm(const float* x, const float* weight, int64_t M, int64_t C, double eps, float* out) {
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * C;
    double ss = 0.0;
    for (int64_t c = 0; c < C; ++c) ss += static_cast<double>(xr[c]) * xr[c];
    const float r = 1.0f / std::sqrt(static_cast<float>(ss / C) + static_cast<float>(eps));
    for (int64_t c = 0; c < C; ++c) out[m * C + c] = weight[c] * (xr[c] * r);
  }
}

// Rotary embedding of one head in place: (a, b) halves -> (a cos - b sin, b cos + a sin), with
// cos and sin of this position [D] (the two halves of each repeat the frequencies).
void rotate(float* v, const float* cos, const float* sin, int64_t D) {
  const int64_t half = D / 2;
  for (int64_t i = 0; i < half; ++i) {
    const float a = v[i], b = v[i + half];
    v[i] = a * cos[i] - b * sin[i];
    v[i + half] = b * cos[i + half] + a * sin[i + half];
  }
}

}  // namespace

class LeanStack {
 public:
  LeanStack(const std::vector<std::vector<torch::Tensor>>& layers,
            const std::vector<torch::Tensor>& head, int64_t heads, int64_t kv_heads,
            int64_t head_dim, double eps, int64_t threads)
      : heads_(heads), kv_heads_(kv_heads), head_dim_(head_dim), eps_(eps),
        pool_(static_cast<int>(threads > 0 ? threads : at::get_num_threads())) {
    TORCH_CHECK(heads > 0 && kv_heads > 0 && heads % kv_heads == 0,
                "heads must be a multiple of kv_heads");
    TORCH_CHECK(head_dim % 2 == 0, "head_dim must be even");
    for (size_t i = 0; i < layers.size(); ++i) {
      const auto& t = layers[i];
      const std::string where = "layer " + std::to_string(i);
      TORCH_CHECK(t.size() == kTensorsPerLayer, where, ": expected ", kTensorsPerLayer,
                  " tensors, got ", t.size());
      Layer layer;
      layer.input_norm = t[0];
      layer.post_norm = t[1];
      check_f32(layer.input_norm, where + " input norm");
      check_f32(layer.post_norm, where + " post norm");
      layer.qkv = make_matrix(t, 2, where + " qkv");
      layer.o = make_matrix(t, 6, where + " o");
      layer.gate_up = make_matrix(t, 10, where + " gate_up");
      layer.down = make_matrix(t, 14, where + " down");
      const int64_t C = layer.input_norm.numel();
      TORCH_CHECK(layer.qkv.K == C && layer.qkv.N == (heads + 2 * kv_heads) * head_dim,
                  where, ": q/k/v weights do not match the heads");
      TORCH_CHECK(layer.o.K == heads * head_dim && layer.o.N == C, where, ": o shape");
      TORCH_CHECK(layer.gate_up.K == C && layer.gate_up.N % 2 == 0, where, ": gate_up shape");
      TORCH_CHECK(layer.down.K == layer.gate_up.N / 2 && layer.down.N == C, where, ": down shape");
      layers_.push_back(std::move(layer));
    }
    TORCH_CHECK(!layers_.empty(), "no layers");
    hidden_ = layers_[0].input_norm.numel();
    inter_ = layers_[0].gate_up.N / 2;
    TORCH_CHECK(head.size() == 5, "head: expected the final norm weight and 4 tensors");
    final_norm_ = head[0];
    check_f32(final_norm_, "final norm");
    TORCH_CHECK(final_norm_.numel() == hidden_, "final norm: ", final_norm_.numel(), " values");
    head_ = make_matrix(head, 1, "head");
    TORCH_CHECK(head_.K == hidden_, "head: ", head_.K, " inputs for hidden size ", hidden_);
  }

  int64_t threads() const { return pool_.threads(); }

  // (final hidden states after the norm [M, C], logits [M, vocab]) for rows x [M, C].
  std::vector<torch::Tensor> forward(torch::Tensor x, torch::Tensor slots,
                                     torch::Tensor positions, torch::Tensor cache_k,
                                     torch::Tensor cache_v, torch::Tensor cos,
                                     torch::Tensor sin, int64_t head_rows) {
    const int64_t C = hidden_, H = heads_, KV = kv_heads_, D = head_dim_, I = inter_;
    const int64_t L = static_cast<int64_t>(layers_.size());
    check_f32(x, "x");
    TORCH_CHECK(x.dim() == 2 && x.size(1) == C, "x must be [rows, ", C, "]");
    const int64_t M = x.size(0);
    for (const auto* t : {&slots, &positions})
      TORCH_CHECK(t->scalar_type() == torch::kInt64 && t->is_contiguous() && t->numel() == M,
                  "slots and positions must be int64 with one value a row");
    for (const auto* t : {&cache_k, &cache_v}) {
      check_f32(*t, "the cache");
      TORCH_CHECK(t->dim() == 5 && t->size(0) == L && t->size(2) == KV && t->size(4) == D,
                  "the cache must be [layers, slots, kv_heads, max_len, head_dim]");
    }
    const int64_t n_slots = cache_k.size(1), max_len = cache_k.size(3);
    check_f32(cos, "cos");
    check_f32(sin, "sin");
    TORCH_CHECK(cos.dim() == 2 && cos.size(1) == D && cos.size(0) >= max_len &&
                    sin.sizes() == cos.sizes(),
                "cos and sin must be [max_len, head_dim]");
    const int64_t* slot = slots.data_ptr<int64_t>();
    const int64_t* pos = positions.data_ptr<int64_t>();
    int64_t longest = 0;
    for (int64_t m = 0; m < M; ++m) {
      TORCH_CHECK(slot[m] >= 0 && slot[m] < n_slots, "row ", m, ": slot ", slot[m], " out of range");
      TORCH_CHECK(pos[m] >= 0 && pos[m] < max_len, "row ", m, ": position ", pos[m], " out of range");
      longest = std::max(longest, pos[m] + 1);
    }

    std::vector<float> h(x.data_ptr<float>(), x.data_ptr<float>() + M * C);
    const int64_t width = (H + 2 * KV) * D;
    std::vector<float> qkv(M * width), attn(M * H * D), gate_up(M * 2 * I), act(M * I),
        delta(M * C);
    auto normed = torch::empty({M, C}, x.options());
    // Logits of the last head_rows rows only (a prompt needs its last one); 0 means all.
    const int64_t R = head_rows > 0 ? std::min(head_rows, M) : M;
    auto logits = torch::empty({R, head_.N}, x.options());
    float* nrm = normed.data_ptr<float>();
    float* ck = cache_k.data_ptr<float>();
    float* cv = cache_v.data_ptr<float>();
    const float* cs = cos.data_ptr<float>();
    const float* sn = sin.data_ptr<float>();
    const float scale = 1.0f / std::sqrt(static_cast<float>(D));
    const int64_t group = H / KV;
    const int T = pool_.threads();

    pool_.run([&](int tid) {
      const Part part{tid, T};
      const bool lead = tid == 0;
      std::vector<float> scores(longest);
      for (int64_t l = 0; l < L; ++l) {
        const Layer& layer = layers_[l];
        auto at = [&](float* cache, int64_t s, int64_t kvh, int64_t t) {
          return cache + (((l * n_slots + s) * KV + kvh) * max_len + t) * D;
        };
        if (lead) rms_norm(h.data(), layer.input_norm.data_ptr<float>(), M, C, eps_, nrm);
        pool_.barrier();
        layer.qkv.apply(nrm, M, qkv.data(), part);
        pool_.barrier();
        if (lead) {
          layer.qkv.add_bias(qkv.data(), M);
          for (int64_t m = 0; m < M; ++m) {
            float* row = qkv.data() + m * width;
            const float* c = cs + pos[m] * D;
            const float* s = sn + pos[m] * D;
            for (int64_t head = 0; head < H + KV; ++head) rotate(row + head * D, c, s, D);
            for (int64_t kvh = 0; kvh < KV; ++kvh) {
              std::copy_n(row + (H + kvh) * D, D, at(ck, slot[m], kvh, pos[m]));
              std::copy_n(row + (H + KV + kvh) * D, D, at(cv, slot[m], kvh, pos[m]));
            }
          }
        }
        pool_.barrier();
        for (int64_t job = M * H * tid / T; job < M * H * (tid + 1) / T; ++job) {
          const int64_t m = job / H, head = job % H, kvh = head / group, span = pos[m] + 1;
          const float* q = qkv.data() + m * width + head * D;
          const float* keys = at(ck, slot[m], kvh, 0);
          const float* values = at(cv, slot[m], kvh, 0);
          float best = -INFINITY;
          for (int64_t t = 0; t < span; ++t) {
            scores[t] = dot(q, keys + t * D, D) * scale;
            best = std::max(best, scores[t]);
          }
          float total = 0.f;
          for (int64_t t = 0; t < span; ++t) total += (scores[t] = std::exp(scores[t] - best));
          float* out = attn.data() + (m * H + head) * D;
          std::fill_n(out, D, 0.f);
          const float inv = 1.0f / total;
          for (int64_t t = 0; t < span; ++t) axpy(scores[t] * inv, values + t * D, out, D);
        }
        pool_.barrier();
        layer.o.apply(attn.data(), M, delta.data(), part);
        pool_.barrier();
        if (lead) {
          layer.o.add_bias(delta.data(), M);
          for (int64_t i = 0; i < M * C; ++i) h[i] += delta[i];
          rms_norm(h.data(), layer.post_norm.data_ptr<float>(), M, C, eps_, nrm);
        }
        pool_.barrier();
        layer.gate_up.apply(nrm, M, gate_up.data(), part);
        pool_.barrier();
        if (lead) {
          layer.gate_up.add_bias(gate_up.data(), M);
          for (int64_t m = 0; m < M; ++m) {
            const float* g = gate_up.data() + m * 2 * I;
            const float* u = g + I;
            float* a = act.data() + m * I;
            for (int64_t i = 0; i < I; ++i) a[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
          }
        }
        pool_.barrier();
        layer.down.apply(act.data(), M, delta.data(), part);
        pool_.barrier();
        if (lead) {
          layer.down.add_bias(delta.data(), M);
          for (int64_t i = 0; i < M * C; ++i) h[i] += delta[i];
        }
      }
      if (lead) rms_norm(h.data(), final_norm_.data_ptr<float>(), M, C, eps_, nrm);
      pool_.barrier();
      head_.apply(nrm + (M - R) * C, R, logits.data_ptr<float>(), part);
      pool_.barrier();
      if (lead) head_.add_bias(logits.data_ptr<float>(), R);
    });
    return {normed, logits};
  }

 private:
  std::vector<Layer> layers_;
  torch::Tensor final_norm_;
  Matrix head_;
  int64_t heads_, kv_heads_, head_dim_;
  double eps_;
  int64_t hidden_ = 0, inter_ = 0;
  StepPool pool_;
};

void bind_lean_stack(pybind11::module& m) {
  pybind11::class_<LeanStack>(m, "LeanStack")
      .def(pybind11::init<const std::vector<std::vector<torch::Tensor>>&,
                          const std::vector<torch::Tensor>&, int64_t, int64_t, int64_t, double,
                          int64_t>())
      .def_property_readonly("threads", &LeanStack::threads)
      // The GIL is released for the whole step, as for the matrix products.
      .def("forward", &LeanStack::forward, pybind11::call_guard<pybind11::gil_scoped_release>());
}

}  // namespace wb
