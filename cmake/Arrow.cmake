# Defines the target rlhf::arrow: Apache Arrow and Parquet C++ from .deps/arrow (the pyarrow
# wheel's headers and libraries, laid out by scripts/setup), for Parquet datasets and the
# s3:// and gs:// filesystems. The libraries are linked by path with an rpath to their
# folder, as libtorch's are.
set(RLHF_ARROW_DIR "${PROJECT_SOURCE_DIR}/.deps/arrow" CACHE PATH "root of Arrow C++ (holds include/, lib/)")
if(NOT EXISTS "${RLHF_ARROW_DIR}/include/parquet/arrow/reader.h" OR NOT EXISTS "${RLHF_ARROW_DIR}/lib/libparquet.so")
  message(FATAL_ERROR "Arrow C++ not found in '${RLHF_ARROW_DIR}': run scripts/setup first")
endif()
add_library(rlhf_arrow_iface INTERFACE)
add_library(rlhf::arrow ALIAS rlhf_arrow_iface)
# SYSTEM: Arrow's headers are not held to this project's warnings.
target_include_directories(rlhf_arrow_iface SYSTEM INTERFACE "${RLHF_ARROW_DIR}/include")
target_link_libraries(rlhf_arrow_iface INTERFACE "${RLHF_ARROW_DIR}/lib/libparquet.so" "${RLHF_ARROW_DIR}/lib/libarrow.so"
                      "${RLHF_ARROW_DIR}/lib/libarrow_s3.so")
target_link_options(rlhf_arrow_iface INTERFACE "LINKER:-rpath,${RLHF_ARROW_DIR}/lib")
