# Runs one libFuzzer binary for a bounded time over a fresh copy of its seed corpus, so the corpus
# in the source tree never changes. Crash inputs land in WORK_DIR.
#   cmake -DFUZZER=<binary> -DSEED_CORPUS=<dir> -DWORK_DIR=<dir> -DSECONDS=<n> -DRUNS=<n>
#         -P run_fuzzer.cmake
foreach(var FUZZER SEED_CORPUS WORK_DIR SECONDS RUNS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "run_fuzzer.cmake: -D${var}=... is required")
  endif()
endforeach()

file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR}/corpus)
file(GLOB seeds ${SEED_CORPUS}/*)
if(NOT seeds)
  message(FATAL_ERROR "run_fuzzer.cmake: no seed inputs in ${SEED_CORPUS}")
endif()
file(COPY ${seeds} DESTINATION ${WORK_DIR}/corpus)

execute_process(
  COMMAND ${FUZZER} -max_total_time=${SECONDS} -runs=${RUNS} -print_final_stats=1
          -artifact_prefix=${WORK_DIR}/ ${WORK_DIR}/corpus
  WORKING_DIRECTORY ${WORK_DIR}
  RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "${FUZZER} failed (${result}); the failing input is in ${WORK_DIR}")
endif()
