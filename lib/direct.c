/* Direct convolution for inference-sized frames.
 *
 * im2col + sgemm copies every input value k*k times into the column buffer,
 * then OpenBLAS packs that buffer again before its kernel runs; for the few
 * channels of a video denoiser that copying costs as much as the arithmetic
 * (a 720p profile: 37% in the sgemm kernel, 31% in the two copies). Here a
 * band of input rows is copied once, zero-padded and split by column phase
 * (x mod stride), and a register-blocked kernel reads every tap straight
 * from it (stride 1 reads the input in place, except at the edges): 4 output
 * channels x 16 (AVX2) or 64 (AVX-512) output columns per tile, each input
 * vector loaded once per tap and used for all 4 channels. Measured on 720p:
 * 4 x 64 beat 8 x 32, 8 x 48, 4 x 96 and 2 x 128 by 3-40%.
 *
 * The kernel is plain C on GCC vector types. Where the compiler can, it is
 * built for AVX-512, AVX2+FMA and baseline x86-64: the AVX-512 build is
 * chosen from the CPU's flags at each call, the other two by the dynamic
 * loader (an ifunc). No state of ours. */
#include "nn.h"
#include "simd.h"

#include <string.h>

#define TILE_X_MAX 64 /* the widest tile: four vectors of 16 */
#define BAND_BUDGET ((size_t) 1 << 17) /* floats per band: stays in L2 */

typedef struct band {
  int oy0, oy1;   /* output rows */
  int rows;       /* input rows held: (oy1 - oy0 - 1) * s + k */
  int pw;         /* floats per phase row */
} band;

static int
round_up (int v, int k)
{
  return (v + k - 1) / k * k;
}

static int
phase_width (const conv_geom *g)
{
  return round_up (g->ow, TILE_X_MAX) + (g->k - 1) / g->s + 1;
}

/* Input rows a band of `out_rows` output rows needs, all channels and phases. */
static size_t
band_floats (const conv_geom *g, int out_rows)
{
  return (size_t) g->c * ((size_t) (out_rows - 1) * g->s + g->k) * g->s * phase_width (g);
}

static int
band_height (const conv_geom *g)
{
  int rows = g->oh;
  while (rows > 1 && band_floats (g, rows) > BAND_BUDGET)
    rows = (rows + 1) / 2;
  return rows;
}

int
ae_direct_conv_fits (const conv_geom *g)
{
  /* Narrow outputs waste most of each 16-column tile. */
  return g->ow >= 8 && g->s <= 4;
}

size_t
ae_direct_conv_scratch (const conv_geom *g)
{
  if (g->s == 1) /* one tile's window */
    return (size_t) g->c * g->k * (TILE_X_MAX + g->k - 1);
  return band_floats (g, band_height (g));
}

/* row[i] = src[i * s + first], zero outside [0, w) or when src is NULL. */
static void
fill_phase_row (const float *src, int w, int s, int first, int len, float *row)
{
  int lo = 0, hi = 0; /* row[lo, hi) reads the image */
  if (src) {
    lo = first >= 0 ? 0 : (-first + s - 1) / s;
    hi = w - first > 0 ? (w - first + s - 1) / s : 0;
    hi = hi < len ? hi : len;
    lo = lo < hi ? lo : hi;
  }
  memset (row, 0, (size_t) lo * sizeof (float));
  if (hi <= lo)
    ;
  else if (s == 1)
    memcpy (row + lo, src + lo + first, (size_t) (hi - lo) * sizeof (float));
  else if (s == 2) /* its own loop, which the compiler vectorises */
    for (int i = lo; i < hi; i++)
      row[i] = src[2 * i + first];
  else
    for (int i = lo; i < hi; i++)
      row[i] = src[i * s + first];
  memset (row + hi, 0, (size_t) (len - hi) * sizeof (float));
}

/* Input row iy of channel ic, NULL outside the image (zero padding). */
static const float *
input_row (const conv_geom *g, const rows_in *x, int ic, int iy)
{
  if (iy < 0 || iy >= g->h)
    return NULL;
  return x->data + ic * x->cs + (size_t) (iy - x->first) * x->rs;
}

/* Copies the input rows of band b, zero outside the image, phase row q
 * of input row r holding padded columns q, q + s, q + 2s, ... */
static void
fill_band (const conv_geom *g, const rows_in *x, const band *b, float *dst)
{
  for (int ic = 0; ic < g->c; ic++)
    for (int r = 0; r < b->rows; r++) {
      const float *src = input_row (g, x, ic, b->oy0 * g->s - g->p + r);
      for (int q = 0; q < g->s; q++)
        fill_phase_row (src, g->w, g->s, q - g->p, b->pw,
                        dst + (((size_t) ic * b->rows + r) * g->s + q) * b->pw);
    }
}

