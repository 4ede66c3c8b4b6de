// Node-API binding of the native kernels. Each export takes the same arguments as the matching method of
// the Kernels interface (../kernels.ts), checks every size and array length, and throws a JS Error
// "<kernel>: <problem>" instead of touching memory outside the arrays it was given.
#include <node_api.h>

#include <cmath>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <string>

#include "grok.h"

namespace {

using grok::Activation;

struct KernelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

/** Serializes kernel calls (the pool and the packing buffers are shared by every JS thread). */
std::mutex& kernel_mutex() {
  static std::mutex mu;
  return mu;
}

class Args {
 public:
  Args(napi_env env, napi_callback_info info, const char* kernel, size_t expected) : env_(env), kernel_(kernel) {
    size_t argc = kMax;
    if (napi_get_cb_info(env, info, &argc, argv_, nullptr, nullptr) != napi_ok) fail("cannot read the arguments");
    if (argc < expected) fail("expected " + std::to_string(expected) + " arguments, got " + std::to_string(argc));
    argc_ = argc;
  }

  [[noreturn]] void fail(const std::string& problem) const { throw KernelError(std::string(kernel_) + ": " + problem); }

  double number(size_t i, const char* name) const {
    double d = 0;
    if (napi_get_value_double(env_, argv_[i], &d) != napi_ok) fail(std::string(name) + " must be a number");
    return d;
  }

  /** A non-negative integer size (at most 2^31 − 1). */
  int64_t dim(size_t i, const char* name) const {
    const double d = number(i, name);
    if (!(d >= 0) || d > 2147483647.0 || std::floor(d) != d) fail(std::string(name) + " must be a non-negative integer (got " + fmt(d) + ")");
    return static_cast<int64_t>(d);
  }

  bool flag(size_t i) const {
    napi_value b;
    bool out = false;
    if (napi_coerce_to_bool(env_, argv_[i], &b) != napi_ok || napi_get_value_bool(env_, b, &out) != napi_ok) fail("cannot read a boolean argument");
    return out;
  }

  std::string str(size_t i, const char* name) const {
    char buf[32];
    size_t len = 0;
    napi_valuetype t;
    napi_typeof(env_, argv_[i], &t);
    if (t != napi_string || napi_get_value_string_utf8(env_, argv_[i], buf, sizeof buf, &len) != napi_ok) fail(std::string(name) + " must be a string");
    return std::string(buf, len);
  }

  bool absent(size_t i) const {
    if (i >= argc_) return true;
    napi_valuetype t;
    if (napi_typeof(env_, argv_[i], &t) != napi_ok) return true;
    return t == napi_null || t == napi_undefined;
  }

  float* f32(size_t i, const char* name, int64_t need) const { return static_cast<float*>(typed(i, name, napi_float32_array, "a Float32Array", need)); }
  float* f32_or_null(size_t i, const char* name, int64_t need) const { return absent(i) ? nullptr : f32(i, name, need); }
  int32_t* i32(size_t i, const char* name, int64_t need) const { return static_cast<int32_t*>(typed(i, name, napi_int32_array, "an Int32Array", need)); }

 private:
  static constexpr size_t kMax = 16;

  static std::string fmt(double d) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.17g", d);
    return buf;
  }

  void* typed(size_t i, const char* name, napi_typedarray_type want, const char* wantName, int64_t need) const {
    bool is = false;
    if (napi_is_typedarray(env_, argv_[i], &is) != napi_ok || !is) fail(std::string(name) + " must be " + wantName);
    napi_typedarray_type type;
    size_t length = 0;
    void* data = nullptr;
    napi_value ab;
    size_t offset = 0;
    if (napi_get_typedarray_info(env_, argv_[i], &type, &length, &data, &ab, &offset) != napi_ok) fail(std::string("cannot read ") + name);
    if (type != want) fail(std::string(name) + " must be " + wantName);
    if (static_cast<int64_t>(length) < need)
      fail(std::string(name) + " has " + std::to_string(length) + " elements, needs at least " + std::to_string(need));
    if (need > 0 && data == nullptr) fail(std::string(name) + " is detached");
    return data;
  }

  napi_env env_;
  const char* kernel_;
  napi_value argv_[kMax];
  size_t argc_ = 0;
};

napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

template <typename F>
napi_value guarded(napi_env env, F&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    napi_throw_error(env, nullptr, e.what());
  } catch (...) {
    napi_throw_error(env, nullptr, "native kernels: unknown error");
  }
  return nullptr;
}

Activation activation_kind(const Args& a, size_t i) {
  const std::string kind = a.str(i, "kind");
  if (kind == "relu") return Activation::Relu;
  if (kind == "gelu") return Activation::Gelu;
  a.fail("unknown activation \"" + kind + "\" (relu or gelu)");
}

// ---- exports -------------------------------------------------------------------------------------------

napi_value Threads(napi_env env, napi_callback_info) {
  return guarded(env, [&] {
    napi_value out;
    napi_create_int32(env, grok::pool_threads(), &out);
    return out;
  });
}

