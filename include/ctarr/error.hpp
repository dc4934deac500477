// ctarr — error type. The library throws ctarr::Error and nothing else; its code is the CLI exit code.
#pragma once

#include <stdexcept>
#include <string>

namespace ctarr {

// Exit codes of the `ctarr` CLI (documented in docs/CLI.md). 0 is success.
enum class ErrorCode : int {
  Usage = 2,                // bad command line, unknown region name, malformed option value
  UnreadableInput = 3,      // missing file, not an image, corrupt data, no CT series in a folder
  UnsupportedGeometry = 4,  // 2D / 4D images, zero or NaN spacing, sheared grids that cannot be handled
  ModelFailure = 5,         // model or atlas file missing/corrupt, CUDA asked for but absent
  FitFailed = 6,            // too little anatomy to register, or the fit diverged
  OutputNotWritable = 7,    // output folder missing/not writable, disk full
  NoOverlap = 8,            // a region's boxes miss the scan entirely: nothing written for it
  SomeCasesFailed = 9,      // a batch of several cases finished, but some failed (see its summary)
  Interrupted = 130,        // SIGINT (128 + 2): the batch stopped between cases; a rerun resumes
  Terminated = 143,         // SIGTERM (128 + 15): as Interrupted
  Internal = 70,            // a bug: please report
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

// The code's name, e.g. "usage", "fit failed".
const char* to_string(ErrorCode code) noexcept;

}  // namespace ctarr
