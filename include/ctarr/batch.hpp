// ctarr — running many cases in one process: shards for job arrays, stop requests (SIGINT/SIGTERM), progress.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace ctarr {

// One part of a deterministic split of a sorted case list, for job arrays (Slurm --array=0-(N-1)).
// `index` is 0-based: shard I of N takes the cases at sorted positions p with p % N == I (round robin, so shards
// differ by at most one case and neighbouring cases go to different jobs).
struct Shard {
  int index = 0;
  int count = 1;
};

// Parses "I/N" (0-based I, 0 <= I < N). Throws Usage naming the text and the valid range.
Shard parse_shard(const std::string& text);

// The items of `sorted` that belong to `shard` (keeps their order).
template <class T>
std::vector<T> select_shard(const std::vector<T>& sorted, const Shard& shard) {
  std::vector<T> out;
  for (std::size_t n = 0; n < sorted.size(); ++n)
    if (static_cast<int>(n % static_cast<std::size_t>(shard.count)) == shard.index) out.push_back(sorted[n]);
  return out;
}

// ---- stop requests ----------------------------------------------------------------------------------------------

// While alive, SIGINT and SIGTERM set a stop request instead of killing the process; a batch checks it between
// steps, removes what the current case wrote, and stops. A second signal removes the temporary files being written
// at that moment and kills the process as usual. The previous handlers come back on destruction.
class StopOnSignals {
 public:
  StopOnSignals();
  ~StopOnSignals();
  StopOnSignals(const StopOnSignals&) = delete;
  StopOnSignals& operator=(const StopOnSignals&) = delete;
};

// The signal that asked to stop (SIGINT, SIGTERM), or 0. Async-signal-safe to set.
int stop_signal() noexcept;
void request_stop(int signal) noexcept;
void clear_stop_request() noexcept;

// ---- progress ---------------------------------------------------------------------------------------------------

struct BatchProgress {
  std::size_t done = 0;     // cases finished (ok, skipped or failed)
  std::size_t total = 0;    // cases in this run (after --shard)
  std::size_t failed = 0;
  std::size_t skipped = 0;  // already done by an earlier run
  double elapsed_s = 0.0;
  double eta_s = -1.0;      // from the cases actually processed (skipped ones cost ~nothing); < 0: unknown
  std::string current;      // case being started, "" at the end
};
using ProgressCallback = std::function<void(const BatchProgress&)>;

// "1h02m", "4m05s", "12s".
std::string format_duration(double seconds);
// One-line text bar: "[#######.....] 12/40  3 failed  4 skipped  ETA 4m05s  case_013".
std::string progress_line(const BatchProgress& p, int width = 24);

}  // namespace ctarr
