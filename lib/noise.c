/* Noise level of a frame: the median absolute value of a Laplacian-like
 * residual that cancels locally linear image content, scaled to the
 * standard deviation of Gaussian noise. The median makes edges and
 * texture outliers rather than noise; the 3x3 mask is Immerkaer's
 * (1996). A histogram gives the median without sorting or allocating,
 * and lets threads measure parts of a frame. */
#include "ae_internal.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define RANGE 0.25f /* residuals beyond this (in plane units) share the last bin */

void
ae_noise_hist_clear (ae_noise_hist *h)
{
  memset (h, 0, sizeof *h);
}

/* On large frames every eighth row and every other column: 720p still gives
 * 57,000 samples, which put the median within a few hundredths of a level. */
static int
row_step (int height)
{
  return height >= 64 ? 8 : 1;
}

void
ae_noise_hist_rows (ae_noise_hist *h, const float *plane, int width, int height, int y0, int y1)
{
  if (!plane || width < 3 || height < 3)
    return;
  int ystep = row_step (height), xstep = width >= 64 ? 2 : 1;
  int first = y0 <= 1 ? 1 : 1 + (y0 - 1 + ystep - 1) / ystep * ystep; /* the first sample row >= y0 */
  for (int y = first; y < y1 && y + 1 < height; y += ystep) {
    const float *a = plane + (size_t) (y - 1) * width, *b = a + width, *c = b + width;
    for (int x = 1; x + 1 < width; x += xstep) {
      float r = (a[x - 1] + a[x + 1] + c[x - 1] + c[x + 1]) - 2.0f * (a[x] + c[x] + b[x - 1]
                + b[x + 1]) + 4.0f * b[x];
      /* The mask's coefficients have squared sum 36: r / 6 has the noise's sigma. */
      float v = fabsf (r) / 6.0f;
      int bin = v >= RANGE ? AE_NOISE_BINS - 1 : (int) (v * (AE_NOISE_BINS / RANGE));
      h->bin[bin]++;
      h->count++;
    }
  }
}

void
ae_noise_hist_add (ae_noise_hist *h, const ae_noise_hist *part)
{
  for (int i = 0; i < AE_NOISE_BINS; i++)
    h->bin[i] += part->bin[i];
  h->count += part->count;
}

float
ae_noise_hist_sigma (const ae_noise_hist *h)
{
  if (h->count == 0)
    return -1.0f;
  uint64_t half = (h->count + 1) / 2, seen = 0;
  int bin = 0;
  while (bin < AE_NOISE_BINS - 1 && seen + h->bin[bin] < half)
    seen += h->bin[bin++];
  /* Interpolate inside the bin, then |N(0, s)| has median 0.6745 s. */
  float within = h->bin[bin] ? (float) (half - seen) / (float) h->bin[bin] : 0.5f;
  return ((float) bin + within) * (RANGE / AE_NOISE_BINS) / 0.6745f;
}

float
ae_noise_sigma (const float *plane, int width, int height)
{
  ae_noise_hist h;
  ae_noise_hist_clear (&h);
  ae_noise_hist_rows (&h, plane, width, height, 0, height);
  return ae_noise_hist_sigma (&h);
}
