/* Convolutions with the vector across output channels, image by image.
 *
 * At 28x28 (a Fashion-MNIST autoencoder) im2col + sgemm spends more time
 * copying and packing than multiplying, and direct.c's kernel, whose
 * vectors run along output rows, wastes most of each vector on rows of 7 or
 * 14 pixels. Here each output pixel accumulates, for every tap, its input
 * value (broadcast) times a vector of that tap's weights for 16 (AVX-512)
 * or 8 output channels; a tile of pixels shares each weight load. With 32
 * or more output channels this also beats direct.c on wide rows. The
 * weights are packed tap-major once (the caller keeps them: repacking costs
 * a third of a 28x28 layer's time), each image is copied once with its zero
 * border, and the pixel-major result is transposed back to channel planes
 * with the activation applied.
 *
 * A transposed convolution of stride s is s x s ordinary convolutions of
 * stride 1, one per output phase (oy + p, ox + p) mod s, each reading the
 * padded input with the taps of that phase: no zero-stuffing, no col2im. */
#include "nn.h"
#include "simd.h"

#include <math.h>
#include <string.h>

enum {
  NARROW_MAX_TAPS = 1024, /* per phase: the offset table lives on the stack */
  /* Output (phase) rows up to this wide run here whatever the channels... */
  NARROW_MAX_ROW = 32,
  /* ... and any rows with this many output channels (two vectors of 16:
   * each input value feeds 32 lanes). Measured at batch 1 on AVX-512: the
   * 32-64-channel layers of the fconv preset ran 1.4x faster here at 128
   * columns, while direct.c stays faster for the 16-channel denoiser at
   * 640 columns (38 against 46 ms per 720p frame on one core). */
  NARROW_WIDE_CHANNELS = 32,
};

/* Where everything lives for one geometry and vector width. */
typedef struct layout {
  int vec, tile;  /* floats per vector, output pixels per tile */
  int ocp;        /* out_c rounded up to whole vectors */
  int phases;     /* s * s transposed, else 1 */
  int nj;         /* taps per axis and phase: ceil (k / s) transposed, else k */
  int pad;        /* zero rows and columns before the input in its copy */
  int hp, wp;     /* the padded copy's rows and columns */
  int taps;       /* per phase */
  size_t w_floats, b_floats, x_floats, y_floats;
} layout;

static int
round_up (int v, int m)
{
  return (v + m - 1) / m * m;
}

static int
max_int (int a, int b)
{
  return a > b ? a : b;
}

/* Transposed: the outputs of column phase r are q = p + first_q .. in
 * steps of s (q = ox + p); their count, and q / s of the first. */
static int
phase_count (int out, int p, int s, int r, int *first_qx)
{
  int q0 = p + ((r - p % s) % s + s) % s;
  *first_qx = q0 / s;
  return q0 <= out - 1 + p ? (out - 1 + p - q0) / s + 1 : 0;
}

static layout
plan (const narrow_geom *g)
{
  layout L;
  int wide = g->vec != 8 && ae_have_avx512 ();
  L.vec = wide ? 16 : 8;
  L.tile = wide ? 8 : 4;
  L.ocp = round_up (g->out_c, L.vec);
  if (!g->transposed) {
    L.phases = 1;
    L.nj = g->k;
    L.pad = g->p;
    L.hp = g->in_h + 2 * g->p;
    L.wp = max_int (g->in_w + 2 * g->p, (round_up (g->out_w, L.tile) - 1) * g->s + g->k);
  } else {
    L.phases = g->s * g->s;
    L.nj = (g->k + g->s - 1) / g->s;
    L.pad = L.nj - 1;
    L.hp = max_int (g->in_h, (g->out_h - 1 + g->p) / g->s + 1) + L.pad;
    L.wp = g->in_w + L.pad;
    for (int r = 0; r < g->s; r++) {
      int qx0, n = phase_count (g->out_w, g->p, g->s, r, &qx0);
      L.wp = max_int (L.wp, qx0 + round_up (n, L.tile) + L.pad);
    }
  }
  L.taps = g->in_c * L.nj * L.nj;
  L.w_floats = (size_t) L.phases * L.taps * L.ocp;
  L.b_floats = (size_t) L.ocp;
  L.x_floats = (size_t) g->in_c * L.hp * L.wp;
  L.y_floats = (size_t) g->out_h * g->out_w * L.ocp;
  return L;
}

int
ae_narrow_fits (const narrow_geom *g)
{
  if (g->k < 1 || g->s < 1 || g->p < 0 || g->p >= g->k)
    return 0;
  layout L = plan (g);
  int row = g->transposed ? (g->out_w + g->s - 1) / g->s : g->out_w;
  /* Fewer channels than half a vector waste most of every FMA. */
  return (row <= NARROW_MAX_ROW || g->out_c >= NARROW_WIDE_CHANNELS) && L.taps <= NARROW_MAX_TAPS
         && 2 * g->out_c >= L.vec;
}

size_t
ae_narrow_packed_floats (const narrow_geom *g)
{
  return plan (g).w_floats;
}

size_t
ae_narrow_scratch (const narrow_geom *g)
{
  layout L = plan (g);
  return L.b_floats + L.x_floats + L.y_floats;
}

/* ---- Packing ----------------------------------------------------------------------- */

