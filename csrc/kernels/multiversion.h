// SPARSERT_MULTIVERSION: compile a plain loop (no intrinsics) for AVX-512 and
// AVX2 as well as the baseline; the dynamic linker picks the variant once per
// process (GCC/Clang target_clones on x86-64 ELF). For data movement and
// elementwise loops that the compiler vectorises well by itself (strided
// gathers, pooling rows), where a kernel family of hand-written ISA files
// would add nothing. Every variant computes the same values: the loops
// neither reassociate nor contract floating-point operations (no -ffast-math,
// and no a * b + c in them for a compiler to fuse), so LoadOptions::isa need
// not reach them.
#pragma once

#if defined(__x86_64__) && defined(__ELF__) && !defined(SPARSERT_NO_MULTIVERSION)
#define SPARSERT_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SPARSERT_MULTIVERSION
#endif
