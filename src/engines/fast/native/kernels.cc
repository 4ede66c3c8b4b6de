// Layer norm, attention, softmax and StableMax cross-entropy and activations: the same arithmetic as ts-kernels.ts
// (double precision inside, float32 in memory). Work is split across the pool only in units whose results
// do not depend on the split (rows, (sequence, head) pairs, columns, elements).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "grok.h"

namespace grok {

namespace {
constexpr double kLnEps = 1e-5;
constexpr int64_t kMinElems = 1 << 15;  // below this many elements a kernel stays on the calling thread
}  // namespace

// ---- layer norm ----------------------------------------------------------------------------------------

void layer_norm_forward(const float* x, const float* weight, const float* bias, int64_t rows, int64_t width, float* out, float* mean, float* rstd) {
  if (width <= 0 || rows <= 0) return;
  const int64_t minRows = std::max<int64_t>(1, kMinElems / width);
  parallel_for(rows, minRows, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * width;
      float* yr = out + r * width;
      double s = 0;
      for (int64_t j = 0; j < width; ++j) s += xr[j];
      const double mu = s / static_cast<double>(width);
      double ss = 0;
      for (int64_t j = 0; j < width; ++j) {
        const double d = xr[j] - mu;
        ss += d * d;
      }
      const double rs = 1.0 / std::sqrt(ss / static_cast<double>(width) + kLnEps);
      mean[r] = static_cast<float>(mu);
      rstd[r] = static_cast<float>(rs);
      for (int64_t j = 0; j < width; ++j) yr[j] = static_cast<float>((xr[j] - mu) * rs * weight[j] + bias[j]);
    }
  });
}

void layer_norm_backward(const float* dout, const float* x, const float* weight, const float* mean, const float* rstd, int64_t rows, int64_t width, float* dx, float* dweight, float* dbias) {
  if (width <= 0 || rows <= 0) return;
  const double w = static_cast<double>(width);
  // dx, by rows
  const int64_t minRows = std::max<int64_t>(1, kMinElems / width);
  parallel_for(rows, minRows, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * width;
      const float* gr = dout + r * width;
      float* dr = dx + r * width;
      const double mu = mean[r];
      const double rs = rstd[r];
      double sumG = 0, sumGX = 0;
      for (int64_t j = 0; j < width; ++j) {
        const double xh = (xr[j] - mu) * rs;
        const double g = static_cast<double>(gr[j]) * weight[j];
        sumG += g;
        sumGX += g * xh;
      }
      const double meanG = sumG / w;
      const double meanGX = sumGX / w;
      for (int64_t j = 0; j < width; ++j) {
        const double xh = (xr[j] - mu) * rs;
        dr[j] = static_cast<float>(dr[j] + rs * (static_cast<double>(gr[j]) * weight[j] - meanG - xh * meanGX));
      }
    }
  });
  // dweight, dbias: by columns, each summed over rows in order (so independent of the thread count)
  const int64_t minCols = std::max<int64_t>(8, kMinElems / rows);
  parallel_for(width, minCols, 8, [&](int64_t j0, int64_t j1) {
    std::vector<double> dw(static_cast<size_t>(j1 - j0), 0.0), db(static_cast<size_t>(j1 - j0), 0.0);
    for (int64_t r = 0; r < rows; ++r) {
      const float* xr = x + r * width;
      const float* gr = dout + r * width;
      const double mu = mean[r];
      const double rs = rstd[r];
      for (int64_t j = j0; j < j1; ++j) {
        const double dy = gr[j];
        dw[j - j0] += dy * ((xr[j] - mu) * rs);
        db[j - j0] += dy;
      }
    }
    for (int64_t j = j0; j < j1; ++j) {
      dweight[j] = static_cast<float>(dweight[j] + dw[j - j0]);
      dbias[j] = static_cast<float>(dbias[j] + db[j - j0]);
    }
  });
}

// ---- attention -----------------------------------------------------------------------------------------

namespace {

/** Σ a[d]·b[d] in double, four interleaved partial sums (the order is fixed by n alone). */
inline double dot(const float* a, const float* b, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t d = 0;
  for (; d + 4 <= n; d += 4) {
    s0 += static_cast<double>(a[d]) * b[d];
    s1 += static_cast<double>(a[d + 1]) * b[d + 1];
    s2 += static_cast<double>(a[d + 2]) * b[d + 2];
    s3 += static_cast<double>(a[d + 3]) * b[d + 3];
  }
  for (; d < n; ++d) s0 += static_cast<double>(a[d]) * b[d];
  return (s0 + s1) + (s2 + s3);
}

/** acc[d] += w·x[d] */
inline void axpy(double* __restrict acc, double w, const float* __restrict x, int64_t n) {
  for (int64_t d = 0; d < n; ++d) acc[d] += w * x[d];
}

}  // namespace