napi_value SetThreads(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, "setThreads", 1);
    const double n = a.number(0, "n");
    if (!(n >= 1) || std::floor(n) != n) a.fail("thread count must be an integer >= 1");
    std::lock_guard<std::mutex> lock(kernel_mutex());
    grok::pool_set_threads(n > 1e6 ? 1000000 : static_cast<int>(n));
    return undefined(env);
  });
}

napi_value Matmul(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, "matmul", 9);
    const bool ta = a.flag(0), tb = a.flag(1);
    const int64_t m = a.dim(2, "m"), n = a.dim(3, "n"), k = a.dim(4, "k");
    const float* A = a.f32(5, "a", m * k);
    const float* B = a.f32(6, "b", k * n);
    float* C = a.f32(7, "c", m * n);
    const bool acc = a.flag(8);
    std::lock_guard<std::mutex> lock(kernel_mutex());
    grok::sgemm(ta, tb, m, n, k, A, B, C, acc);
    return undefined(env);
  });
}

napi_value LayerNormForward(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, "layerNormForward", 8);
    const int64_t rows = a.dim(3, "rows"), width = a.dim(4, "width");
    const float* x = a.f32(0, "x", rows * width);
    const float* w = a.f32(1, "weight", width);
    const float* b = a.f32(2, "bias", width);
    float* out = a.f32(5, "out", rows * width);
    float* mean = a.f32(6, "mean", rows);
    float* rstd = a.f32(7, "rstd", rows);
    std::lock_guard<std::mutex> lock(kernel_mutex());
    grok::layer_norm_forward(x, w, b, rows, width, out, mean, rstd);
    return undefined(env);
  });
}

napi_value LayerNormBackward(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, "layerNormBackward", 10);
    const int64_t rows = a.dim(5, "rows"), width = a.dim(6, "width");
    const float* dout = a.f32(0, "dout", rows * width);
    const float* x = a.f32(1, "x", rows * width);
    const float* w = a.f32(2, "weight", width);
    const float* mean = a.f32(3, "mean", rows);
    const float* rstd = a.f32(4, "rstd", rows);
    float* dx = a.f32(7, "dx", rows * width);
    float* dw = a.f32(8, "dweight", width);
    float* db = a.f32(9, "dbias", width);
    std::lock_guard<std::mutex> lock(kernel_mutex());
    grok::layer_norm_backward(dout, x, w, mean, rstd, rows, width, dx, dw, db);
    return undefined(env);
  });
}

struct AttentionDims {
  int64_t batch, tq, tk, heads, headDim, queryOffset, D;
};

AttentionDims attention_dims(const Args& a, size_t first) {
  AttentionDims d;
  d.batch = a.dim(first, "batch");
  d.tq = a.dim(first + 1, "tq");
  d.tk = a.dim(first + 2, "tk");
  d.heads = a.dim(first + 3, "heads");
  d.headDim = a.dim(first + 4, "headDim");
  d.queryOffset = a.dim(first + 5, "queryOffset");
  if (d.queryOffset + d.tq > d.tk)
    a.fail("queryOffset + tq (" + std::to_string(d.queryOffset) + " + " + std::to_string(d.tq) + ") must not exceed tk (" + std::to_string(d.tk) + ")");
  d.D = d.heads * d.headDim;
  return d;
}

napi_value AttentionForward(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, "attentionForward", 11);
    const AttentionDims d = attention_dims(a, 3);
    const float* q = a.f32(0, "q", d.batch * d.tq * d.D);
    const float* k = a.f32(1, "k", d.batch * d.tk * d.D);
    const float* v = a.f32(2, "v", d.batch * d.tk * d.D);
    float* att = a.f32(9, "att", d.batch * d.heads * d.tq * d.tk);
    float* out = a.f32(10, "out", d.batch * d.tq * d.D);
    std::lock_guard<std::mutex> lock(kernel_mutex());
    grok::attention_forward(q, k, v, d.batch, d.tq, d.tk, d.heads, d.headDim, d.queryOffset, att, out);
    return undefined(env);
  });
}

napi_value AttentionBackward(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, "attentionBackward", 14);
    const AttentionDims d = attention_dims(a, 5);
    const float* dout = a.f32(0, "dout", d.batch * d.tq * d.D);
    const float* q = a.f32(1, "q", d.batch * d.tq * d.D);
    const float* k = a.f32(2, "k", d.batch * d.tk * d.D);
    const float* v = a.f32(3, "v", d.batch * d.tk * d.D);
    const float* att = a.f32(4, "att", d.batch * d.heads * d.tq * d.tk);
    float* dq = a.f32(11, "dq", d.batch * d.tq * d.D);
    float* dk = a.f32(12, "dk", d.batch * d.tk * d.D);
    float* dv = a.f32(13, "dv", d.batch * d.tk * d.D);
    std::lock_guard<std::mutex> lock(kernel_mutex());
    grok::attention_backward(dout, q, k, v, att, d.batch, d.tq, d.tk, d.heads, d.headDim, d.queryOffset, dq, dk, dv);
    return undefined(env);
  });
}

