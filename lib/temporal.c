/* Motion-adaptive recursive (temporal) filtering of a denoised plane:
 * out = spatial + k (history - spatial), with k = strength where the two
 * frames agree and k = 0 where they differ by motion. Agreement is judged
 * on the mean of |history - spatial| over a 3x3 box, not per pixel: the
 * spatial output still carries residual noise, and a single pixel cannot
 * tell that noise from a moving low-contrast edge, nine can. The absolute
 * value comes before the box so that moving texture, whose signed
 * difference averages out, still counts as motion. Thresholds are in units
 * of the frame's measured noise, so the same settings hold from sigma 5 to
 * 50. Rows are independent, so callers can split a frame across threads;
 * nothing is allocated. */
#include "ae.h"

#include <math.h>

/* Box mean of |history - spatial| up to AGREE sigmas: full strength;
 * from MOTION sigmas on: none, linearly in between. Two spatially denoised
 * frames of a static area differ by about 0.35 sigma (standard deviation;
 * box mean of the absolute value about 0.3) with the embedded fast model.
 * Looser gates (0.5 and 1.5) measured 1-2 dB more on static areas but left
 * visible trails behind low-contrast moving objects, which these do not
 * (tests/bench/run-temporal-bench.sh). */
#define AGREE 0.25f
#define MOTION 0.6f
#define MIN_SIGMA (0.5f / 255.0f) /* clean video: still a usable ramp */

/* |history - spatial| summed down column x over three rows. */
static inline float
column (const float *const h[3], const float *const s[3], int x)
{
  return fabsf (h[0][x] - s[0][x]) + fabsf (h[1][x] - s[1][x]) + fabsf (h[2][x] - s[2][x]);
}

static inline float
blend (const float *const h[3], const float *const s[3], int x, float box, float hi, float slope,
       float strength)
{
  float k = (hi - box) * slope;
  k = k < 0.0f ? 0.0f : k > strength ? strength : k;
  return s[1][x] + k * (h[1][x] - s[1][x]);
}

void
ae_temporal_blend_rows (const float *spatial, const float *history, float *out, int width,
                        int height, float strength, float noise_sigma, int y0, int y1)
{
  float sigma = noise_sigma > MIN_SIGMA ? noise_sigma : MIN_SIGMA;
  /* Compared with the box sum, so the 1/9 of the mean goes into the ramp. */
  float lo = 9.0f * AGREE * sigma, hi = 9.0f * MOTION * sigma;
  float slope = strength / (hi - lo);
  for (int y = y0 < 0 ? 0 : y0; y < y1 && y < height; y++) {
    int up = y > 0 ? y - 1 : 0, down = y + 1 < height ? y + 1 : height - 1;
    const float *s[3] = { spatial + (size_t) up * width, spatial + (size_t) y * width,
                          spatial + (size_t) down * width };
    const float *h[3] = { history + (size_t) up * width, history + (size_t) y * width,
                          history + (size_t) down * width };
    float *o = out + (size_t) y * width;
    /* The edge columns repeat; inside, every pixel on its own (the
     * compiler vectorises this loop, a sliding sum would not be). */
    int last = width - 1;
    float edge = column (h, s, 0), next = width > 1 ? column (h, s, 1) : edge;
    o[0] = blend (h, s, 0, edge + edge + next, hi, slope, strength);
    for (int x = 1; x < last; x++)
      o[x] = blend (h, s, x, column (h, s, x - 1) + column (h, s, x) + column (h, s, x + 1), hi,
                    slope, strength);
    if (last > 0) {
      edge = column (h, s, last);
      o[last] = blend (h, s, last, column (h, s, last - 1) + edge + edge, hi, slope, strength);
    }
  }
}