void attention_forward(const float* q, const float* k, const float* v, int64_t batch, int64_t tq, int64_t tk, int64_t heads, int64_t headDim, int64_t queryOffset, float* att, float* out) {
  const int64_t D = heads * headDim;
  const double scale = 1.0 / std::sqrt(static_cast<double>(headDim));
  const int64_t perPair = std::max<int64_t>(1, tq * tk * headDim);
  parallel_for(batch * heads, std::max<int64_t>(1, kMinElems / perPair), 1, [&](int64_t u0, int64_t u1) {
    std::vector<double> p(static_cast<size_t>(tk)), acc(static_cast<size_t>(headDim));
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t b = u / heads, h = u % heads;
      const float* kb = k + b * tk * D + h * headDim;
      const float* vb = v + b * tk * D + h * headDim;
      for (int64_t i = 0; i < tq; ++i) {
        const int64_t last = queryOffset + i;  // keys 0..last are visible
        const float* qi = q + (b * tq + i) * D + h * headDim;
        double mx = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j <= last; ++j) {
          const double s = dot(qi, kb + j * D, headDim) * scale;
          p[j] = s;
          if (s > mx) mx = s;
        }
        double sum = 0;
        for (int64_t j = 0; j <= last; ++j) {
          const double e = std::exp(p[j] - mx);
          p[j] = e;
          sum += e;
        }
        float* ai = att + ((b * heads + h) * tq + i) * tk;
        std::fill(acc.begin(), acc.end(), 0.0);
        for (int64_t j = 0; j <= last; ++j) {
          const double pj = p[j] / sum;
          ai[j] = static_cast<float>(pj);
          axpy(acc.data(), pj, vb + j * D, headDim);
        }
        for (int64_t j = last + 1; j < tk; ++j) ai[j] = 0.0f;
        float* oi = out + (b * tq + i) * D + h * headDim;
        for (int64_t d = 0; d < headDim; ++d) oi[d] = static_cast<float>(acc[d]);
      }
    }
  });
}

void attention_backward(const float* dout, const float* q, const float* k, const float* v, const float* att, int64_t batch, int64_t tq, int64_t tk, int64_t heads, int64_t headDim, int64_t queryOffset, float* dq, float* dk, float* dv) {
  const int64_t D = heads * headDim;
  const double scale = 1.0 / std::sqrt(static_cast<double>(headDim));
  const int64_t perPair = std::max<int64_t>(1, tq * tk * headDim);
  parallel_for(batch * heads, std::max<int64_t>(1, kMinElems / perPair), 1, [&](int64_t u0, int64_t u1) {
    std::vector<double> ds(static_cast<size_t>(tk)), dqAcc(static_cast<size_t>(headDim));
    std::vector<double> dkAcc(static_cast<size_t>(tk * headDim)), dvAcc(static_cast<size_t>(tk * headDim));
    for (int64_t u = u0; u < u1; ++u) {
      const int64_t b = u / heads, h = u % heads;
      const float* kb = k + b * tk * D + h * headDim;
      const float* vb = v + b * tk * D + h * headDim;
      std::fill(dkAcc.begin(), dkAcc.end(), 0.0);
      std::fill(dvAcc.begin(), dvAcc.end(), 0.0);
      for (int64_t i = 0; i < tq; ++i) {
        const int64_t last = queryOffset + i;
        const int64_t qo = (b * tq + i) * D + h * headDim;
        const float* gi = dout + qo;
        const float* qi = q + qo;
        const float* ai = att + ((b * heads + h) * tq + i) * tk;
        // dP_j = dout_i·v_j;  dv_j += P_ij·dout_i
        double rowDot = 0;
        for (int64_t j = 0; j <= last; ++j) {
          const double pj = ai[j];
          const double dpj = dot(gi, vb + j * D, headDim);
          axpy(dvAcc.data() + j * headDim, pj, gi, headDim);
          ds[j] = dpj;
          rowDot += pj * dpj;
        }
        // dS_j = P_ij·(dP_j − Σ P·dP)·scale;  dq_i += Σ_j dS_j·k_j;  dk_j += dS_j·q_i
        std::fill(dqAcc.begin(), dqAcc.end(), 0.0);
        for (int64_t j = 0; j <= last; ++j) {
          const double dsj = ai[j] * (ds[j] - rowDot) * scale;
          axpy(dqAcc.data(), dsj, kb + j * D, headDim);
          axpy(dkAcc.data() + j * headDim, dsj, qi, headDim);
        }
        float* dqi = dq + qo;
        for (int64_t d = 0; d < headDim; ++d) dqi[d] = static_cast<float>(dqi[d] + dqAcc[d]);
      }
      for (int64_t j = 0; j < tk; ++j) {
        float* dkj = dk + (b * tk + j) * D + h * headDim;
        float* dvj = dv + (b * tk + j) * D + h * headDim;
        const double* dka = dkAcc.data() + j * headDim;
        const double* dva = dvAcc.data() + j * headDim;
        for (int64_t d = 0; d < headDim; ++d) {
          dkj[d] = static_cast<float>(dkj[d] + dka[d]);
          dvj[d] = static_cast<float>(dvj[d] + dva[d]);
        }
      }
    }
  });
}

