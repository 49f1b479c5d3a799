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

/* Calls fn for each maximal run of columns [j, j+len) that stays on one
 * output row (fixed n, y), giving the starting x. */
#define FOR_ROW_RUNS(g, j0, j1, BODY)                                         \
  do {                                                                        \
    size_t j_ = (j0);                                                         \
    while (j_ < (j1)) {                                                       \
      size_t pos_ = j_ % ((size_t) (g)->oh * (g)->ow);                        \
      int n_ = (int) (j_ / ((size_t) (g)->oh * (g)->ow));                     \
      int y_ = (int) (pos_ / (g)->ow), x0_ = (int) (pos_ % (g)->ow);          \
      size_t len_ = (size_t) ((g)->ow - x0_);                                 \
      if (len_ > (j1) - j_)                                                   \
        len_ = (j1) - j_;                                                     \
      {                                                                       \
        const int n = n_, oy = y_, ox0 = x0_;                                 \
        const size_t len = len_, off = j_ - (j0);                             \
        BODY;                                                                 \
      }                                                                       \
      j_ += len_;                                                             \
    }                                                                         \
  } while (0)

/* Copies one kernel tap's row of inputs for output x in [ox0, ox0+len). */
static void
gather_run (const float *src_row, int w, int s, int p, int kx, int ox0, size_t len, float *dst)
{
  for (size_t i = 0; i < len; i++) {
    int ix = (ox0 + (int) i) * s - p + kx;
    dst[i] = (ix >= 0 && ix < w) ? src_row[ix] : 0.0f;
  }
}

static void
scatter_run (const float *src, int w, int s, int p, int kx, int ox0, size_t len, float *dst_row)
{
  for (size_t i = 0; i < len; i++) {
    int ix = (ox0 + (int) i) * s - p + kx;
    if (ix >= 0 && ix < w)
      dst_row[ix] += src[i];
  }
}

void
ae_im2col (const conv_geom *g, const float *img, size_t j0, size_t j1, float *col)
{
  size_t cols = j1 - j0, plane = (size_t) g->h * g->w;
  for (int c = 0; c < g->c; c++)
    for (int ky = 0; ky < g->k; ky++)
      for (int kx = 0; kx < g->k; kx++) {
        float *row = col + ((size_t) (c * g->k + ky) * g->k + kx) * cols;
        FOR_ROW_RUNS (g, j0, j1, {
          int iy = oy * g->s - g->p + ky;
          if (iy < 0 || iy >= g->h)
            memset (row + off, 0, len * sizeof (float));
          else
            gather_run (img + ((size_t) c * g->n + n) * plane + (size_t) iy * g->w, g->w, g->s,
                        g->p, kx, ox0, len, row + off);
        });
      }
}

void
ae_col2im (const conv_geom *g, const float *col, size_t j0, size_t j1, float *img)
{
  size_t cols = j1 - j0, plane = (size_t) g->h * g->w;
  for (int c = 0; c < g->c; c++)
    for (int ky = 0; ky < g->k; ky++)
      for (int kx = 0; kx < g->k; kx++) {
        const float *row = col + ((size_t) (c * g->k + ky) * g->k + kx) * cols;
        FOR_ROW_RUNS (g, j0, j1, {
          int iy = oy * g->s - g->p + ky;
          if (iy >= 0 && iy < g->h)
            scatter_run (row + off, g->w, g->s, g->p, kx, ox0, len,
                         img + ((size_t) c * g->n + n) * plane + (size_t) iy * g->w);
        });
      }
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
