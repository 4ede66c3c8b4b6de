// Adam/AdamW update, bit for bit the TypeScript loop in ts-kernels.ts: double-precision arithmetic in the
// same order, one rounding to float32 at each store, correctly rounded sqrt, and no floating-point
// contraction (a fused multiply-add would round differently from JavaScript's separate * and +).
// binding.gyp compiles the addon with -ffp-contract=off (the pragmas below say so again for this file) and
// -fno-math-errno, which lets the loop vectorize (errno aside, sqrt is the same correctly rounded sqrt).
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include <cmath>
#include <stdexcept>
#include <cstdint>

#include "grok.h"

namespace grok {

namespace {

enum Decay { kNoDecay, kDecoupled, kCoupled };

// One specialization per combination of options, so the loop has no branches and the compiler can
// vectorize it (vector double add/mul/div/sqrt round exactly like the scalar ones).
template <Decay D, bool HasInit, bool HasNoise>
void adam_range(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v, const float* __restrict init, const float* __restrict noise, int64_t begin, int64_t end, double lr, double beta1, double beta2, double eps, double bc1, double bc2, double weightDecay) {
  const double sqrtBc2 = std::sqrt(bc2);
  const double step = lr / bc1;
  const double oneMinusBeta1 = 1.0 - beta1;
  const double oneMinusBeta2 = 1.0 - beta2;
  for (int64_t i = begin; i < end; ++i) {
    double gi = g[i];
    if (D != kNoDecay) {
      const double decay = weightDecay * (HasInit ? static_cast<double>(p[i]) - static_cast<double>(init[i]) : static_cast<double>(p[i]));
      if (D == kDecoupled)
        p[i] = static_cast<float>(static_cast<double>(p[i]) - lr * decay);
      else
        gi += decay;
    }
    m[i] = static_cast<float>(beta1 * static_cast<double>(m[i]) + oneMinusBeta1 * gi);
    v[i] = static_cast<float>(beta2 * static_cast<double>(v[i]) + oneMinusBeta2 * gi * gi);
    double u = static_cast<double>(m[i]) / (std::sqrt(static_cast<double>(v[i])) / sqrtBc2 + eps);
    if (HasNoise) u += static_cast<double>(noise[i]);
    p[i] = static_cast<float>(static_cast<double>(p[i]) - step * u);
  }
}

bool overlap(const float* a, const float* b, int64_t n) {
  if (!a || !b || n <= 0) return false;
  const auto x = reinterpret_cast<std::uintptr_t>(a), y = reinterpret_cast<std::uintptr_t>(b);
  const auto bytes = static_cast<std::uintptr_t>(n) * sizeof(float);
  return x < y + bytes && y < x + bytes;
}

using RangeFn = void (*)(float*, const float*, float*, float*, const float*, const float*, int64_t, int64_t, double, double, double, double, double, double, double);

template <Decay D>
RangeFn pick(bool hasInit, bool hasNoise) {
  if (hasInit) return hasNoise ? adam_range<D, true, true> : adam_range<D, true, false>;
  return hasNoise ? adam_range<D, false, true> : adam_range<D, false, false>;
}

}  // namespace

void adam_update(float* p, const float* g, float* m, float* v, const float* init, const float* noise, int64_t n, double lr, double beta1, double beta2, double eps, double bc1, double bc2, double weightDecay, bool decoupled) {
  // `weightDecay > 0` exactly as in TypeScript (a NaN decay is no decay)
  const RangeFn fn = !(weightDecay > 0) ? pick<kNoDecay>(init != nullptr, noise != nullptr)
                     : decoupled       ? pick<kDecoupled>(init != nullptr, noise != nullptr)
                                       : pick<kCoupled>(init != nullptr, noise != nullptr);
  const float* written[] = {p, m, v};
  const float* all[] = {p, m, v, g, init, noise};
  bool aliased = false;
  for (int w = 0; w < 3; ++w)
    for (int o = 0; o < 6; ++o)
      if (o != w && overlap(written[w], all[o], n)) aliased = true;
  // the loop promises the compiler no aliasing (__restrict), so overlapping arrays would be undefined
  if (aliased) throw std::invalid_argument("adamUpdate: p, m and v must not overlap each other or g, init, noise");
  // each element is updated on its own, so any split gives the same bits
  parallel_for(n, 1 << 16, 64, [&](int64_t i0, int64_t i1) { fn(p, g, m, v, init, noise, i0, i1, lr, beta1, beta2, eps, bc1, bc2, weightDecay); });
}

}  // namespace grok
