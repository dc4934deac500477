// ctarr — the temporary files being written right now, so that a second SIGINT/SIGTERM can remove them before the
// process dies (private to the library; async-signal-safe where it says so).
#pragma once

namespace ctarr {

// Registers a temporary file about to be written; returns its slot, or -1 when every slot is taken or the path is
// too long (the file is then simply not removed by a second signal).
int register_temp_file(const char* path) noexcept;
// The file was renamed into place or removed.
void unregister_temp_file(int slot) noexcept;
// Unlinks every registered file. Async-signal-safe (atomics and unlink only).
void remove_temp_files_now() noexcept;

// RAII for the above.
class TempFileGuard {
 public:
  explicit TempFileGuard(const char* path) noexcept : slot_(register_temp_file(path)) {}
  ~TempFileGuard() { unregister_temp_file(slot_); }
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;

 private:
  int slot_;
};

}  // namespace ctarr
