/* Conversions between a frame's 8-bit samples and a network's floats,
 * run on every pixel of every frame by the elements: the packed case
 * (stride 1) is a loop of its own that the compiler vectorises, built for
 * AVX2 as well as the baseline (simd.h): on the baseline alone the clamp
 * and the narrowing to bytes took 4 % of a 720p aedenoise frame. */
#include "ae.h"
#include "simd.h"

static inline uint8_t
clamp_sample (float v)
{
  return v <= 0.0f ? 0 : v >= 255.0f ? 255 : (uint8_t) (v + 0.5f);
}

MULTIVERSION void
ae_samples_read (const uint8_t *src, int stride, float *dst, int n)
{
  const float k = 1.0f / 255.0f;
  if (stride == 1) {
    for (int i = 0; i < n; i++)
      dst[i] = src[i] * k;
    return;
  }
  for (int i = 0; i < n; i++)
    dst[i] = src[(size_t) i * stride] * k;
}

MULTIVERSION void
ae_samples_add_change (uint8_t *dst, int stride, const float *from, const float *to, float gain,
                       int n)
{
  if (stride == 1) {
    for (int i = 0; i < n; i++) { /* clamp_sample, as max, min and truncation */
      float v = dst[i] + gain * (to[i] - from[i]) + 0.5f;
      v = v > 0.0f ? v : 0.0f;
      v = v < 255.0f ? v : 255.0f;
      dst[i] = (uint8_t) (int) v;
    }
    return;
  }
  for (int i = 0; i < n; i++) {
    uint8_t *p = dst + (size_t) i * stride;
    *p = clamp_sample (*p + gain * (to[i] - from[i]));
  }
}
