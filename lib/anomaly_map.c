/* Anomaly maps to frame scores: smoothing, aggregation and the lost-contrast
 * term, shared by ae-train's calibration and the aeanomaly element so that both compute
 * exactly the same score. */
#include "ae.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int
ae_aggregate_from_name (const char *name, float *top_fraction)
{
  if (!name || !top_fraction)
    return 0;
  if (strcmp (name, "mean") == 0) {
    *top_fraction = 1.0f;
    return 1;
  }
  if (strcmp (name, "max") == 0) {
    *top_fraction = 0.0f;
    return 1;
  }
  if (strncmp (name, "top:", 4) != 0)
    return 0;
  char *end;
  double p = strtod (name + 4, &end);
  if (end == name + 4 || *end || !(p > 0.0 && p < 100.0))
    return 0;
  *top_fraction = (float) (p / 100.0);
  return 1;
}

/* Horizontal running sums into tmp, then vertical ones kept per column in
 * colsum, row by row (cache friendly): O(1) per pixel whatever the radius. */
void
ae_map_smooth (const float *map, float *smooth, int width, int height, int radius,
               float *scratch)
{
  int w = width, h = height, r = radius;
  float *tmp = scratch, *colsum = scratch + (size_t) w * h;
  if (r <= 0) {
    memmove (smooth, map, (size_t) w * h * sizeof (float));
    return;
  }
  for (int y = 0; y < h; y++) {
    const float *in = map + (size_t) y * w;
    float *out = tmp + (size_t) y * w, sum = 0.0f;
    int n = 0;
    for (int x = 0; x < r && x < w; x++, n++)
      sum += in[x];
    for (int x = 0; x < w; x++) {
      if (x + r < w)
        sum += in[x + r], n++;
      if (x - r - 1 >= 0)
        sum -= in[x - r - 1], n--;
      out[x] = sum / (float) n;
    }
  }
  memset (colsum, 0, (size_t) w * sizeof (float));
  int n = 0;
  for (int y = 0; y < r && y < h; y++, n++)
    for (int x = 0; x < w; x++)
      colsum[x] += tmp[(size_t) y * w + x];
  for (int y = 0; y < h; y++) {
    if (y + r < h) {
      const float *add = tmp + (size_t) (y + r) * w;
      for (int x = 0; x < w; x++)
        colsum[x] += add[x];
      n++;
    }
    if (y - r - 1 >= 0) {
      const float *sub = tmp + (size_t) (y - r - 1) * w;
      for (int x = 0; x < w; x++)
        colsum[x] -= sub[x];
      n--;
    }
    float *out = smooth + (size_t) y * w;
    for (int x = 0; x < w; x++)
      out[x] = colsum[x] / (float) n;
  }
}

void
ae_map_clear_border (float *map, int width, int height, int border)
{
  if (border <= 0)
    return;
  int side = border < width ? border : width;
  for (int y = 0; y < height; y++) {
    float *row = map + (size_t) y * width;
    if (y < border || y >= height - border) {
      memset (row, 0, (size_t) width * sizeof (float));
      continue;
    }
    memset (row, 0, (size_t) side * sizeof (float));
    memset (row + width - side, 0, (size_t) side * sizeof (float));
  }
}

float
ae_map_score (const float *map, const float *smooth, size_t n, float top_fraction,
              float *scratch)
{
  if (top_fraction >= 1.0f)
    return ae_score_top_mean (map, n, 1.0f, scratch);
  if (top_fraction > 0.0f)
    return ae_score_top_mean (smooth, n, top_fraction, scratch);
  float best = n ? smooth[0] : 0.0f;
  for (size_t i = 1; i < n; i++)
    best = smooth[i] > best ? smooth[i] : best;
  return best;
}

/* ---- Lost local contrast --------------------------------------------------------------- */

/* One plane's local standard deviations added to sigma. The plane is centred
 * on its mean first: the box sums of squares then stay small, and the
 * variance (mean of squares minus squared mean) keeps its precision where
 * the texture is faint, the very place this term looks at. */
