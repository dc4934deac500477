// ctarr — command line. Parses arguments and calls the library; the only try/catch of the program is here.
#include "commands.hpp"

#include "ctarr/error.hpp"
#include "ctarr/io.hpp"
#include "ctarr/log.hpp"
#include "ctarr/version.hpp"

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <unistd.h>

namespace {

void setup_logging(int verbosity) {
  auto logger = spdlog::stderr_color_mt("ctarr");
  logger->set_pattern("%^[%l]%$ %v");
  spdlog::set_default_logger(logger);
  spdlog::set_level(verbosity < 0 ? spdlog::level::warn : verbosity > 0 ? spdlog::level::debug : spdlog::level::info);
  // On a terminal a progress bar may hold the last line: clear it before each message.
  const bool tty = ::isatty(STDERR_FILENO) != 0;
  ctarr::set_log_sink([tty](ctarr::LogLevel level, const std::string& message) {
    const spdlog::level::level_enum l = level == ctarr::LogLevel::Debug  ? spdlog::level::debug
                                        : level == ctarr::LogLevel::Info ? spdlog::level::info
                                        : level == ctarr::LogLevel::Warn ? spdlog::level::warn
                                                                         : spdlog::level::err;
    if (!spdlog::default_logger()->should_log(l)) return;
    if (tty) std::fputs("\r\033[K", stderr);
    spdlog::log(l, "{}", message);
  });
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ctarr " + std::string(ctarr::kVersion) +
               ": find and crop anatomical regions in CT scans (CTARR, Buddenkotte et al., MELBA 2024).\n"
               "Exit codes: 0 ok, 2 usage, 3 unreadable input, 4 unsupported geometry, 5 model failure,\n"
               "6 fit failed, 7 output not writable, 8 a region missed the scan, 9 some cases of a batch failed,\n"
               "70 internal error, 130/143 stopped by SIGINT/SIGTERM (a rerun resumes)."};
  app.set_version_flag("--version", std::string("ctarr ") + ctarr::kVersion);
  app.require_subcommand(1);
  int verbose = 0, quiet = 0;
  app.add_flag("-v,--verbose", verbose, "More log output (debug)");
  app.add_flag("-q,--quiet", quiet, "Only warnings and errors");
  app.parse_complete_callback([&] {
    setup_logging(quiet > 0 ? -1 : verbose);
    std::string command_line;
    for (int n = 0; n < argc; ++n) command_line += (n ? " " : "") + std::string(argv[n]);
    spdlog::debug("ctarr {} ({}); {}", ctarr::kVersion, ctarr::image_io_versions(), command_line);
  });

  int exit_code = EXIT_SUCCESS;
  ctarr::cli::register_commands(app, exit_code);
  try {
    app.parse(argc, argv);  // subcommand callbacks run in here
    return exit_code;
  } catch (const CLI::ParseError& e) {  // --help/--version give 0; misuse gives Usage
    return app.exit(e) == 0 ? 0 : static_cast<int>(ctarr::ErrorCode::Usage);
  } catch (const ctarr::Error& e) {
    spdlog::error("{}", e.what());
    return static_cast<int>(e.code());
  } catch (const std::exception& e) {  // a bug: say so, never exit 0
    spdlog::critical("internal error: {} (please report)", e.what());
    return static_cast<int>(ctarr::ErrorCode::Internal);
  }
}
