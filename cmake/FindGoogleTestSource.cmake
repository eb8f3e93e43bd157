# Finds GoogleTest for the C++ tests: Debian's source package (googletest,
# /usr/src/googletest) is preferred because it builds with any toolchain,
# including the ARM cross compilers; otherwise an installed GTest package.
# When neither is there the tests are skipped with a message, not failed.
set(SPARSERT_GTEST_FOUND OFF)
set(SPARSERT_GTEST_SOURCE_DIR "/usr/src/googletest" CACHE PATH "GoogleTest source tree")
if(EXISTS "${SPARSERT_GTEST_SOURCE_DIR}/CMakeLists.txt")
  set(INSTALL_GTEST OFF CACHE BOOL "" FORCE)
  set(BUILD_GMOCK OFF CACHE BOOL "" FORCE)
  # Debian's googletest asks for an old CMake policy level (< 3.10), which new
  # CMake releases warn about; read its CMakeLists with a 3.10 minimum instead.
  set(CMAKE_POLICY_VERSION_MINIMUM 3.10)
  add_subdirectory(${SPARSERT_GTEST_SOURCE_DIR} ${PROJECT_BINARY_DIR}/googletest EXCLUDE_FROM_ALL)
  unset(CMAKE_POLICY_VERSION_MINIMUM)
  if(TARGET gtest_main AND NOT TARGET GTest::gtest_main)
    add_library(GTest::gtest_main ALIAS gtest_main)
  endif()
  set(SPARSERT_GTEST_FOUND ON)
else()
  find_package(GTest QUIET)
  if(GTest_FOUND)
    set(SPARSERT_GTEST_FOUND ON)
  endif()
endif()
if(NOT SPARSERT_GTEST_FOUND)
  message(STATUS "sparsert: GoogleTest not found, C++ tests skipped (apt-get install googletest)")
endif()
