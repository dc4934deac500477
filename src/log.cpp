#include "ctarr/log.hpp"

#include <mutex>
#include <utility>

namespace ctarr {
namespace {
std::mutex g_mutex;
LogSink g_sink;
}  // namespace

void set_log_sink(LogSink sink) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_sink = std::move(sink);
}

void log(LogLevel level, const std::string& message) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_sink) g_sink(level, message);
}

}  // namespace ctarr
