/* Minimal test reporting: one "ok"/"not ok" line per check, and main
 * returns the number of failures (meson treats non-zero as failure). */
#ifndef AE_TEST_CHECK_H
#define AE_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>

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

/* A whole file in memory (NULL on failure); the caller frees it. */
static inline void *
read_all (const char *path, size_t *len)
{
  FILE *f = fopen (path, "rb");
  if (!f)
    return NULL;
  fseek (f, 0, SEEK_END);
  *len = (size_t) ftell (f);
  fseek (f, 0, SEEK_SET);
  void *buf = malloc (*len ? *len : 1);
  if (buf && fread (buf, 1, *len, f) != *len) {
    free (buf);
    buf = NULL;
  }
  fclose (f);
  return buf;
}

#endif
