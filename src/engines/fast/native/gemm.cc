// Blocked, packed SGEMM (the BLIS/GotoBLAS scheme): op(B) is packed once into NR-wide column panels per
// k-block, each thread packs MR-tall row panels of op(A) for its own rows and runs an MR×NR register-tile
// micro-kernel (AVX2+FMA when the compiler targets it). When op(A) has few rows (weight gradients: m = width,
// k = batch rows) B is large next to the work, so each thread instead takes a range of B's column panels
// and packs them one k-block at a time into its own cache-sized buffer, right before using them.
//
// Determinism: every element of C is produced by the same sequence of operations whatever the thread count
// and wherever it falls in a tile or which path computes it: per k-block a multiply-add chain from zero in
// order of p (fused in the AVX2 kernel; zero-padded rows/columns of a partial tile never touch real
// elements), then C = chain (first block, no accumulate) or C = C + chain. The k-blocking depends on k alone.
#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define GROK_GEMM_AVX2 1
#endif

#include "grok.h"

namespace grok {

namespace {

constexpr int MR = 6;
constexpr int NR = 16;
constexpr int64_t MC = 144;     // rows of op(A) packed at once (multiple of MR); ~144 KiB at kc = 256
constexpr int64_t KC_MAX = 256;  // depth of a k-block: an NR panel of B (16 KiB) stays in L1

/** A 64-byte aligned float buffer that only grows. */
class Buffer {
 public:
  float* get(size_t n) {
    if (n > cap_) {
      size_t want = std::max(n, cap_ * 2);
      void* p = std::aligned_alloc(64, ((want * sizeof(float) + 63) / 64) * 64);
      if (!p) throw std::bad_alloc();
      data_.reset(static_cast<float*>(p));
      cap_ = want;
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> data_;
  size_t cap_ = 0;
};

Buffer& packed_b_buffer() {
  static Buffer b;  // sgemm calls are serialized by the caller (binding.cc)
  return b;
}

Buffer& packed_a_buffer() {
  thread_local Buffer a;
  return a;
}

Buffer& packed_b_local() {
  thread_local Buffer b;
  return b;
}

struct Problem {
  bool ta, tb;
  int64_t m, n, k;
  const float* a;
  const float* b;
  float* c;
  bool accumulate;
  int64_t kc;       // k-block depth (last block may be shorter)
  int64_t kblocks;  // number of k-blocks
  int64_t panels;   // NR panels of op(B)
  float* bpack;     // all of op(B), packed (the shared-B path)
};

inline int64_t kblock_len(const Problem& P, int64_t pb) { return std::min(P.kc, P.k - pb * P.kc); }

/** Offset in bpack of panel jp of k-block pb. */
inline int64_t bpanel_offset(const Problem& P, int64_t pb, int64_t jp) {
  return pb * P.kc * P.panels * NR + jp * kblock_len(P, pb) * NR;
}

/** Packs panel jp of k-block pb of op(B) at dst: kcb rows of NR values, zero-padded past column n. */
void pack_b_panel(const Problem& P, int64_t pb, int64_t jp, float* dst) {
  const int64_t j0 = jp * NR;
  const int nr = static_cast<int>(std::min<int64_t>(NR, P.n - j0));
  const int64_t pc = pb * P.kc;
  const int64_t kcb = kblock_len(P, pb);
  if (!P.tb) {  // op(B)[p][j] = B[p*n + j]
    for (int64_t p = 0; p < kcb; ++p) {
      const float* src = P.b + (pc + p) * P.n + j0;
      float* d = dst + p * NR;
      int jj = 0;
      for (; jj < nr; ++jj) d[jj] = src[jj];
      for (; jj < NR; ++jj) d[jj] = 0.0f;
    }
  } else {  // op(B)[p][j] = B[j*k + p]
    for (int jj = 0; jj < nr; ++jj) {
      const float* src = P.b + (j0 + jj) * P.k + pc;
      for (int64_t p = 0; p < kcb; ++p) dst[p * NR + jj] = src[p];
    }
    for (int jj = nr; jj < NR; ++jj)
      for (int64_t p = 0; p < kcb; ++p) dst[p * NR + jj] = 0.0f;
  }
}

/** Packs panels [jp0, jp1) of every k-block into the shared buffer. */
void pack_b_all(const Problem& P, int64_t jp0, int64_t jp1) {
  for (int64_t jp = jp0; jp < jp1; ++jp)
    for (int64_t pb = 0; pb < P.kblocks; ++pb) pack_b_panel(P, pb, jp, P.bpack + bpanel_offset(P, pb, jp));
}

void pack_a(const Problem& P, int64_t ic, int64_t mc, int64_t pc, int64_t kcb, float* buf) {
  for (int64_t ir = 0; ir < mc; ir += MR) {
    const int64_t i0 = ic + ir;
    const int mr = static_cast<int>(std::min<int64_t>(MR, ic + mc - i0));
    float* dst = buf + ir * kcb;
    if (!P.ta) {  // op(A)[i][p] = A[i*k + p]
      for (int ii = 0; ii < mr; ++ii) {
        const float* src = P.a + (i0 + ii) * P.k + pc;
        for (int64_t p = 0; p < kcb; ++p) dst[p * MR + ii] = src[p];
      }
      for (int ii = mr; ii < MR; ++ii)
        for (int64_t p = 0; p < kcb; ++p) dst[p * MR + ii] = 0.0f;
    } else {  // op(A)[i][p] = A[p*m + i]
      for (int64_t p = 0; p < kcb; ++p) {
        const float* src = P.a + (pc + p) * P.m + i0;
        float* d = dst + p * MR;
        int ii = 0;
        for (; ii < mr; ++ii) d[ii] = src[ii];
        for (; ii < MR; ++ii) d[ii] = 0.0f;
      }
    }
  }
}

/** Writes (overwrite) or adds a computed MR×NR tile t into the mr×nr corner of C. */
inline void store_partial(const float* t, float* c, int64_t ldc, int mr, int nr, bool overwrite) {
  for (int r = 0; r < mr; ++r) {
    float* cr = c + r * ldc;
    const float* tr = t + r * NR;
    if (overwrite)
      for (int j = 0; j < nr; ++j) cr[j] = tr[j];
    else
      for (int j = 0; j < nr; ++j) cr[j] = cr[j] + tr[j];
  }
}

#ifdef GROK_GEMM_AVX2

void micro_kernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int mr, int nr, bool overwrite) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  for (int64_t p = 0; p < kc; ++p) {
    const __m256 b0 = _mm256_load_ps(b);  // packed panels are 64-byte aligned
    const __m256 b1 = _mm256_load_ps(b + 8);
    __m256 x = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(x, b0, c00);
    c01 = _mm256_fmadd_ps(x, b1, c01);
    x = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(x, b0, c10);
    c11 = _mm256_fmadd_ps(x, b1, c11);
    x = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(x, b0, c20);
    c21 = _mm256_fmadd_ps(x, b1, c21);
    x = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(x, b0, c30);
    c31 = _mm256_fmadd_ps(x, b1, c31);
    x = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(x, b0, c40);
    c41 = _mm256_fmadd_ps(x, b1, c41);
    x = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(x, b0, c50);
    c51 = _mm256_fmadd_ps(x, b1, c51);
    a += MR;
    b += NR;
  }
  if (mr == MR && nr == NR) {
#define GROK_ROW(r, lo, hi)                                                            \
  do {                                                                                 \
    float* cr = c + (r) * ldc;                                                         \
    if (overwrite) {                                                                   \
      _mm256_storeu_ps(cr, lo);                                                        \
      _mm256_storeu_ps(cr + 8, hi);                                                    \
    } else {                                                                           \
      _mm256_storeu_ps(cr, _mm256_add_ps(_mm256_loadu_ps(cr), lo));                    \
      _mm256_storeu_ps(cr + 8, _mm256_add_ps(_mm256_loadu_ps(cr + 8), hi));            \
    }                                                                                  \
  } while (0)
    GROK_ROW(0, c00, c01);
    GROK_ROW(1, c10, c11);
    GROK_ROW(2, c20, c21);
    GROK_ROW(3, c30, c31);
    GROK_ROW(4, c40, c41);
    GROK_ROW(5, c50, c51);
#undef GROK_ROW
  } else {
    alignas(32) float t[MR * NR];
    _mm256_store_ps(t + 0 * NR, c00);
    _mm256_store_ps(t + 0 * NR + 8, c01);
    _mm256_store_ps(t + 1 * NR, c10);
    _mm256_store_ps(t + 1 * NR + 8, c11);
    _mm256_store_ps(t + 2 * NR, c20);
    _mm256_store_ps(t + 2 * NR + 8, c21);
    _mm256_store_ps(t + 3 * NR, c30);
    _mm256_store_ps(t + 3 * NR + 8, c31);
    _mm256_store_ps(t + 4 * NR, c40);
    _mm256_store_ps(t + 4 * NR + 8, c41);
    _mm256_store_ps(t + 5 * NR, c50);
    _mm256_store_ps(t + 5 * NR + 8, c51);
    store_partial(t, c, ldc, mr, nr, overwrite);
  }
}

#else  // portable micro-kernel (same blocking; the compiler vectorizes the j loop)

void micro_kernel(int64_t kc, const float* a, const float* b, float* c, int64_t ldc, int mr, int nr, bool overwrite) {
  float t[MR * NR] = {};
  for (int64_t p = 0; p < kc; ++p) {
    for (int r = 0; r < MR; ++r) {
      const float x = a[r];
      for (int j = 0; j < NR; ++j) t[r * NR + j] += x * b[j];
    }
    a += MR;
    b += NR;
  }
  store_partial(t, c, ldc, mr, nr, overwrite);
}

#endif

/** Shared-B path: C rows [r0, r1), every column, from the packed bpack. */
void compute_rows(const Problem& P, int64_t r0, int64_t r1) {
  float* abuf = packed_a_buffer().get(static_cast<size_t>(MC * P.kc));
  for (int64_t ic = r0; ic < r1; ic += MC) {
    const int64_t mc = std::min(MC, r1 - ic);
    for (int64_t pb = 0; pb < P.kblocks; ++pb) {
      const int64_t kcb = kblock_len(P, pb);
      const bool overwrite = pb == 0 && !P.accumulate;
      pack_a(P, ic, mc, pb * P.kc, kcb, abuf);
      for (int64_t jp = 0; jp < P.panels; ++jp) {
        const int64_t j0 = jp * NR;
        const int nr = static_cast<int>(std::min<int64_t>(NR, P.n - j0));
        const float* bp = P.bpack + bpanel_offset(P, pb, jp);
        for (int64_t ir = 0; ir < mc; ir += MR) {
          const int mr = static_cast<int>(std::min<int64_t>(MR, mc - ir));
          micro_kernel(kcb, abuf + ir * kcb, bp, P.c + (ic + ir) * P.n + j0, P.n, mr, nr, overwrite);
        }
      }
    }
  }
}

constexpr int64_t NC_PANELS = 16;  // streamed path: 256 columns of B per packed block (256 KiB at kc = 256)

/**
 * Streamed-B path: every row, C columns of panels [jp0, jp1). B is packed a (k-block × NC) piece at a time
 * into this thread's buffer and used at once, so a large B is read once and never written out whole.
 */
void compute_cols(const Problem& P, int64_t jp0, int64_t jp1) {
  float* abuf = packed_a_buffer().get(static_cast<size_t>(MC * P.kc));
  float* bbuf = packed_b_local().get(static_cast<size_t>(NC_PANELS * NR * P.kc));
  for (int64_t jg = jp0; jg < jp1; jg += NC_PANELS) {
    const int64_t jgEnd = std::min(jp1, jg + NC_PANELS);
    for (int64_t pb = 0; pb < P.kblocks; ++pb) {
      const int64_t kcb = kblock_len(P, pb);
      const bool overwrite = pb == 0 && !P.accumulate;
      for (int64_t jp = jg; jp < jgEnd; ++jp) pack_b_panel(P, pb, jp, bbuf + (jp - jg) * kcb * NR);
      for (int64_t ic = 0; ic < P.m; ic += MC) {
        const int64_t mc = std::min(MC, P.m - ic);
        pack_a(P, ic, mc, pb * P.kc, kcb, abuf);
        for (int64_t jp = jg; jp < jgEnd; ++jp) {
          const int64_t j0 = jp * NR;
          const int nr = static_cast<int>(std::min<int64_t>(NR, P.n - j0));
          const float* bp = bbuf + (jp - jg) * kcb * NR;
          for (int64_t ir = 0; ir < mc; ir += MR) {
            const int mr = static_cast<int>(std::min<int64_t>(MR, mc - ir));
            micro_kernel(kcb, abuf + ir * kcb, bp, P.c + (ic + ir) * P.n + j0, P.n, mr, nr, overwrite);
          }
        }
      }
    }
  }
}

}  // namespace

const char* gemm_isa() {
#ifdef GROK_GEMM_AVX2
  return "avx2+fma";
#else
  return "generic";
#endif
}

void sgemm(bool transA, bool transB, int64_t m, int64_t n, int64_t k, const float* a, const float* b, float* c, bool accumulate) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (!accumulate) std::memset(c, 0, sizeof(float) * static_cast<size_t>(m * n));
    return;
  }
  Problem P;
  P.ta = transA;
  P.tb = transB;
  P.m = m;
  P.n = n;
  P.k = k;
  P.a = a;
  P.b = b;
  P.c = c;
  P.accumulate = accumulate;
  P.kblocks = (k + KC_MAX - 1) / KC_MAX;
  P.kc = (k + P.kblocks - 1) / P.kblocks;  // balanced blocks; depends on k only
  P.panels = (n + NR - 1) / NR;
  P.bpack = nullptr;

  const double work = static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k);
  const int threads = work >= (1 << 18) ? pool_threads() : 1;
  // Few rows of op(A) (at most a few MC blocks): B is big next to the work, so stream it, split by columns.
  // The choice depends on the shape only; either way each element's arithmetic is the same.
  if (m <= 4 * MC && P.panels >= 2) {
    if (threads <= 1)
      compute_cols(P, 0, P.panels);
    else
      parallel_for(P.panels, 1, 1, [&](int64_t j0, int64_t j1) { compute_cols(P, j0, j1); });
    return;
  }
  P.bpack = packed_b_buffer().get(static_cast<size_t>(k * P.panels * NR));
  if (threads <= 1) {
    pack_b_all(P, 0, P.panels);
    compute_rows(P, 0, m);
    return;
  }
  parallel_for(P.panels, 1, 1, [&](int64_t j0, int64_t j1) { pack_b_all(P, j0, j1); });
  parallel_for(m, 4 * MR, MR, [&](int64_t r0, int64_t r1) { compute_rows(P, r0, r1); });
}

}  // namespace grok
