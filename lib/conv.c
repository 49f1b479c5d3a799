/* im2col / col2im over CNHW batches, and layout transposes.
 *
 * A column j indexes an output position over the whole batch,
 * j = (n * oh + y) * ow + x, so a range [j0, j1) may span several images;
 * row r = (c * k + ky) * k + kx indexes a kernel tap. Splitting the columns
 * into chunks bounds the workspace for large frames.
 */
#include "nn.h"

#include <string.h>

/* The budget keeps the workspace bounded for large frames while leaving
 * GEMMs wide enough to run efficiently. */
size_t
ae_col_chunk (size_t rows, size_t total_cols, size_t budget)
{
  size_t cols = budget / (rows ? rows : 1);
  if (cols < 64)
    cols = 64;
  return cols < total_cols ? cols : total_cols;
}

/* Output columns ox in [lo, hi) read input columns inside [0, w) for this
 * kernel column; the rest fall on the zero padding. */
static inline void
valid_span (int w, int s, int p, int kx, int ox0, int len, int *lo, int *hi)
{
  int first = p - kx > 0 ? (p - kx + s - 1) / s : 0;
  int last = w - 1 + p - kx >= 0 ? (w - 1 + p - kx) / s + 1 : 0;
  *lo = first > ox0 ? first : ox0;
  *hi = last < ox0 + len ? last : ox0 + len;
  if (*hi < *lo)
    *hi = *lo;
}

/* dst[0..len) = input row at x = (ox0 + i) * s - p + kx, zero outside. */
static inline void
gather_row (const float *src, int w, int s, int p, int kx, int ox0, int len, float *dst)
{
  int lo, hi;
  valid_span (w, s, p, kx, ox0, len, &lo, &hi);
  memset (dst, 0, (size_t) (lo - ox0) * sizeof (float));
  if (s == 1) {
    memcpy (dst + (lo - ox0), src + (lo - p + kx), (size_t) (hi - lo) * sizeof (float));
  } else {
    for (int ox = lo; ox < hi; ox++)
      dst[ox - ox0] = src[ox * s - p + kx];
  }
  memset (dst + (hi - ox0), 0, (size_t) (ox0 + len - hi) * sizeof (float));
}

/* The adjoint of gather_row: input row x += src[i]. */
static inline void
scatter_row (const float *src, int w, int s, int p, int kx, int ox0, int len, float *dst)
{
  int lo, hi;
  valid_span (w, s, p, kx, ox0, len, &lo, &hi);
  if (s == 1) {
    float *d = dst + (lo - p + kx);
    const float *a = src + (lo - ox0);
    for (int i = 0; i < hi - lo; i++)
      d[i] += a[i];
  } else {
    for (int ox = lo; ox < hi; ox++)
      dst[ox * s - p + kx] += src[ox - ox0];
  }
}

/* Walks the columns [j0, j1) one output row (fixed image n and row oy) at
 * a time, calling row_fn for each kernel tap. */
typedef void (*tap_fn) (const conv_geom *g, float *img_row, float *col_row, int ox0, int len,
                        int kx);

static void
tap_gather (const conv_geom *g, float *img_row, float *col_row, int ox0, int len, int kx)
{
  if (img_row)
    gather_row (img_row, g->w, g->s, g->p, kx, ox0, len, col_row);
  else
    memset (col_row, 0, (size_t) len * sizeof (float));
}

static void
tap_scatter (const conv_geom *g, float *img_row, float *col_row, int ox0, int len, int kx)
{
  if (img_row)
    scatter_row (col_row, g->w, g->s, g->p, kx, ox0, len, img_row);
}

static void
walk_columns (const conv_geom *g, float *img, size_t j0, size_t j1, float *col, tap_fn fn)
{
  size_t cols = j1 - j0, plane = (size_t) g->h * g->w, per_image = (size_t) g->oh * g->ow;
  int n = (int) (j0 / per_image);
  int oy = (int) (j0 % per_image / (size_t) g->ow), ox0 = (int) (j0 % (size_t) g->ow);
  for (size_t j = j0; j < j1;) {
    int len = g->ow - ox0;
    if ((size_t) len > j1 - j)
      len = (int) (j1 - j);
    size_t off = j - j0;
    for (int c = 0; c < g->c; c++)
      for (int ky = 0; ky < g->k; ky++) {
        int iy = oy * g->s - g->p + ky;
        float *row = iy >= 0 && iy < g->h ? img + ((size_t) c * g->n + n) * plane + (size_t) iy * g->w
                                          : NULL;
        float *dst = col + ((size_t) (c * g->k + ky) * g->k) * cols + off;
        for (int kx = 0; kx < g->k; kx++)
          fn (g, row, dst + (size_t) kx * cols, ox0, len, kx);
      }
    j += (size_t) len;
    ox0 = 0;
    if (++oy == g->oh) {
      oy = 0;
      n++;
    }
  }
}

void
ae_im2col (const conv_geom *g, const float *img, size_t j0, size_t j1, float *col)
{
  /* gather only reads the image; the cast lets both directions share the walk */
  walk_columns (g, (float *) img, j0, j1, col, tap_gather);
}

void
ae_col2im (const conv_geom *g, const float *col, size_t j0, size_t j1, float *img)
{
  walk_columns (g, img, j0, j1, (float *) col, tap_scatter);
}

void
ae_cnhw_from_nchw (const float *src, float *dst, int n, int c, size_t hw)
{
  for (int i = 0; i < n; i++)
    for (int ch = 0; ch < c; ch++)
      memcpy (dst + ((size_t) ch * n + i) * hw, src + ((size_t) i * c + ch) * hw,
              hw * sizeof (float));
}

void
ae_nchw_from_cnhw (const float *src, float *dst, int n, int c, size_t hw)
{
  for (int i = 0; i < n; i++)
    for (int ch = 0; ch < c; ch++)
      memcpy (dst + ((size_t) i * c + ch) * hw, src + ((size_t) ch * n + i) * hw,
              hw * sizeof (float));
}
