#include "ctarr/error.hpp"

namespace ctarr {

const char* to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::Usage: return "usage";
    case ErrorCode::UnreadableInput: return "unreadable input";
    case ErrorCode::UnsupportedGeometry: return "unsupported geometry";
    case ErrorCode::ModelFailure: return "model failure";
    case ErrorCode::FitFailed: return "fit failed";
    case ErrorCode::OutputNotWritable: return "output not writable";
    case ErrorCode::NoOverlap: return "region misses the scan";
    case ErrorCode::SomeCasesFailed: return "some cases failed";
    case ErrorCode::Interrupted: return "interrupted";
    case ErrorCode::Terminated: return "terminated";
    case ErrorCode::Internal: return "internal error";
  }
  return "unknown";
}

}  // namespace ctarr
