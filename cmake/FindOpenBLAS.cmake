# FindOpenBLAS: the OpenBLAS library as the imported target OpenBLAS::OpenBLAS.
#
# twosed calls OpenBLAS's own API (openblas_set_num_threads) besides plain BLAS, so it links
# libopenblas by name. An imported target rather than the bare name "openblas" keeps the
# exported link interface of the static libraries relocatable: the installed twosedConfig.cmake
# runs this module again (find_dependency(OpenBLAS)) and finds the library where it is there.
find_library(OpenBLAS_LIBRARY NAMES openblas)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(OpenBLAS REQUIRED_VARS OpenBLAS_LIBRARY)
mark_as_advanced(OpenBLAS_LIBRARY)
if(OpenBLAS_FOUND AND NOT TARGET OpenBLAS::OpenBLAS)
  add_library(OpenBLAS::OpenBLAS UNKNOWN IMPORTED)
  set_target_properties(OpenBLAS::OpenBLAS PROPERTIES IMPORTED_LOCATION "${OpenBLAS_LIBRARY}")
endif()