static void
add_plane_contrast (const float *x, int h, int w, int r, float *sigma, float *scratch)
{
  size_t n = (size_t) w * h;
  float *centred = scratch, *mean = scratch + n, *mean_sq = scratch + 2 * n, *tmp = scratch + 3 * n;
  double sum = 0;
  for (size_t i = 0; i < n; i++)
    sum += x[i];
  float offset = (float) (sum / (double) n);
  for (size_t i = 0; i < n; i++)
    centred[i] = x[i] - offset;
  ae_map_smooth (centred, mean, w, h, r, tmp);
  for (size_t i = 0; i < n; i++)
    centred[i] *= centred[i];
  ae_map_smooth (centred, mean_sq, w, h, r, tmp);
  for (size_t i = 0; i < n; i++) {
    float var = mean_sq[i] - mean[i] * mean[i];
    sigma[i] += var > 0.0f ? sqrtf (var) : 0.0f;
  }
}

ae_status
ae_local_contrast (const float *input, int channels, int height, int width, int radius,
                   float *sigma, float *scratch)
{
  if (!input || !sigma || !scratch || channels < 1 || height < 1 || width < 1 || radius < 0)
    return AE_E_ARG;
  size_t n = (size_t) width * height;
  memset (sigma, 0, n * sizeof (float));
  for (int c = 0; c < channels; c++)
    add_plane_contrast (input + c * n, height, width, radius, sigma, scratch);
  if (channels > 1)
    for (size_t i = 0; i < n; i++)
      sigma[i] /= (float) channels;
  return AE_OK;
}

ae_status
ae_map_add_lost_contrast (const float *input, int channels, int height, int width, int radius,
                          float contrast_floor, float weight, float *map, float *scratch)
{
  if (!map || !(contrast_floor > 0.0f) || !isfinite (contrast_floor) || !(weight >= 0.0f)
      || !isfinite (weight))
    return AE_E_ARG;
  size_t n = (size_t) width * height;
  float *sigma = scratch ? scratch + 4 * n + (size_t) width : NULL;
  ae_status st = ae_local_contrast (input, channels, height, width, radius, sigma, scratch);
  if (st != AE_OK)
    return st;
  const float lowest = ldexpf (contrast_floor, -AE_CONTRAST_MAX_HALVINGS);
  for (size_t i = 0; i < n; i++)
    if (sigma[i] < contrast_floor)
      map[i] += weight * log2f (contrast_floor / fmaxf (sigma[i], lowest));
  return AE_OK;
}

/* log2 sigma in 1/32 halvings from 2^-24 (sigma below: flat) to 1. */
#define BINS_PER_HALVING 32
#define BINS (24 * BINS_PER_HALVING)

typedef struct {
  uint64_t count[BINS];
  uint64_t total;
} contrast_hist;

static int
contrast_bin (float sigma)
{
  if (!(sigma > 0.0f))
    return 0;
  double b = floor ((log2 (sigma) + 24.0) * BINS_PER_HALVING);
  return b < 0 ? 0 : b >= BINS ? BINS - 1 : (int) b;
}

static void
hist_add (contrast_hist *h, const float *sigma, int height, int width, int margin)
{
  for (int y = margin; y < height - margin; y++)
    for (int x = margin; x < width - margin; x++) {
      h->count[contrast_bin (sigma[(size_t) y * width + x])]++;
      h->total++;
    }
}

/* The upper edge of the bin where the fraction of the count is reached. */
static float
hist_quantile (const contrast_hist *h, double fraction)
{
  uint64_t need = (uint64_t) ceil (fraction * (double) h->total), seen = 0;
  int b = 0;
  while (b < BINS - 1 && (seen += h->count[b]) < need)
    b++;
  return (float) exp2 ((double) (b + 1) / BINS_PER_HALVING - 24.0);
}

float
ae_contrast_floor (const float *frames, const size_t *idx, size_t n, int channels, int height,
                   int width)
{
  if (!frames || channels < 1 || height < 1 || width < 1)
    return 0.0f;
  size_t pixels = (size_t) height * width, per = pixels * (size_t) channels;
  float *sigma = malloc (pixels * sizeof (float));
  float *scratch = malloc ((4 * pixels + (size_t) width) * sizeof (float));
  contrast_hist *hist = calloc (1, sizeof *hist);
  float result = 0.0f;
  if (sigma && scratch && hist) {
    for (size_t k = 0; k < n; k++) {
      ae_local_contrast (frames + (idx ? idx[k] : k) * per, channels, height, width,
                         AE_CONTRAST_RADIUS, sigma, scratch);
      hist_add (hist, sigma, height, width, AE_CONTRAST_RADIUS);
    }
    if (hist->total)
      result = hist_quantile (hist, AE_CONTRAST_FLOOR_FRACTION);
  }
  free (hist);
  free (scratch);
  free (sigma);
  return result;
}
