/* Anomaly maps to frame scores: smoothing and aggregation, shared by
 * ae-train's calibration and the aeanomaly element so that both compute
 * exactly the same score. */
#include "ae.h"

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
