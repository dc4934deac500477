// ctarr — the DICOM structure check that runs before GDCM sees a file. Debian's GDCM 3.0 is built with
// assertions and aborts the process on some broken files, and it allocates whatever length an element declares;
// every file goes through here first (dicom_guard.cpp says what is walked). Plain C++: no ITK or GDCM. Only element
// headers are read, never the values.
#pragma once

#include <string>

namespace ctarr::detail::bridge {

// What is wrong with a file that carries the DICM magic at byte 128 (an element runs past the end of the file, or
// the file ends after its meta header), or "" when nothing is. "" also for files without the magic: see below.
std::string dicom_structure_problem(const std::string& path);

// For a file without the DICM magic (GDCM reads those too: preamble-less Part 10 files, ACR-NEMA): true when its
// elements walk exactly to the end of the file under a transfer syntax GDCM would use (the one a file meta group at
// offset 0 names; else explicit VR little endian, implicit VR little endian or explicit VR big endian). False: it
// is not DICOM that GDCM may be given.
bool walks_as_dicom_without_preamble(const std::string& path);

// True when the file may be handed to GDCM: a DICM file with no structure problem, or a file without the magic that
// walks as above.
bool gdcm_may_read(const std::string& path);

}  // namespace ctarr::detail::bridge
