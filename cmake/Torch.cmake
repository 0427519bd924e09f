# Defines the target rlhf::torch: libtorch from .deps/libtorch (PyPI's wheel, see scripts/setup),
# imported directly rather than through TorchConfig.cmake, which insists on a CUDA toolkit
# (nvcc) even where nothing is compiled for the GPU.
# CPU build (default): links libc10 + libtorch_cpu only.
# CUDA build (-DRLHF_CUDA=ON): links libtorch_cuda + libc10_cuda too, and the CUDA libraries
# of torch's pins that scripts/setup --cuda lays out in .deps/cuda (RLHF_CUDA_DIR); headers
# come from the CUDA toolkit installed on the machine when its major version is the same
# (RLHF_CUDA_TOOLKIT, default $CUDA_HOME or /usr/local/cuda), else from .deps/cuda/include.
# rlhf compiles no .cu file, so neither needs nvcc.
set(RLHF_TORCH_DIR "${PROJECT_SOURCE_DIR}/.deps/libtorch" CACHE PATH "root of libtorch (holds include/, lib/)")
if(NOT EXISTS "${RLHF_TORCH_DIR}/include/torch")
  message(FATAL_ERROR "libtorch not found in '${RLHF_TORCH_DIR}': run scripts/setup first")
endif()

add_library(rlhf_torch_iface INTERFACE)
add_library(rlhf::torch ALIAS rlhf_torch_iface)
# libtorch's include folder carries its own {fmt} (a newer one than Debian's); files that include
# torch headers see that one first, so they use it header-only rather than link Debian's libfmt.
target_compile_definitions(rlhf_torch_iface INTERFACE FMT_HEADER_ONLY=1 _GLIBCXX_USE_CXX11_ABI=1)
# at::parallel_for is an inline OpenMP loop: without -fopenmp it silently runs on one thread.
# At run time the libgomp beside libtorch is the one loaded.
target_compile_options(rlhf_torch_iface INTERFACE -fopenmp)
target_link_options(rlhf_torch_iface INTERFACE -fopenmp)
target_include_directories(rlhf_torch_iface SYSTEM INTERFACE
  "${RLHF_TORCH_DIR}/include" "${RLHF_TORCH_DIR}/include/torch/csrc/api/include")

set(RLHF_TORCH_LIBS c10 torch_cpu)
if(RLHF_CUDA)
  set(RLHF_CUDA_DIR "${PROJECT_SOURCE_DIR}/.deps/cuda" CACHE PATH
      "CUDA libraries and headers of torch's pins (holds include/, lib/; scripts/setup --cuda)")
  if(NOT EXISTS "${RLHF_CUDA_DIR}/lib/libcudart.so.13")
    message(FATAL_ERROR "CUDA libraries not found in '${RLHF_CUDA_DIR}': run scripts/setup --cuda first")
  endif()
  set(RLHF_CUDA_TOOLKIT "" CACHE PATH "an installed CUDA toolkit whose headers to use (default: $CUDA_HOME or /usr/local/cuda)")
  set(toolkit "${RLHF_CUDA_TOOLKIT}")
  if(NOT toolkit)
    set(toolkit "$ENV{CUDA_HOME}")
  endif()
  if(NOT toolkit)
    set(toolkit /usr/local/cuda)
  endif()
  set(cuda_includes "${RLHF_CUDA_DIR}/include")
  if(EXISTS "${toolkit}/include/cuda_runtime_api.h")
    file(STRINGS "${toolkit}/include/cuda_runtime_api.h" v REGEX "^#define CUDART_VERSION +[0-9]+")
    string(REGEX REPLACE ".* ([0-9]+)$" "\\1" v "${v}")
    if(v GREATER_EQUAL 13000 AND v LESS 14000)
      set(cuda_includes "${toolkit}/include" "${RLHF_CUDA_DIR}/include")  # what it lacks (nccl.h...) from the wheels
      message(STATUS "CUDA headers: ${toolkit}/include (CUDART_VERSION ${v}), then ${RLHF_CUDA_DIR}/include")
    else()
      message(STATUS "CUDA headers: ${RLHF_CUDA_DIR}/include (the toolkit in ${toolkit} is CUDART_VERSION ${v}, not 13.x)")
    endif()
  else()
    message(STATUS "CUDA headers: ${RLHF_CUDA_DIR}/include (no CUDA toolkit in ${toolkit})")
  endif()
  target_include_directories(rlhf_torch_iface SYSTEM INTERFACE ${cuda_includes})
  target_compile_definitions(rlhf_torch_iface INTERFACE RLHF_CUDA=1)
  list(APPEND RLHF_TORCH_LIBS c10_cuda torch_cuda)
  # Every CUDA library libtorch_cuda (and the linalg and jiterator parts it opens later) needs,
  # linked by the program itself: loaded first (the loader goes breadth-first), from .deps/cuda
  # (the program's run path), they are the ones libtorch uses, not the CPU build's stand-ins
  # for libcudart and libcupti that sit beside libtorch_cpu, nor another CUDA on the machine.
  foreach(so cudart.so.13 cupti.so.13 cublas.so.13 cublasLt.so.13 cusparse.so.12 cufft.so.12
             cufile.so.0 cusparseLt.so.0 nccl.so.2 curand.so.10 cudnn.so.9 cusolver.so.12
             nvJitLink.so.13 nvrtc.so.13 nvshmem_host.so.3)
    if(NOT EXISTS "${RLHF_CUDA_DIR}/lib/lib${so}")
      message(FATAL_ERROR "lib${so} not found in '${RLHF_CUDA_DIR}/lib': run scripts/setup --cuda")
    endif()
    string(REGEX REPLACE "\\.so.*" "" name "${so}")
    add_library(rlhf_cuda_${name} SHARED IMPORTED)
    set_target_properties(rlhf_cuda_${name} PROPERTIES IMPORTED_LOCATION "${RLHF_CUDA_DIR}/lib/lib${so}")
    target_link_libraries(rlhf_torch_iface INTERFACE rlhf_cuda_${name})
  endforeach()
  # libtorch_cuda registers its kernels from static constructors: keep it even though the
  # program calls little of it by name.
  target_link_options(rlhf_torch_iface INTERFACE "LINKER:--no-as-needed"
                      "LINKER:-rpath,${RLHF_CUDA_DIR}/lib" "LINKER:-rpath-link,${RLHF_CUDA_DIR}/lib")
endif()
foreach(lib ${RLHF_TORCH_LIBS})
  add_library(rlhf_torch_${lib} SHARED IMPORTED)
  set_target_properties(rlhf_torch_${lib} PROPERTIES
    IMPORTED_LOCATION "${RLHF_TORCH_DIR}/lib/lib${lib}.so")
  target_link_libraries(rlhf_torch_iface INTERFACE rlhf_torch_${lib})
endforeach()
target_link_options(rlhf_torch_iface INTERFACE "LINKER:-rpath,${RLHF_TORCH_DIR}/lib")
