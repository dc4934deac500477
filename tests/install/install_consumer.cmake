# ctest install.consumer (label e2e): install the build tree into a temporary prefix, build examples/consumer
# against it with find_package(ctarr), run it, and run the installed CLI with CTARR_DATA_DIR unset; with PYTHON_DIR
# (the Python package's install folder, relative to the prefix), import the installed package and check that it
# reads the installed share folder.
#   cmake -DBUILD_DIR=... -DSOURCE_DIR=... -DWORK_DIR=... -P install_consumer.cmake
foreach(v BUILD_DIR SOURCE_DIR WORK_DIR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "install_consumer.cmake: -D${v}=... missing")
  endif()
endforeach()

function(run)
  cmake_parse_arguments(R "" "OUTPUT" "COMMAND" ${ARGN})
  execute_process(COMMAND ${CMAKE_COMMAND} -E env --unset=CTARR_DATA_DIR ${R_COMMAND}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    string(REPLACE ";" " " line "${R_COMMAND}")
    message(FATAL_ERROR "failed (exit ${rc}): ${line}\n${out}")
  endif()
  if(R_OUTPUT)
    set(${R_OUTPUT} "${out}" PARENT_SCOPE)
  endif()
endfunction()

set(prefix ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR}/out)

# 1. install
run(COMMAND ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
include(GNUInstallDirs)
foreach(f include/ctarr/pipeline.hpp include/ctarr/version.hpp ${CMAKE_INSTALL_LIBDIR}/libctarr.a bin/ctarr
          share/ctarr/atlas/atlas.nii.gz share/ctarr/models/ctarr-unet.safetensors share/ctarr/regions/liver.json
          ${CMAKE_INSTALL_LIBDIR}/cmake/ctarr/ctarrConfig.cmake ${CMAKE_INSTALL_LIBDIR}/cmake/ctarr/ctarrTargets.cmake)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "not installed: ${prefix}/${f}")
  endif()
endforeach()
if(EXISTS ${prefix}/include/ctarr/version.hpp.in)
  message(FATAL_ERROR "version.hpp.in was installed")
endif()

# 2. the installed CLI reads its own share folder: a region that exists only there must be listed
file(READ ${prefix}/share/ctarr/regions/liver.json liver)
string(REPLACE "\"name\": \"liver\"" "\"name\": \"installed_only\"" marker "${liver}")
file(WRITE ${prefix}/share/ctarr/regions/installed_only.json "${marker}")
run(COMMAND ${prefix}/bin/ctarr regions OUTPUT listed)
if(NOT listed MATCHES "installed_only")
  message(FATAL_ERROR "installed ctarr did not read ${prefix}/share/ctarr/regions:\n${listed}")
endif()

# 3. a separate project finds the package, builds and runs
set(launcher)
find_program(CCACHE ccache)
if(CCACHE)
  set(launcher -DCMAKE_CXX_COMPILER_LAUNCHER=${CCACHE})
endif()
run(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR}/examples/consumer -B ${WORK_DIR}/consumer -DCMAKE_BUILD_TYPE=Release
            -DCMAKE_PREFIX_PATH=${prefix} ${launcher})
run(COMMAND ${CMAKE_COMMAND} --build ${WORK_DIR}/consumer -j2)
run(COMMAND ${WORK_DIR}/consumer/ctarr_consumer ${WORK_DIR}/out OUTPUT said)
message(STATUS "consumer: ${said}")
if(NOT said MATCHES "data ${prefix}/share/ctarr" OR NOT said MATCHES "liver box")
  message(FATAL_ERROR "consumer did not use the installed data or found no liver box:\n${said}")
endif()

# 4. the installed CLI crops the consumer's synthetic scan with --seg, using the installed atlas and regions
run(COMMAND ${prefix}/bin/ctarr crop --region installed_only --seg ${WORK_DIR}/out/seg.nii.gz
            ${WORK_DIR}/out/ct.nii.gz -o ${WORK_DIR}/out/crops OUTPUT log)
if(NOT EXISTS ${WORK_DIR}/out/crops/ct_installed_only.nii.gz OR NOT EXISTS ${WORK_DIR}/out/crops/ct_installed_only.json)
  message(FATAL_ERROR "installed ctarr crop wrote no crop:\n${log}")
endif()
# 5. the installed Python package (when built): importable from the prefix, and it reads the installed share folder
if(DEFINED PYTHON_DIR AND NOT PYTHON_DIR STREQUAL "")
  file(WRITE ${WORK_DIR}/import_ctarr.py "import ctarr\np = ctarr.Pipeline(device='cpu')\nprint(ctarr.__file__)\nprint(p.regions_dir)\n")
  run(COMMAND ${CMAKE_COMMAND} -E env PYTHONPATH=${prefix}/${PYTHON_DIR}/.. /usr/bin/python3 ${WORK_DIR}/import_ctarr.py
      OUTPUT py)
  if(NOT py MATCHES "${prefix}/${PYTHON_DIR}/__init__.py" OR NOT py MATCHES "${prefix}/share/ctarr/regions")
    message(FATAL_ERROR "the installed Python package is not the one imported, or it does not read ${prefix}/share/ctarr:\n${py}")
  endif()
  message(STATUS "python: ${py}")
endif()
file(REMOVE_RECURSE ${WORK_DIR})
