/* Minimal test reporting: one "ok"/"not ok" line per check, and main
 * returns the number of failures (meson treats non-zero as failure). */
#ifndef AE_TEST_CHECK_H
#define AE_TEST_CHECK_H

#include <stdio.h>

static int check_failures;
static int check_count;

#define CHECK(cond, ...)                                                        \
  do {                                                                          \
    check_count++;                                                              \
    if (cond) {                                                                 \
      printf ("ok %d - ", check_count);                                         \
    } else {                                                                    \
      check_failures++;                                                         \
      printf ("not ok %d - %s:%d: ", check_count, __FILE__, __LINE__);          \
    }                                                                           \
    printf (__VA_ARGS__);                                                       \
    printf ("\n");                                                              \
    fflush (stdout);                                                            \
  } while (0)

#define CHECK_DONE()                                                            \
  (printf ("%d checks, %d failed\n", check_count, check_failures),              \
   check_failures ? 1 : 0)

#endif
