// ParallelFor over XLA's own intra-op thread pool, for lamina's FFI kernels (kernels/*.cc).
//
// Kernels that bring no thread pool of their own leave the cores to one scheduler, XLA's: a
// second pool (OpenMP, say) spinning beside it is what makes small CPU kernels slow.

#ifndef LAMINA_MODELS_FFI_PARALLEL_H_
#define LAMINA_MODELS_FFI_PARALLEL_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>

#include "xla/ffi/api/ffi.h"

namespace lamina {

// Runs fn(0..tasks-1) on the calling thread and on the other threads of XLA's pool; returns
// once all have run. The caller works through the tasks too, and a helper that starts after
// the work is gone returns at once: nothing waits on a pool thread that never comes.
inline void ParallelFor(xla::ffi::ThreadPool& pool, int64_t tasks, std::function<void(int64_t)> fn) {
  struct State {
    std::function<void(int64_t)> fn;
    int64_t tasks;
    std::atomic<int64_t> next{0}, done{0};
    std::mutex mutex;
    std::condition_variable finished;
    void Drain() {
      for (int64_t i; (i = next.fetch_add(1)) < tasks;) {
        fn(i);
        if (done.fetch_add(1) + 1 == tasks) {
          std::lock_guard<std::mutex> lock(mutex);
          finished.notify_all();
        }
      }
    }
  };
  auto state = std::make_shared<State>();
  state->fn = std::move(fn);
  state->tasks = tasks;
  const int64_t helpers = std::min<int64_t>(pool.num_threads(), tasks) - 1;
  for (int64_t i = 0; i < helpers; ++i) pool.Schedule([state] { state->Drain(); });
  state->Drain();
  std::unique_lock<std::mutex> lock(state->mutex);
  state->finished.wait(lock, [&] { return state->done.load() == state->tasks; });
}

}  // namespace lamina

#endif  // LAMINA_MODELS_FFI_PARALLEL_H_