/* Stride 1, window (k rows of 2 * VEC + k - 1 columns, all channels)
 * starting at input (iy, ix), zero outside the image. */
static void
fill_window (const conv_geom *g, const rows_in *x, int iy, int ix, int k, int span, float *dst)
{
  for (int ic = 0; ic < g->c; ic++)
    for (int r = 0; r < k; r++)
      fill_phase_row (input_row (g, x, ic, iy + r), g->w, 1, ix, span,
                      dst + ((size_t) ic * k + r) * span);
}

/* Where a tile reads its taps (see KERNEL_TILE). */
typedef struct window {
  const float *src;
  size_t ch, row, phase;
} window;

typedef void (*band_fn) (const conv_geom *g, const band *b, const float *bandp, const float *w,
                         const float *bias, int out_c, const rows_out *y, float act_a,
                         float act_b);
typedef void (*row_fn) (const conv_geom *g, const rows_in *x, const float *w, const float *bias,
                        int out_c, const rows_out *y, int oy0, int oy1, float *scratch,
                        float act_a, float act_b);

/* Baseline and AVX2 builds: 8-float vectors, 16-column tiles. */
#define BAND_KERNEL band_v8
#define ROW_KERNEL rows_v8
#define VEC 8
#define KERNEL_OC 4
#define KERNEL_XV 2
#define KERNEL_VEC v8
#define KERNEL_IVEC v8i
#define KERNEL_TILE tile_v8
#define KERNEL_COLUMN column_v8
#define KERNEL_ROWS row_tiles_v8
#define KERNEL_BAND_TILES band_tiles_v8
#define KERNEL_ATTRS MULTIVERSION
#include "direct_kernel.h"
#undef BAND_KERNEL
#undef ROW_KERNEL
#undef VEC
#undef KERNEL_OC
#undef KERNEL_XV
#undef KERNEL_ATTRS

#ifdef HAVE_AVX512_KERNEL
/* AVX-512: 16-float vectors, 64-column tiles, twice the work per FMA. */
#define BAND_KERNEL band_v16
#define ROW_KERNEL rows_v16
#define VEC 16
#define KERNEL_OC 4
#define KERNEL_XV 4
#define KERNEL_VEC v16
#define KERNEL_IVEC v16i
#define KERNEL_TILE tile_v16
#define KERNEL_COLUMN column_v16
#define KERNEL_ROWS row_tiles_v16
#define KERNEL_BAND_TILES band_tiles_v16
#define KERNEL_ATTRS AVX512_KERNEL
#include "direct_kernel.h"
#undef BAND_KERNEL
#undef ROW_KERNEL
#undef VEC
#undef KERNEL_OC
#undef KERNEL_XV
#undef KERNEL_ATTRS
#endif

void
ae_direct_conv_rows (const conv_geom *g, int out_c, const float *w, const float *bias,
                     float act_a, float act_b, const rows_in *x, const rows_out *y, int oy0,
                     int oy1, float *scratch)
{
  int wide = ae_have_avx512 () && g->ow >= 48; /* narrower outputs waste most of a 64-column tile */
  if (g->s == 1) {
    row_fn rows = rows_v8;
#ifdef HAVE_AVX512_KERNEL
    if (wide)
      rows = rows_v16;
#endif
    rows (g, x, w, bias, out_c, y, oy0, oy1, scratch, act_a, act_b);
    return;
  }
  band_fn kernel = band_v8;
#ifdef HAVE_AVX512_KERNEL
  if (wide)
    kernel = band_v16;
#endif
  int step = band_height (g);
  for (int oy = oy0; oy < oy1; oy += step) {
    band b = { oy, oy + step < oy1 ? oy + step : oy1, 0, phase_width (g) };
    b.rows = (b.oy1 - b.oy0 - 1) * g->s + g->k;
    fill_band (g, x, &b, scratch);
    kernel (g, &b, scratch, w, bias, out_c, y, act_a, act_b);
  }
}

void
ae_direct_conv (const conv_geom *g, int out_c, const float *w, const float *bias, float act_a,
                float act_b, const float *x, float *y, float *scratch)
{
  size_t in_plane = (size_t) g->h * g->w, out_plane = (size_t) g->oh * g->ow;
  for (int n = 0; n < g->n; n++) {
    rows_in xn = { x + n * in_plane, 0, g->n * in_plane, (size_t) g->w };
    rows_out yn = { y + n * out_plane, 0, g->n * out_plane, (size_t) g->ow };
    ae_direct_conv_rows (g, out_c, w, bias, act_a, act_b, &xn, &yn, 0, g->oh, scratch);
  }
}
