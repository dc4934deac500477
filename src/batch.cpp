// ctarr — shards, stop requests, progress text, reading ahead.
#include "ctarr/batch.hpp"

#include "ctarr/error.hpp"
#include "temp_files.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <csignal>
#include <cstdio>

namespace ctarr {

Shard parse_shard(const std::string& text) {
  const auto slash = text.find('/');
  auto bad = [&](const std::string& why) {
    return Error(ErrorCode::Usage, "--shard " + text + ": " + why +
                                       " (expected I/N with 0 <= I < N, 0-based: e.g. --shard "
                                       "$SLURM_ARRAY_TASK_ID/4 with sbatch --array=0-3)");
  };
  if (slash == std::string::npos) throw bad("no '/'");
  auto number = [&](const std::string& s) {
    if (s.empty() || s.size() > 9 || s.find_first_not_of("0123456789") != std::string::npos)
      throw bad("'" + s + "' is not a non-negative integer");
    return std::stoi(s);
  };
  Shard s;
  s.index = number(text.substr(0, slash));
  s.count = number(text.substr(slash + 1));
  if (s.count < 1) throw bad("N must be at least 1");
  if (s.index >= s.count) throw bad("I must be at most N-1 = " + std::to_string(s.count - 1) + "; shards are 0-based");
  return s;
}

// ---- stop requests ----------------------------------------------------------------------------------------------

namespace {

std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs a lock-free atomic");

struct sigaction g_old_int, g_old_term;

extern "C" void on_stop_signal(int sig) {
  if (g_stop_signal.exchange(sig) == 0) return;  // the first: stop between steps
  // A second signal ends the process the usual way, without leaving a temporary file behind.
  remove_temp_files_now();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

}  // namespace

StopOnSignals::StopOnSignals() {
  clear_stop_request();
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // reads and writes in progress go on; the batch checks between steps
  sigaction(SIGINT, &sa, &g_old_int);
  sigaction(SIGTERM, &sa, &g_old_term);
}

StopOnSignals::~StopOnSignals() {
  sigaction(SIGINT, &g_old_int, nullptr);
  sigaction(SIGTERM, &g_old_term, nullptr);
}

int stop_signal() noexcept { return g_stop_signal.load(); }
void request_stop(int signal) noexcept { g_stop_signal.store(signal); }
void clear_stop_request() noexcept { g_stop_signal.store(0); }

// ---- progress ---------------------------------------------------------------------------------------------------

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const long s = std::lround(seconds);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else if (s >= 60)
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

std::string progress_line(const BatchProgress& p, int width) {
  const double f = p.total ? static_cast<double>(p.done) / static_cast<double>(p.total) : 1.0;
  const int filled = static_cast<int>(std::floor(f * width));
  std::string line = "[" + std::string(static_cast<std::size_t>(filled), '#') +
                     std::string(static_cast<std::size_t>(width - filled), '.') + "] " + std::to_string(p.done) + "/" +
                     std::to_string(p.total);
  if (p.failed) line += "  " + std::to_string(p.failed) + " failed";
  if (p.skipped) line += "  " + std::to_string(p.skipped) + " skipped";
  line += "  " + format_duration(p.elapsed_s);
  if (p.done < p.total) line += "  ETA " + format_duration(p.eta_s);
  if (!p.current.empty()) line += "  " + p.current;
  return line;
}

void throw_if_stop_requested() {
  if (const int sig = stop_signal())
    throw Error(sig == SIGTERM ? ErrorCode::Terminated : ErrorCode::Interrupted,
                std::string("stopped by ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT"));
}

void ReadAhead::start_next() {
  if (next_.valid() || next_index_ >= paths_.size()) return;
  const std::string path = paths_[next_index_];
  path_ = path;
  next_ = std::async(std::launch::async, [path] { return read_scan(path); });
}

Scan ReadAhead::take(const std::string& path) {
  const auto it = std::find(paths_.begin() + static_cast<std::ptrdiff_t>(std::min(next_index_, paths_.size())),
                            paths_.end(), path);
  if (it != paths_.end()) next_index_ = static_cast<std::size_t>(it - paths_.begin()) + 1;
  if (next_.valid() && path_ == path) {
    std::future<Scan> f = std::move(next_);
    return f.get();
  }
  drop();
  return read_scan(path);
}

void ReadAhead::drop() noexcept {
  if (!next_.valid()) return;
  try {
    next_.get();
  } catch (...) {
  }
}

}  // namespace ctarr
