# Cross build for 32-bit ARMv7 Linux with NEON (e.g. Raspberry Pi OS 32-bit)
# with Debian's g++-arm-linux-gnueabihf. The NEON kernel files get -mfpu=neon
# from the top-level CMakeLists; generic code stays plain armv7-a + VFPv3-D16.
# ctest runs the test binary under qemu-user (package qemu-user-static).
#   cmake -S . -B build-armhf -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/arm-linux-gnueabihf.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR armv7)
set(CMAKE_C_COMPILER arm-linux-gnueabihf-gcc)
set(CMAKE_CXX_COMPILER arm-linux-gnueabihf-g++)
set(CMAKE_FIND_ROOT_PATH /usr/arm-linux-gnueabihf)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(CMAKE_CROSSCOMPILING_EMULATOR "qemu-arm-static;-L;/usr/arm-linux-gnueabihf")
# GCC notes that passing some structs changed ABI in GCC 7.1 (-Wpsabi); every
# object here is built by the same compiler, so the note is noise.
set(CMAKE_CXX_FLAGS_INIT "-Wno-psabi")
