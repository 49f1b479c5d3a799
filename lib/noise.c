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
  /* On large frames every eighth row and every other column: it runs on
   * the streaming thread, and 720p still gives 57,000 samples, which
   * put the median within a few hundredths of a level. */
  int ystep = height >= 64 ? 8 : 1, xstep = width >= 64 ? 2 : 1;
  for (int y = 1; y + 1 < height; y += ystep) {
    const float *a = plane + (size_t) (y - 1) * width, *b = a + width, *c = b + width;
    for (int x = 1; x + 1 < width; x += xstep) {
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
