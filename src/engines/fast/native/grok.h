// Native kernels of the fast engine (see ../kernels.ts for the contract). Everything here is plain C++17;
// binding.cc is the only file that knows about Node-API.
#pragma once

#include <cstdint>
#include <functional>

namespace grok {

// ---- thread pool (pool.cc) ----------------------------------------------------------------------------

/** Logical cores as reported by std::thread::hardware_concurrency (at least 1). */
int hardware_threads();
/** Threads the kernels use (the calling thread counts as one). */
int pool_threads();
/** Sets the thread count, clamped to 1..hardware_threads(). */
void pool_set_threads(int n);
/**
 * Calls fn(begin, end) on contiguous chunks covering [0, total), at most one chunk per thread, each of at
 * least `min_chunk` units (so small jobs stay on the calling thread), boundaries multiples of `align`.
 * Returns when every chunk is done. Callers must make each unit's result independent of the chunking.
 */
void parallel_for(int64_t total, int64_t min_chunk, int64_t align, const std::function<void(int64_t, int64_t)>& fn);

// ---- kernels ------------------------------------------------------------------------------------------

/** "avx2+fma" or "generic": which SGEMM micro-kernel this build uses (gemm.cc). */
const char* gemm_isa();

void sgemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c, bool accumulate);

void layer_norm_forward(const float* x, const float* weight, const float* bias, int64_t rows, int64_t width, float* out, float* mean, float* rstd);
void layer_norm_backward(const float* dout, const float* x, const float* weight, const float* mean, const float* rstd, int64_t rows, int64_t width, float* dx, float* dweight, float* dbias);

void attention_forward(const float* q, const float* k, const float* v, int64_t batch, int64_t tq, int64_t tk, int64_t heads, int64_t headDim, int64_t queryOffset, float* att, float* out);
void attention_backward(const float* dout, const float* q, const float* k, const float* v, const float* att, int64_t batch, int64_t tq, int64_t tk, int64_t heads, int64_t headDim, int64_t queryOffset, float* dq, float* dk, float* dv);

void softmax_cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t classes, float* losses, float* dlogits, double scale);
void stablemax_cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t classes, float* losses, float* dlogits, double scale);

enum class Activation { Relu, Gelu };
void activation_forward(Activation kind, const float* x, float* out, int64_t n);
void activation_backward(Activation kind, const float* dout, const float* x, float* dx, int64_t n);

/** adam.cc: compiled without floating-point contraction; bitwise identical to the TypeScript loop. */
void adam_update(float* p, const float* g, float* m, float* v, const float* init, const float* noise, int64_t n, double lr, double beta1, double beta2, double eps, double bc1, double bc2, double weightDecay, bool decoupled);

}  // namespace grok
