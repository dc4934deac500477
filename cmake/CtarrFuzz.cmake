# CTARR_FUZZ: libFuzzer targets in tests/fuzz, built with ASan+UBSan; clang only. Never run in CI: scripts/fuzz.sh
# builds them in build-fuzz/ and runs each for a bounded time.
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "CTARR_FUZZ needs clang (libFuzzer): configure with -DCMAKE_C_COMPILER=clang "
                      "-DCMAKE_CXX_COMPILER=clang++ (apt-get install clang), or run scripts/fuzz.sh")
endif()

# Debian's ITK 5.2 stops clang in itk_compiler_detection.h ("Unsupported compiler": only its GCC branch is
# installed). Pre-include a copy that sends clang down the GCC branch, and have clang report a GCC version that
# branch accepts (>= 4.4; not >= 11, whose glibc attributes clang 14 does not parse). Only the files that include ITK need it.
find_file(CTARR_ITK_COMPILER_DETECTION itk_compiler_detection.h PATHS ${ITK_INCLUDE_DIRS} NO_DEFAULT_PATH REQUIRED)
file(READ ${CTARR_ITK_COMPILER_DETECTION} _itk_detection)
string(REPLACE "#  if ITK_COMPILER_IS_GNU\n" "#  if ITK_COMPILER_IS_GNU || ITK_COMPILER_IS_Clang\n" _itk_detection "${_itk_detection}")
set(CTARR_ITK_CLANG_HEADER ${PROJECT_BINARY_DIR}/itk_clang/itk_compiler_detection.h)
file(WRITE ${CTARR_ITK_CLANG_HEADER} "${_itk_detection}")
set(_ctarr_itk_sources itk_support image_files dicom_header dicom_series)
list(TRANSFORM _ctarr_itk_sources PREPEND ${PROJECT_SOURCE_DIR}/src/detail/)
list(TRANSFORM _ctarr_itk_sources APPEND .cpp)
set_source_files_properties(${_ctarr_itk_sources} DIRECTORY ${PROJECT_SOURCE_DIR}/src
  PROPERTIES COMPILE_OPTIONS "-fgnuc-version=5.1;-include;${CTARR_ITK_CLANG_HEADER}")