using CrossEntropyKernel = void (*)(const float*, const int32_t*, int64_t, int64_t, float*, float*, double);

// softmaxCrossEntropy and stablemaxCrossEntropy: the same arguments and checks, another kernel
napi_value CrossEntropy(napi_env env, napi_callback_info info, const char* name, CrossEntropyKernel kernel) {
  return guarded(env, [&] {
    Args a(env, info, name, 7);
    const int64_t rows = a.dim(2, "rows"), classes = a.dim(3, "classes");
    const float* logits = a.f32(0, "logits", rows * classes);
    const int32_t* targets = a.i32(1, "targets", rows);
    float* losses = a.f32(4, "losses", rows);
    float* dlogits = a.f32_or_null(5, "dlogits", rows * classes);
    const double scale = a.number(6, "scale");
    for (int64_t r = 0; r < rows; ++r)
      if (targets[r] < 0 || targets[r] >= classes)
        a.fail("target " + std::to_string(targets[r]) + " of row " + std::to_string(r) + " is outside 0.." + std::to_string(classes - 1));
    std::lock_guard<std::mutex> lock(kernel_mutex());
    kernel(logits, targets, rows, classes, losses, dlogits, scale);
    return undefined(env);
  });
}

napi_value SoftmaxCrossEntropy(napi_env env, napi_callback_info info) {
  return CrossEntropy(env, info, "softmaxCrossEntropy", grok::softmax_cross_entropy);
}

napi_value StablemaxCrossEntropy(napi_env env, napi_callback_info info) {
  return CrossEntropy(env, info, "stablemaxCrossEntropy", grok::stablemax_cross_entropy);
}

napi_value ActivationForward(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, "activationForward", 4);
    const Activation kind = activation_kind(a, 0);
    const int64_t n = a.dim(3, "n");
    const float* x = a.f32(1, "x", n);
    float* out = a.f32(2, "out", n);
    std::lock_guard<std::mutex> lock(kernel_mutex());
    grok::activation_forward(kind, x, out, n);
    return undefined(env);
  });
}

napi_value ActivationBackward(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, "activationBackward", 5);
    const Activation kind = activation_kind(a, 0);
    const int64_t n = a.dim(4, "n");
    const float* dout = a.f32(1, "dout", n);
    const float* x = a.f32(2, "x", n);
    float* dx = a.f32(3, "dx", n);
    std::lock_guard<std::mutex> lock(kernel_mutex());
    grok::activation_backward(kind, dout, x, dx, n);
    return undefined(env);
  });
}

napi_value AdamUpdate(napi_env env, napi_callback_info info) {
  return guarded(env, [&] {
    Args a(env, info, "adamUpdate", 15);
    const int64_t n = a.dim(6, "n");
    float* p = a.f32(0, "p", n);
    const float* g = a.f32(1, "g", n);
    float* m = a.f32(2, "m", n);
    float* v = a.f32(3, "v", n);
    const float* init = a.f32_or_null(4, "init", n);
    const float* noise = a.f32_or_null(5, "noise", n);
    const double lr = a.number(7, "lr"), beta1 = a.number(8, "beta1"), beta2 = a.number(9, "beta2"), eps = a.number(10, "eps");
    const double bc1 = a.number(11, "bc1"), bc2 = a.number(12, "bc2"), wd = a.number(13, "weightDecay");
    const bool decoupled = a.flag(14);
    std::lock_guard<std::mutex> lock(kernel_mutex());
    grok::adam_update(p, g, m, v, init, noise, n, lr, beta1, beta2, eps, bc1, bc2, wd, decoupled);
    return undefined(env);
  });
}

napi_value Init(napi_env env, napi_value exports) {
  struct Entry {
    const char* name;
    napi_callback fn;
  };
  const Entry entries[] = {
      {"threads", Threads},
      {"setThreads", SetThreads},
      {"matmul", Matmul},
      {"layerNormForward", LayerNormForward},
      {"layerNormBackward", LayerNormBackward},
      {"attentionForward", AttentionForward},
      {"attentionBackward", AttentionBackward},
      {"softmaxCrossEntropy", SoftmaxCrossEntropy},
      {"stablemaxCrossEntropy", StablemaxCrossEntropy},
      {"activationForward", ActivationForward},
      {"activationBackward", ActivationBackward},
      {"adamUpdate", AdamUpdate},
  };
  for (const Entry& e : entries) {
    napi_value fn;
    if (napi_create_function(env, e.name, NAPI_AUTO_LENGTH, e.fn, nullptr, &fn) != napi_ok) return nullptr;
    if (napi_set_named_property(env, exports, e.name, fn) != napi_ok) return nullptr;
  }
  napi_value isa, hw;
  napi_create_string_utf8(env, grok::gemm_isa(), NAPI_AUTO_LENGTH, &isa);
  napi_set_named_property(env, exports, "isa", isa);
  napi_create_int32(env, grok::hardware_threads(), &hw);
  napi_set_named_property(env, exports, "hardwareThreads", hw);
  return exports;
}

}  // namespace

NAPI_MODULE_INIT() { return Init(env, exports); }