// ---- softmax cross-entropy -----------------------------------------------------------------------------

void softmax_cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t classes, float* losses, float* dlogits, double scale) {
  if (rows <= 0) return;
  const int64_t minRows = std::max<int64_t>(1, (kMinElems / 4) / std::max<int64_t>(1, classes));
  parallel_for(rows, minRows, 1, [&](int64_t r0, int64_t r1) {
    std::vector<double> e(static_cast<size_t>(classes));
    for (int64_t r = r0; r < r1; ++r) {
      const float* lr = logits + r * classes;
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t j = 0; j < classes; ++j)
        if (lr[j] > mx) mx = lr[j];
      double sum = 0;
      for (int64_t j = 0; j < classes; ++j) {
        e[j] = std::exp(lr[j] - mx);
        sum += e[j];
      }
      const int32_t t = targets[r];
      losses[r] = static_cast<float>(std::log(sum) - (lr[t] - mx));
      if (dlogits) {
        float* dr = dlogits + r * classes;
        for (int64_t j = 0; j < classes; ++j) {
          const double pj = e[j] / sum;
          dr[j] = static_cast<float>((j == t ? pj - 1.0 : pj) * scale);
        }
      }
    }
  });
}

// ---- StableMax cross-entropy ---------------------------------------------------------------------------

namespace {
// s(x) = x + 1 for x >= 0, 1/(1 - x) below, and its slope
inline double stablemax_s(double x) { return x >= 0 ? x + 1.0 : 1.0 / (1.0 - x); }
inline double stablemax_slope(double x) { return x >= 0 ? 1.0 : 1.0 / ((1.0 - x) * (1.0 - x)); }
}  // namespace

void stablemax_cross_entropy(const float* logits, const int32_t* targets, int64_t rows, int64_t classes, float* losses, float* dlogits, double scale) {
  if (rows <= 0) return;
  const int64_t minRows = std::max<int64_t>(1, (kMinElems / 4) / std::max<int64_t>(1, classes));
  parallel_for(rows, minRows, 1, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* lr = logits + r * classes;
      double sum = 0;
      for (int64_t j = 0; j < classes; ++j) sum += stablemax_s(lr[j]);
      const int32_t t = targets[r];
      const double st = stablemax_s(lr[t]);
      losses[r] = static_cast<float>(std::log(sum) - std::log(st));
      if (dlogits) {
        float* dr = dlogits + r * classes;
        for (int64_t j = 0; j < classes; ++j) {
          const double dj = stablemax_slope(lr[j]) / sum;
          dr[j] = static_cast<float>((j == t ? dj - stablemax_slope(lr[t]) / st : dj) * scale);
        }
      }
    }
  });
}

// ---- activations ---------------------------------------------------------------------------------------

namespace {
constexpr double kInvSqrt2 = 0.70710678118654752440;
constexpr double kInvSqrt2Pi = 0.3989422804014327;
inline double normal_cdf(double x) { return 0.5 * std::erfc(-x * kInvSqrt2); }
}  // namespace

void activation_forward(Activation kind, const float* x, float* out, int64_t n) {
  if (kind == Activation::Relu) {
    parallel_for(n, 4 * kMinElems, 64, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const float xi = x[i];
        out[i] = xi <= 0.0f ? 0.0f : xi;  // NaN propagates
      }
    });
  } else {
    parallel_for(n, kMinElems / 8, 64, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const double xi = x[i];
        out[i] = static_cast<float>(xi * normal_cdf(xi));
      }
    });
  }
}

void activation_backward(Activation kind, const float* dout, const float* x, float* dx, int64_t n) {
  if (kind == Activation::Relu) {
    parallel_for(n, 4 * kMinElems, 64, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) dx[i] = x[i] > 0.0f ? dout[i] : 0.0f;
    });
  } else {
    parallel_for(n, kMinElems / 8, 64, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const double xi = x[i];
        dx[i] = static_cast<float>(dout[i] * (normal_cdf(xi) + xi * kInvSqrt2Pi * std::exp(-0.5 * xi * xi)));
      }
    });
  }
}

}  // namespace grok
