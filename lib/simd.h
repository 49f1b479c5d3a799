/* Which vector builds of the hand-written kernels (direct.c, narrow.c)
 * this compiler can make. MULTIVERSION builds a function for AVX2+FMA and
 * for baseline x86-64, the dynamic loader choosing (an ifunc); the
 * AVX-512 builds are separate functions, chosen at each call by
 * ae_have_avx512. Other compilers and targets get the baseline only. */
#ifndef AE_SIMD_H
#define AE_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define MULTIVERSION __attribute__ ((target_clones ("arch=x86-64-v3", "default")))
#define HAVE_AVX512_KERNEL 1
#define AVX512_KERNEL __attribute__ ((target ("arch=x86-64-v4")))
#endif
#endif
#ifndef MULTIVERSION
#define MULTIVERSION
#endif

static inline int
ae_have_avx512 (void)
{
#ifdef HAVE_AVX512_KERNEL
  return __builtin_cpu_supports ("avx512f") && __builtin_cpu_supports ("avx512vl");
#else
  return 0;
#endif
}

#endif