void
ae_narrow_pack (const narrow_geom *g, const float *w, float *packed)
{
  layout L = plan (g);
  int k = g->k, s = g->s;
  memset (packed, 0, L.w_floats * sizeof (float));
  for (int ph = 0; ph < L.phases; ph++)
    for (int ic = 0; ic < g->in_c; ic++)
      for (int jy = 0; jy < L.nj; jy++)
        for (int jx = 0; jx < L.nj; jx++) {
          float *dst = packed + ((size_t) ph * L.taps + (ic * L.nj + jy) * L.nj + jx) * L.ocp;
          int ky = g->transposed ? ph / s + s * jy : jy, kx = g->transposed ? ph % s + s * jx : jx;
          if (ky >= k || kx >= k)
            continue;
          for (int o = 0; o < g->out_c; o++)
            dst[o] = g->transposed ? w[(((size_t) ic * g->out_c + o) * k + ky) * k + kx]
                                   : w[(((size_t) o * g->in_c + ic) * k + ky) * k + kx];
        }
}

/* Input offsets of the taps within the padded copy (the same for every phase). */
static void
tap_offsets (const narrow_geom *g, const layout *L, int *off)
{
  for (int ic = 0; ic < g->in_c; ic++)
    for (int jy = 0; jy < L->nj; jy++)
      for (int jx = 0; jx < L->nj; jx++) {
        int dy = g->transposed ? L->pad - jy : jy, dx = g->transposed ? L->pad - jx : jx;
        off[(ic * L->nj + jy) * L->nj + jx] = (ic * L->hp + dy) * L->wp + dx;
      }
}

/* Image `image` of the batch of n in x (C, N, H, W), with its zero border. */
static void
pad_input (const narrow_geom *g, const layout *L, const float *x, int n, int image, float *xp)
{
  size_t plane = (size_t) g->in_h * g->in_w;
  memset (xp, 0, L->x_floats * sizeof (float));
  for (int ic = 0; ic < g->in_c; ic++) {
    const float *src = x + ((size_t) ic * n + image) * plane;
    for (int y = 0; y < g->in_h; y++)
      memcpy (xp + ((size_t) ic * L->hp + y + L->pad) * L->wp + L->pad, src + (size_t) y * g->in_w,
              (size_t) g->in_w * sizeof (float));
  }
}

/* ---- The kernels -------------------------------------------------------------------- */

#define VEC 8
#define TILE 4
#define KERNEL_ATTRS MULTIVERSION
#include "narrow_kernel.h"

#ifdef HAVE_AVX512_KERNEL
#define VEC 16
#define TILE 8
#define KERNEL_ATTRS AVX512_KERNEL
#include "narrow_kernel.h"
#endif

typedef void (*row_fn) (const float *src, int step, int dst_step, const int *off, int taps,
                        const float *w, int ocp, const float *bias, float *dst, int pixels);
typedef void (*planes_fn) (const float *src, int ocp, int out_c, size_t plane, size_t ystride,
                           float act_a, float act_b, float *y);

static void
run_conv (const narrow_geom *g, const layout *L, row_fn row, const int *off, const float *wp,
          const float *bias, const float *xp, float *v)
{
  for (int oy = 0; oy < g->out_h; oy++)
    row (xp + (size_t) oy * g->s * L->wp, g->s, 1, off, L->taps, wp, L->ocp, bias,
         v + (size_t) oy * g->out_w * L->ocp, g->out_w);
}

/* Phase (ry, rx) holds the outputs with (oy + p, ox + p) = (ry, rx) mod s;
 * output (oy, ox) reads padded input row (oy + p) / s, column (ox + p) / s,
 * minus the tap's (jy, jx) (folded into the offsets). */
static void
run_transposed (const narrow_geom *g, const layout *L, row_fn row, const int *off,
                const float *wp, const float *bias, const float *xp, float *v)
{
  int s = g->s;
  for (int ry = 0; ry < s; ry++)
    for (int rx = 0; rx < s; rx++) {
      const float *w = wp + (size_t) (ry * s + rx) * L->taps * L->ocp;
      int qx0, count = phase_count (g->out_w, g->p, s, rx, &qx0), ox0 = qx0 * s + rx - g->p;
      for (int oy = 0; oy < g->out_h; oy++) {
        if ((oy + g->p) % s != ry || count == 0)
          continue;
        int qy = (oy + g->p) / s;
        row (xp + (size_t) qy * L->wp + qx0, 1, s, off, L->taps, w, L->ocp, bias,
             v + ((size_t) oy * g->out_w + ox0) * L->ocp, count);
      }
    }
}

void
ae_narrow_conv (const narrow_geom *g, const float *packed, const float *bias, float act_a,
                float act_b, const float *x, float *y, int n, float *scratch)
{
  layout L = plan (g);
  int off[NARROW_MAX_TAPS];
  float *bp = scratch, *xp = bp + L.b_floats, *v = xp + L.x_floats;
  size_t out_plane = (size_t) g->out_h * g->out_w;
  row_fn row = narrow_row_v8;
  planes_fn planes = narrow_planes_v8;
#ifdef HAVE_AVX512_KERNEL
  if (L.vec == 16) {
    row = narrow_row_v16;
    planes = narrow_planes_v16;
  }
#endif
  memset (bp, 0, L.b_floats * sizeof (float));
  if (bias)
    memcpy (bp, bias, (size_t) g->out_c * sizeof (float));
  tap_offsets (g, &L, off);
  for (int image = 0; image < n; image++) {
    pad_input (g, &L, x, n, image, xp);
    if (g->transposed)
      run_transposed (g, &L, row, off, packed, bp, xp, v);
    else
      run_conv (g, &L, row, off, packed, bp, xp, v);
    planes (v, L.ocp, g->out_c, out_plane, (size_t) n * out_plane, act_a, act_b,
            y + (size_t) image * out_plane);
  }
}
