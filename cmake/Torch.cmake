# Defines the target rlhf::torch.
# CPU build (default): libtorch from .deps/libtorch (PyPI's wheel, see scripts/setup); we link
# libc10 + libtorch_cpu only, bypassing TorchConfig.cmake, which insists on finding CUDA.
# CUDA build (-DRLHF_CUDA=ON): TorchConfig.cmake of a CUDA torch (RLHF_TORCH_DIR, default: the
# torch of `python3`), which brings libtorch_cuda and the CUDA libraries.
set(RLHF_TORCH_DIR "" CACHE PATH "root of a torch install (holds include/, lib/, share/cmake)")
if(NOT RLHF_TORCH_DIR)
  if(RLHF_CUDA)
    execute_process(COMMAND python3 -c "import torch,os;print(os.path.dirname(torch.__file__))"
                    OUTPUT_VARIABLE RLHF_TORCH_DIR OUTPUT_STRIP_TRAILING_WHITESPACE)
  else()
    set(RLHF_TORCH_DIR "${PROJECT_SOURCE_DIR}/.deps/libtorch")
  endif()
endif()
if(NOT EXISTS "${RLHF_TORCH_DIR}/include/torch")
  message(FATAL_ERROR "libtorch not found in '${RLHF_TORCH_DIR}': run scripts/setup first")
endif()

add_library(rlhf_torch_iface INTERFACE)
add_library(rlhf::torch ALIAS rlhf_torch_iface)
# libtorch's include folder carries its own {fmt} (a newer one than Debian's); files that include
# torch headers see that one first, so they use it header-only rather than link Debian's libfmt.
target_compile_definitions(rlhf_torch_iface INTERFACE FMT_HEADER_ONLY=1)
# at::parallel_for is an inline OpenMP loop: without -fopenmp it silently runs on one thread.
# At run time the libgomp beside libtorch is the one loaded.
target_compile_options(rlhf_torch_iface INTERFACE -fopenmp)
target_link_options(rlhf_torch_iface INTERFACE -fopenmp)
if(RLHF_CUDA)
  list(APPEND CMAKE_PREFIX_PATH "${RLHF_TORCH_DIR}/share/cmake")
  # rlhf compiles no CUDA sources; naming the architectures skips TorchConfig's GPU probe
  # (a try_run that fails on machines without a GPU or with a newer nvcc than CMake knows).
  if(NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
    set(ENV{TORCH_CUDA_ARCH_LIST} "8.0;9.0")
  endif()
  set(CMAKE_CUDA_STANDARD 17)
  find_package(Torch REQUIRED)
  target_link_libraries(rlhf_torch_iface INTERFACE ${TORCH_LIBRARIES})
  target_compile_definitions(rlhf_torch_iface INTERFACE RLHF_CUDA=1)
else()
  foreach(lib c10 torch_cpu)
    add_library(rlhf_torch_${lib} SHARED IMPORTED)
    set_target_properties(rlhf_torch_${lib} PROPERTIES
      IMPORTED_LOCATION "${RLHF_TORCH_DIR}/lib/lib${lib}.so")
    target_link_libraries(rlhf_torch_iface INTERFACE rlhf_torch_${lib})
  endforeach()
  target_include_directories(rlhf_torch_iface SYSTEM INTERFACE
    "${RLHF_TORCH_DIR}/include" "${RLHF_TORCH_DIR}/include/torch/csrc/api/include")
  target_compile_definitions(rlhf_torch_iface INTERFACE _GLIBCXX_USE_CXX11_ABI=1)
  target_link_options(rlhf_torch_iface INTERFACE "LINKER:-rpath,${RLHF_TORCH_DIR}/lib")
endif()
