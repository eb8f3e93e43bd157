// SPARSERT_MULTIVERSION: compile a plain loop (no intrinsics) for AVX-512 and
// AVX2 as well as the baseline; the dynamic linker picks the variant once per
// process (GCC/Clang target_clones on x86-64 ELF). For data movement and
// elementwise loops that the compiler vectorises well by itself (strided
// gathers, pooling rows), where a kernel family of hand-written ISA files
// would add nothing. Variants compute the same values except where the
// compiler fuses a product and a sum into one FMA (GCC does so across
// statements for C++ in the AVX2 / AVX-512 variants: BatchNorm's x * a + b),
// a last-bit difference the hand-written ISA kernels have too; pure data
// movement, max / min and single operations (add, mul, div) are identical.
// LoadOptions::isa does not reach these loops.
#pragma once

#if defined(__x86_64__) && defined(__ELF__) && !defined(SPARSERT_NO_MULTIVERSION)
#define SPARSERT_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define SPARSERT_MULTIVERSION
#endif
