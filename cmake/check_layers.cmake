cmake_minimum_required(VERSION 3.25)
# The layering of attn-bench's sources (docs/architecture.md, "Layers"), checked on every build:
# a file may include headers of its own layer and of the layers listed for it, nothing else.
# Above all, variants compose ops and never reach a backend's kernels: a variant that needs new
# work asks for an op (docs/contributing.md). Run as `cmake -DSRC=<source dir> -P <this file>`;
# a violation fails the build with the file, the line and the rule.

# layer -> the layers its files may include (besides its own)
set(allowed_core "")
set(allowed_reference "core")
set(allowed_workloads "core")
set(allowed_variants "core;reference")
set(allowed_cpu "core")                      # kernels/cpu: the CPU backend's private kernels
set(allowed_cuda "core;cpu")                 # kernels/cuda
set(allowed_backends "core;cpu;cuda")        # only backends reach kernels
set(allowed_execution "core;variants;backends;workloads")
set(allowed_analysis "core;variants")
set(allowed_metrics "core;reference;variants;workloads;execution;analysis")
set(allowed_spec "core;variants;workloads;metrics")
set(allowed_figures "core;variants;analysis")
set(allowed_runner "core;reference;variants;backends;workloads;execution;analysis;metrics;spec;figures")
set(allowed_cli "core;reference;variants;backends;workloads;execution;analysis;metrics;spec;figures;runner")
set(layers core reference workloads variants cpu cuda backends execution analysis metrics spec
    figures runner cli)

file(GLOB_RECURSE files RELATIVE "${SRC}"
     "${SRC}/src/*.hpp" "${SRC}/src/*.cpp" "${SRC}/src/*.def" "${SRC}/src/*.in"
     "${SRC}/kernels/*.hpp" "${SRC}/kernels/*.cpp" "${SRC}/kernels/*.cuh" "${SRC}/kernels/*.cu")
set(violations "")
foreach(f IN LISTS files)
  if(f MATCHES "^src/([a-z_]+)/")
    set(layer "${CMAKE_MATCH_1}")
  elseif(f MATCHES "^kernels/([a-z_]+)/")
    set(layer "${CMAKE_MATCH_1}")
  else()
    continue()
  endif()
  # The CUDA kernels' stand-alone tuning driver is a tool above the backend, not a kernel.
  if(f STREQUAL "kernels/cuda/bench_main.cpp")
    continue()
  endif()
  if(NOT DEFINED allowed_${layer})
    list(APPEND violations "${f}: directory '${layer}' has no layer; add it to cmake/check_layers.cmake")
    continue()
  endif()
  set(allowed_here "${allowed_${layer}}")
  file(STRINGS "${SRC}/${f}" lines REGEX "^[ \t]*#[ \t]*include[ \t]*\"")
  foreach(line IN LISTS lines)
    if(line MATCHES "#[ \t]*include[ \t]*\"([a-z_]+)/")
      set(target "${CMAKE_MATCH_1}")
      if(target STREQUAL layer)
        continue()
      endif()
      list(FIND layers "${target}" known)
      if(known EQUAL -1)
        continue()  # a header beside the file or a third-party path
      endif()
      list(FIND allowed_here "${target}" ok)
      if(ok EQUAL -1)
        string(STRIP "${line}" line)
        string(REPLACE ";" ", " may "${allowed_${layer}}")
        list(APPEND violations "${f}: '${line}': layer '${layer}' may include only: ${may}")
      endif()
    endif()
  endforeach()
endforeach()
if(violations)
  list(LENGTH violations n)
  string(REPLACE ";" "\n  " text "${violations}")
  message(FATAL_ERROR "attn-bench layering: ${n} include(s) cross a layer boundary "
                      "(docs/architecture.md, \"Layers\"):\n  ${text}")
endif()
