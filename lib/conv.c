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

/* dst[0..len) = input row at x = (ox0 + i) * s - p + kx, zero outside;
 * [lo, hi) is the valid span of this kernel column. Strided rows are a
 * handful of floats at small frames, where one select loop beats the calls
 * to memset around a copy. */
static inline void
gather_row (const float *src, const conv_geom *g, int kx, int ox0, int len, int lo, int hi,
            float *dst)
{
  int s = g->s, p = g->p;
  if (s == 1) {
    memset (dst, 0, (size_t) (lo - ox0) * sizeof (float));
    memcpy (dst + (lo - ox0), src + (lo - p + kx), (size_t) (hi - lo) * sizeof (float));
    memset (dst + (hi - ox0), 0, (size_t) (ox0 + len - hi) * sizeof (float));
    return;
  }
  /* x is clamped to a valid tap so the load needs no branch */
  for (int i = 0; i < len; i++) {
    int ox = ox0 + i, x = ox >= lo && ox < hi ? ox * s - p + kx : lo * s - p + kx;
    float v = hi > lo ? src[x] : 0.0f;
    dst[i] = ox >= lo && ox < hi ? v : 0.0f;
  }
}

/* The adjoint of gather_row: input row x += src[i]. */
static inline void
scatter_row (const float *src, const conv_geom *g, int kx, int ox0, int lo, int hi, float *dst)
{
  int s = g->s, p = g->p;
  float *d = dst + (lo * s - p + kx);
  const float *a = src + (lo - ox0);
  if (s == 1) { /* the same loop, left to the vectoriser */
    for (int i = 0; i < hi - lo; i++)
      d[i] += a[i];
    return;
  }
  for (int i = 0; i < hi - lo; i++)
    d[i * s] += a[i];
}

enum { GATHER, SCATTER };

/* Walks the columns [j0, j1) one output row (fixed image n and row oy) at
 * a time, copying each kernel tap between the image and the column rows.
 * The valid spans depend only on the row segment and kx, so they are
 * computed once per segment: at 28x28 the rows are 7-14 floats and the
 * divisions per tap cost as much as the copy. */
static inline __attribute__ ((always_inline)) void
walk_columns (const conv_geom *g, float *img, size_t j0, size_t j1, float *col, int direction)
{
  int lo[64], hi[64]; /* the model spec caps k at 64 */
  size_t cols = j1 - j0, plane = (size_t) g->h * g->w, per_image = (size_t) g->oh * g->ow;
  int n = (int) (j0 / per_image);
  int oy = (int) (j0 % per_image / (size_t) g->ow), ox0 = (int) (j0 % (size_t) g->ow);
  int spans_for = -1; /* segment start the spans were computed for, when full */
  for (size_t j = j0; j < j1;) {
    int len = g->ow - ox0;
    if ((size_t) len > j1 - j)
      len = (int) (j1 - j);
    if (!(spans_for == 0 && ox0 == 0 && len == g->ow)) {
      for (int kx = 0; kx < g->k; kx++)
        valid_span (g->w, g->s, g->p, kx, ox0, len, &lo[kx], &hi[kx]);
      spans_for = ox0 == 0 && len == g->ow ? 0 : -1;
    }
    size_t off = j - j0;
    for (int c = 0; c < g->c; c++)
      for (int ky = 0; ky < g->k; ky++) {
        int iy = oy * g->s - g->p + ky;
        float *row = iy >= 0 && iy < g->h ? img + ((size_t) c * g->n + n) * plane + (size_t) iy * g->w
                                          : NULL;
        float *dst = col + ((size_t) (c * g->k + ky) * g->k) * cols + off;
        for (int kx = 0; kx < g->k; kx++, dst += cols) {
          if (direction == SCATTER) {
            if (row)
              scatter_row (dst, g, kx, ox0, lo[kx], hi[kx], row);
          } else if (row) {
            gather_row (row, g, kx, ox0, len, lo[kx], hi[kx], dst);
          } else {
            memset (dst, 0, (size_t) len * sizeof (float));
          }
        }
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
  walk_columns (g, (float *) img, j0, j1, col, GATHER);
}

void
ae_col2im (const conv_geom *g, const float *col, size_t j0, size_t j1, float *img)
{
  walk_columns (g, img, j0, j1, (float *) col, SCATTER);
}

/* dst[0..k) += src[0..k): one kernel row landing inside the image. k = 4
 * (the 4x4 stride-2 decoders) is spelt out so it becomes one vector add. */
typedef float float4 __attribute__ ((vector_size (16)));

static inline void
add_tap_row (float *restrict dst, const float *restrict src, int k)
{
  if (k == 4) {
    float4 a, b;
    memcpy (&a, dst, sizeof a);
    memcpy (&b, src, sizeof b);
    a += b;
    memcpy (dst, &a, sizeof a);
    return;
  }
  for (int i = 0; i < k; i++)
    dst[i] += src[i];
}

/* The same row clipped to the image's [0, w). */
static inline void
add_tap_row_clipped (float *restrict dst_row, const float *restrict src, int x0, int k, int w)
{
  int lo = x0 < 0 ? -x0 : 0, hi = x0 + k > w ? w - x0 : k;
  for (int i = lo; i < hi; i++)
    dst_row[x0 + i] += src[i];
}

void
ae_col2im_pixel_major (const conv_geom *g, const float *colt, size_t j0, size_t j1, float *img)
{
  const int k = g->k, w = g->w, h = g->h;
  size_t rows = (size_t) g->c * k * k, plane = (size_t) h * w, per_image = (size_t) g->oh * g->ow;
  int n = (int) (j0 / per_image);
  int oy = (int) (j0 % per_image / (size_t) g->ow), ox = (int) (j0 % (size_t) g->ow);
  for (size_t j = j0; j < j1; j++) {
    int y0 = oy * g->s - g->p, x0 = ox * g->s - g->p;
    int ky0 = y0 < 0 ? -y0 : 0, ky1 = y0 + k > h ? h - y0 : k;
    int inside_x = x0 >= 0 && x0 + k <= w;
    const float *src = colt + (j - j0) * rows + (size_t) ky0 * k;
    float *top = img + (size_t) n * plane + (size_t) (y0 + ky0) * w; /* first row inside */
    for (int c = 0; c < g->c; c++, src += (size_t) k * k, top += (size_t) g->n * plane)
      for (int ky = ky0; ky < ky1; ky++) {
        float *row = top + (size_t) (ky - ky0) * w;
        const float *taps = src + (size_t) (ky - ky0) * k;
        if (inside_x)
          add_tap_row (row + x0, taps, k);
        else
          add_tap_row_clipped (row, taps, x0, k, w);
      }
    if (++ox == g->ow) {
      ox = 0;
      if (++oy == g->oh) {
        oy = 0;
        n++;
      }
    }
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
