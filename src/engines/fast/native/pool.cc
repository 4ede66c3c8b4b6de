// A small persistent thread pool: n−1 workers plus the calling thread. One job at a time; a job is a
// function of a part index, and part 0 runs on the caller.
#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "grok.h"

namespace grok {

int hardware_threads() {
  unsigned hc = std::thread::hardware_concurrency();
  return hc == 0 ? 1 : static_cast<int>(hc);
}

namespace {

class Pool {
 public:
  explicit Pool(int n) { start(n); }
  ~Pool() { stop(); }

  int size() const { return size_; }

  void resize(int n) {
    std::lock_guard<std::mutex> call(call_mu_);
    if (n == size_) return;
    stop();
    start(n);
  }

  void run(int parts, const std::function<void(int)>& fn) {
    std::lock_guard<std::mutex> call(call_mu_);  // one job at a time (e.g. several worker_threads)
    parts = std::min(parts, size_);
    if (parts <= 1) {
      if (parts == 1) fn(0);
      return;
    }
    {
      std::lock_guard<std::mutex> lk(mu_);
      job_ = &fn;
      parts_ = parts;
      pending_ = parts - 1;
      ++generation_;
    }
    work_cv_.notify_all();
    fn(0);
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [this] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
  void start(int n) {
    size_ = std::max(1, n);
    stopping_ = false;
    const uint64_t gen = generation_;
    for (int i = 1; i < size_; ++i) workers_.emplace_back([this, i, gen] { loop(i, gen); });
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      stopping_ = true;
    }
    work_cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  void loop(int index, uint64_t seen) {
    for (;;) {
      const std::function<void(int)>* job = nullptr;
      {
        std::unique_lock<std::mutex> lk(mu_);
        work_cv_.wait(lk, [&] { return stopping_ || generation_ != seen; });
        if (stopping_) return;
        seen = generation_;
        if (index >= parts_) continue;
        job = job_;
      }
      (*job)(index);
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (--pending_ == 0) done_cv_.notify_one();
      }
    }
  }

  int size_ = 1;
  std::vector<std::thread> workers_;
  std::mutex call_mu_;
  std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  const std::function<void(int)>* job_ = nullptr;
  int parts_ = 0;
  int pending_ = 0;
  uint64_t generation_ = 0;
  bool stopping_ = false;
};

int clamp_threads(long n) {
  return static_cast<int>(std::max(1L, std::min(n, static_cast<long>(hardware_threads()))));
}

int default_threads() {
  // GROK_THREADS overrides; otherwise min(2, cores)
  const char* env = std::getenv("GROK_THREADS");
  if (env && *env) {
    char* end = nullptr;
    long n = std::strtol(env, &end, 10);
    if (end && *end == '\0' && n >= 1) return clamp_threads(n);
  }
  return std::min(2, hardware_threads());
}

Pool& pool() {
  static Pool instance(default_threads());
  return instance;
}

}  // namespace

int pool_threads() { return pool().size(); }

void pool_set_threads(int n) { pool().resize(clamp_threads(n)); }

void parallel_for(int64_t total, int64_t min_chunk, int64_t align, const std::function<void(int64_t, int64_t)>& fn) {
  if (total <= 0) return;
  if (align < 1) align = 1;
  if (min_chunk < 1) min_chunk = 1;
  Pool& p = pool();
  int64_t parts = std::min<int64_t>(p.size(), total / min_chunk);
  if (parts <= 1) {
    fn(0, total);
    return;
  }
  // equal chunks rounded up to `align`
  const int64_t units = (total + align - 1) / align;
  const int64_t per = (units + parts - 1) / parts;
  parts = (units + per - 1) / per;
  p.run(static_cast<int>(parts), [&](int part) {
    const int64_t begin = std::min(total, part * per * align);
    const int64_t end = std::min(total, (part + 1) * per * align);
    if (begin < end) fn(begin, end);
  });
}

}  // namespace grok
