// ctarr — logging façade. The library logs through these functions; the CLI decides where messages go
// (spdlog sinks on stderr). Without a sink set, messages are dropped.
#pragma once

#include <functional>
#include <string>

namespace ctarr {

enum class LogLevel { Debug, Info, Warn, Error };
using LogSink = std::function<void(LogLevel, const std::string&)>;

// Installs the sink every later message goes to (an empty function drops them).
void set_log_sink(LogSink sink);
// Sends one message to the sink, if any.
void log(LogLevel level, const std::string& message);
inline void log_debug(const std::string& m) { log(LogLevel::Debug, m); }
inline void log_info(const std::string& m) { log(LogLevel::Info, m); }
inline void log_warn(const std::string& m) { log(LogLevel::Warn, m); }

}  // namespace ctarr
