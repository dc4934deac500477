// ctarr — registry of temporary files in flight (see temp_files.hpp).
#include "temp_files.hpp"

#include <atomic>
#include <cstring>
#include <unistd.h>

namespace ctarr {

namespace {

constexpr int kSlots = 64;           // files written at once: one per worker at most, in practice
constexpr std::size_t kMaxPath = 4096;

struct Slot {
  std::atomic<int> state{0};  // 0 free, 1 being filled, 2 registered
  char path[kMaxPath];
};
Slot g_slots[kSlots];
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs lock-free atomics");

}  // namespace

int register_temp_file(const char* path) noexcept {
  const std::size_t n = std::strlen(path);
  if (n + 1 > kMaxPath) return -1;
  for (int s = 0; s < kSlots; ++s) {
    int expected = 0;
    if (!g_slots[s].state.compare_exchange_strong(expected, 1, std::memory_order_acquire)) continue;
    std::memcpy(g_slots[s].path, path, n + 1);
    g_slots[s].state.store(2, std::memory_order_release);
    return s;
  }
  return -1;
}

void unregister_temp_file(int slot) noexcept {
  if (slot >= 0 && slot < kSlots) g_slots[slot].state.store(0, std::memory_order_release);
}

void remove_temp_files_now() noexcept {
  for (Slot& s : g_slots)
    if (s.state.load(std::memory_order_acquire) == 2) ::unlink(s.path);
}

}  // namespace ctarr
