// ctarr — a minimal parallel loop over independent slices (private to the library).
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

namespace ctarr {

// The thread count for ctarr's loops and LibTorch's pool: CTARR_THREADS if set (a whole number 1..4096, else
// Error(Usage) naming it), otherwise the hardware concurrency (at least 1). The one place CTARR_THREADS is read.
int configured_threads();

// configured_threads(), read once (the first call throws for a bad CTARR_THREADS; network loading calls it first).
int worker_threads();

// Calls body(n) for n in [0, count), spread over worker_threads() threads. body must not throw.
template <class Body>
void parallel_for(std::int64_t count, const Body& body) {
  const int threads = static_cast<int>(std::min<std::int64_t>(worker_threads(), count));
  if (threads <= 1) {
    for (std::int64_t n = 0; n < count; ++n) body(n);
    return;
  }
  std::atomic<std::int64_t> next{0};
  std::vector<std::thread> pool;
  pool.reserve(static_cast<std::size_t>(threads));
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&] {
      for (std::int64_t n = next++; n < count; n = next++) body(n);
    });
  for (std::thread& th : pool) th.join();
}

}  // namespace ctarr
