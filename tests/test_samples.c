/* Tests for the 8-bit sample conversions (lib/samples.c), packed and
 * strided, against a plain re-implementation of the documented rules:
 * every byte value, rounding to the nearest level, clamping far outside 0..255,
 * and lengths that leave a partial vector. One line per check; exits
 * non-zero on a failure. */
#include "check.h"
#include "nn.h"

#include <math.h>
#include <string.h>

#define N 300 /* not a multiple of any vector width */

static uint8_t
reference_add (uint8_t s, float from, float to, float gain)
{
  double v = s + (double) gain * ((double) to - from);
  return v <= 0.0 ? 0 : v >= 255.0 ? 255 : (uint8_t) floor (v + 0.5);
}

static void
test_read (void)
{
  uint8_t src[3 * N];
  float dst[N];
  for (int i = 0; i < 3 * N; i++)
    src[i] = (uint8_t) (i * 7);
  for (int stride = 1; stride <= 3; stride += 2) {
    ae_samples_read (src, stride, dst, N);
    int bad = 0;
    for (int i = 0; i < N; i++)
      bad += dst[i] != src[i * stride] * (1.0f / 255.0f);
    CHECK (bad == 0, "read, stride %d: %d of %d samples differ from s / 255", stride, bad, N);
  }
}

/* Changes that cover every byte value, rounding either way and clamping:
 * odd sixteenths of a level, so that no sum is a tie float rounding could
 * tip. */
static void
changes (float *from, float *to, uint8_t *start)
{
  for (int i = 0; i < N; i++) {
    start[i] = (uint8_t) (i % 256);
    from[i] = start[i] / 255.0f;
    to[i] = from[i] + (float) (2 * (i % 41) - 41) * 0.0625f / 255.0f;
    if (i % 17 == 0)
      to[i] = i % 2 ? 3.0f : -2.0f; /* far outside: clamped */
  }
}

static void
test_add_change (void)
{
  float from[N], to[N];
  uint8_t start[N], buf[3 * N];
  changes (from, to, start);
  for (int stride = 1; stride <= 3; stride += 2) {
    memset (buf, 0xAA, sizeof buf);
    for (int i = 0; i < N; i++)
      buf[i * stride] = start[i];
    ae_samples_add_change (buf, stride, from, to, 255.0f, N);
    int bad = 0, others = 0;
    for (int i = 0; i < N; i++) {
      bad += buf[i * stride] != reference_add (start[i], from[i], to[i], 255.0f);
      for (int k = 1; k < stride; k++)
        others += buf[i * stride + k] != 0xAA;
    }
    CHECK (bad == 0, "add change, stride %d: %d of %d samples differ from the rounded, clamped "
           "sum", stride, bad, N);
    CHECK (others == 0, "add change, stride %d: the bytes between samples are untouched (%d "
           "changed)", stride, others);
  }
  uint8_t half[N];
  memcpy (half, start, sizeof half);
  ae_samples_add_change (half, 1, from, to, 0.5f * 255.0f, N);
  int bad = 0;
  for (int i = 0; i < N; i++)
    bad += half[i] != reference_add (start[i], from[i], to[i], 0.5f * 255.0f);
  CHECK (bad == 0, "add change with half the gain: %d of %d samples differ", bad, N);
}

int
main (void)
{
  test_read ();
  test_add_change ();
  return CHECK_DONE ();
}
