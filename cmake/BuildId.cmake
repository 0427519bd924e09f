# Writes the program's identity (src/rlhf/util/build_id.h) into OUTPUT, a one-function .cpp.
# Run as a script at every build (the rlhf_build_id target in CMakeLists.txt), it rewrites
# OUTPUT only when the identity changed, so a build recompiles that one file and nothing else.
#
#   in a git checkout:  VERSION+g<commit, 12 digits>
#                       VERSION+g<commit>.dirty-<12 digits>   the sources differ from the commit:
#                                                             a hash of the difference
#   without git:        VERSION+src-<12 digits>               a hash of the sources
#
# The sources are what the program is built from: src/, apps/, cmake/ and CMakeLists.txt.
# Inputs: -DSOURCE_DIR= -DOUTPUT= -DVERSION=
cmake_minimum_required(VERSION 3.25)
set(paths src apps cmake CMakeLists.txt)
set(id "")

find_package(Git QUIET)
if(GIT_FOUND AND EXISTS "${SOURCE_DIR}/.git")
  execute_process(COMMAND "${GIT_EXECUTABLE}" rev-parse HEAD WORKING_DIRECTORY "${SOURCE_DIR}"
                  OUTPUT_VARIABLE commit RESULT_VARIABLE rc OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  if(rc EQUAL 0 AND commit MATCHES "^[0-9a-f]+$")
    string(SUBSTRING "${commit}" 0 12 short)
    # Tracked changes, then every untracked file that is not ignored (by name and content).
    execute_process(COMMAND "${GIT_EXECUTABLE}" --no-optional-locks diff HEAD --binary -- ${paths}
                    WORKING_DIRECTORY "${SOURCE_DIR}" OUTPUT_VARIABLE diff RESULT_VARIABLE rc_diff ERROR_QUIET)
    execute_process(COMMAND "${GIT_EXECUTABLE}" --no-optional-locks ls-files --others --exclude-standard -- ${paths}
                    WORKING_DIRECTORY "${SOURCE_DIR}" OUTPUT_VARIABLE untracked RESULT_VARIABLE rc_ls ERROR_QUIET)
    if(rc_diff EQUAL 0 AND rc_ls EQUAL 0)
      string(REPLACE "\n" ";" untracked "${untracked}")
      list(SORT untracked)
      foreach(f IN LISTS untracked)
        if(f STREQUAL "")
          continue()
        endif()
        file(SHA256 "${SOURCE_DIR}/${f}" h)
        string(APPEND diff "untracked ${f} ${h}\n")
      endforeach()
      if(diff STREQUAL "")
        set(id "${VERSION}+g${short}")
      else()
        string(SHA256 h "${diff}")
        string(SUBSTRING "${h}" 0 12 h)
        set(id "${VERSION}+g${short}.dirty-${h}")
      endif()
    endif()
  endif()
endif()

if(id STREQUAL "")
  file(GLOB_RECURSE files RELATIVE "${SOURCE_DIR}" "${SOURCE_DIR}/src/*" "${SOURCE_DIR}/apps/*" "${SOURCE_DIR}/cmake/*")
  list(APPEND files CMakeLists.txt)
  list(SORT files)
  set(all "")
  foreach(f IN LISTS files)
    file(SHA256 "${SOURCE_DIR}/${f}" h)
    string(APPEND all "${f} ${h}\n")
  endforeach()
  string(SHA256 h "${all}")
  string(SUBSTRING "${h}" 0 12 h)
  set(id "${VERSION}+src-${h}")
endif()

file(CONFIGURE OUTPUT "${OUTPUT}" CONTENT "// Written by cmake/BuildId.cmake at every build; see src/rlhf/util/build_id.h.
#include \"rlhf/util/build_id.h\"

const char* rlhf::build_id() { return \"${id}\"; }
" @ONLY)
