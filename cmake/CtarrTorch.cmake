# Finds LibTorch (Debian's CPU build by default, or a CUDA build given with -DTorch_DIR=...) and wraps it as the
# imported target ctarr::torch, so only the targets that need it see torch's flags.
find_package(Torch REQUIRED CONFIG)
add_library(ctarr_torch INTERFACE)
target_link_libraries(ctarr_torch INTERFACE ${TORCH_LIBRARIES})
target_include_directories(ctarr_torch SYSTEM INTERFACE ${TORCH_INCLUDE_DIRS})
target_compile_options(ctarr_torch INTERFACE ${TORCH_CXX_FLAGS})
add_library(ctarr::torch ALIAS ctarr_torch)
set_target_properties(ctarr_torch PROPERTIES EXPORT_NAME torch)  # installed as ctarr::torch (ctarrTargets.cmake)
