/* Noise level of a frame: the median absolute value of a Laplacian-like
 * residual that cancels locally linear image content, scaled to the
 * standard deviation of Gaussian noise. The median makes edges and
 * texture outliers rather than noise; the 3x3 mask is Immerkaer's
 * (1996). A histogram gives the median without sorting or allocating. */
#include "ae_internal.h"

#include <math.h>
#include <stdint.h>

#define BINS 2048
#define RANGE 0.25f /* residuals beyond this (in plane units) share the last bin */

float
ae_noise_sigma (const float *plane, int width, int height)
{
  uint32_t hist[BINS] = { 0 };
  size_t count = 0;
  if (!plane || width < 3 || height < 3)
    return -1.0f;
  /* Every fourth row: a quarter of the work; at video sizes still
   * hundreds of thousands of samples for the median. */
  int step = height >= 64 ? 4 : 1;
  for (int y = 1; y + 1 < height; y += step) {
    const float *a = plane + (size_t) (y - 1) * width, *b = a + width, *c = b + width;
    for (int x = 1; x + 1 < width; x++) {
      float r = (a[x - 1] + a[x + 1] + c[x - 1] + c[x + 1]) - 2.0f * (a[x] + c[x] + b[x - 1]
                + b[x + 1]) + 4.0f * b[x];
      /* The mask's coefficients have squared sum 36: r / 6 has the noise's sigma. */
      float v = fabsf (r) / 6.0f;
      int bin = v >= RANGE ? BINS - 1 : (int) (v * (BINS / RANGE));
      hist[bin]++;
      count++;
    }
  }
  size_t half = (count + 1) / 2, seen = 0;
  int bin = 0;
  while (bin < BINS - 1 && seen + hist[bin] < half)
    seen += hist[bin++];
  /* Interpolate inside the bin, then |N(0, s)| has median 0.6745 s. */
  float within = hist[bin] ? (float) (half - seen) / (float) hist[bin] : 0.5f;
  return ((float) bin + within) * (RANGE / BINS) / 0.6745f;
}
