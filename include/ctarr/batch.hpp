// ctarr — running many cases in one process: shards for job arrays, stop requests (SIGINT/SIGTERM), progress,
// the next scan read ahead.
#pragma once

#include "ctarr/io.hpp"

#include <cstddef>
#include <functional>
#include <future>
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
// Throws Interrupted (SIGINT) or Terminated (SIGTERM) when a stop was requested: a batch calls it between steps.
void throw_if_stop_requested();

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

// ---- reading ahead ----------------------------------------------------------------------------------------------

// Reads the next case's scan on another thread while the program does something else: the first while the atlas
// loads, each further one while the case before is fitted, cropped and written (after its network stage, so that
// two scans are never held beside the network's working memory). Reading is gunzip and conversion on one core. A
// read error surfaces when the scan is taken, in that case's own error handling.
class ReadAhead {
 public:
  explicit ReadAhead(std::vector<std::string> paths) : paths_(std::move(paths)) {}  // the scans the run takes, in order
  ReadAhead(const ReadAhead&) = delete;
  ReadAhead& operator=(const ReadAhead&) = delete;
  ~ReadAhead() { drop(); }

  // Starts reading the scan after the last one taken (the first one before any), unless one is being read.
  void start_next();
  // The scan at `path`: the one read ahead when it is that file, else read now.
  Scan take(const std::string& path);

 private:
  void drop() noexcept;  // waits for the thread; a scan nobody takes, or its error, is dropped

  std::vector<std::string> paths_;
  std::size_t next_index_ = 0;
  std::string path_;
  std::future<Scan> next_;
};

}  // namespace ctarr
