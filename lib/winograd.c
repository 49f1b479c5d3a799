/* 3x3 stride-1 "same" convolutions by Winograd's minimal filtering,
 * F(4x4, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional Neural
 * Networks", 2016): each 4x4 output tile of each channel pair costs 36
 * multiplications instead of 144, plus input, weight and output transforms
 * that are additions and multiplications by small constants.
 *
 * The direct kernels already run the 16-channel layers of the default
 * denoiser at about 80% of the cores' FMA peak, so fewer multiplications
 * is the remaining way to be faster: on one core, a 720p frame's two
 * layers went from 13.4 to 8.6 ms each (bands of 24 rows that stay in
 * cache: 11 to 5.4 ms per frame's worth). The element-wise stage is a
 * small matrix product per tile position (in_c x out_c), vectorised across
 * 8 or 16 neighbouring tiles; the weights are transformed once per session
 * (the caller keeps them, like narrow.c's packs).
 *
 * The transforms are exact in real arithmetic; in float they add a
 * rounding error a few times that of the plain sum (the tests bound it). */
#include "nn.h"
#include "simd.h"

#include <string.h>

/* Matrix products of the element-wise stage, output channels at a time. */
#define WINO_OC_STEP 4

/* Where Winograd pays: the input transform costs the same whatever out_c
 * is, yet even the denoiser's last layer (16 -> 4) ran 1.2-1.3x faster
 * than direct.c; with fewer channels the transforms dominate, and below a
 * vector of tiles per row most lanes idle. */
enum { WINO_MIN_IN_C = 4, WINO_MIN_OUT_C = 4, WINO_MIN_W = 64 };

static int
wino_ocp (const wino_geom *g)
{
  return (g->out_c + WINO_OC_STEP - 1) / WINO_OC_STEP * WINO_OC_STEP;
}

static inline int
wino_vec (const wino_geom *g)
{
  return g->vec != 8 && ae_have_avx512 () ? 16 : 8;
}

int
ae_wino_fits (const wino_geom *g)
{
  return g->in_c >= WINO_MIN_IN_C && g->out_c >= WINO_MIN_OUT_C && g->w >= WINO_MIN_W
         && g->h >= 1;
}

size_t
ae_wino_packed_floats (const wino_geom *g)
{
  return (size_t) 36 * g->in_c * wino_ocp (g);
}

size_t
ae_wino_scratch (const wino_geom *g)
{
  size_t vec = 16; /* the wider build's, whichever runs */
  return 36 * vec * ((size_t) g->in_c + wino_ocp (g)) + 7 * 5 * vec;
}

/* U = G g G^T of every channel pair, stored U[pos][ic][oc] (oc padded to
 * WINO_OC_STEP with zeros). Computed in double: the rounding of G's
 * sixths and twenty-fourths would otherwise add to the kernel's. */
void
ae_wino_pack (const wino_geom *g, const float *w, float *packed)
{
  static const double G[6][3] = {
    { 1.0 / 4, 0, 0 },
    { -1.0 / 6, -1.0 / 6, -1.0 / 6 },
    { -1.0 / 6, 1.0 / 6, -1.0 / 6 },
    { 1.0 / 24, 1.0 / 12, 1.0 / 6 },
    { 1.0 / 24, -1.0 / 12, 1.0 / 6 },
    { 0, 0, 1 },
  };
  int ocp = wino_ocp (g);
  memset (packed, 0, ae_wino_packed_floats (g) * sizeof (float));
  for (int oc = 0; oc < g->out_c; oc++)
    for (int ic = 0; ic < g->in_c; ic++) {
      const float *k = w + ((size_t) oc * g->in_c + ic) * 9;
      double gk[6][3]; /* G k */
      for (int r = 0; r < 6; r++)
        for (int c = 0; c < 3; c++)
          gk[r][c] = G[r][0] * k[c] + G[r][1] * k[3 + c] + G[r][2] * k[6 + c];
      for (int r = 0; r < 6; r++)
        for (int c = 0; c < 6; c++) {
          double u = gk[r][0] * G[c][0] + gk[r][1] * G[c][1] + gk[r][2] * G[c][2];
          packed[((size_t) (r * 6 + c) * g->in_c + ic) * ocp + oc] = (float) u;
        }
    }
}

/* Values [x0, x0 + span) of a row of width w, zero outside it, in buf. */
static const float *
wino_pad_row (const float *row, int w, int x0, int span, float *buf)
{
  for (int i = 0; i < span; i++) {
    int x = x0 + i;
    buf[i] = x >= 0 && x < w ? row[x] : 0.0f;
  }
  return buf;
}

#define VEC 8
#define KERNEL_ATTRS MULTIVERSION
#include "winograd_kernel.h"

#ifdef HAVE_AVX512_KERNEL
#define VEC 16
#define KERNEL_ATTRS AVX512_KERNEL
#include "winograd_kernel.h"
#endif

void
ae_wino_conv_rows (const wino_geom *g, const float *packed, const float *bias, float act_a,
                   float act_b, const rows_in *x, const rows_out *y, int y0, int y1,
                   float *scratch)
{
#ifdef HAVE_AVX512_KERNEL
  if (wino_vec (g) == 16) {
    wino_image_v16 (g, packed, bias, act_a, act_b, x, y, y0, y1, scratch);
    return;
  }
#endif
  wino_image_v8 (g, packed, bias, act_a, act_b, x, y, y0, y1, scratch);
}

void
ae_wino_conv (const wino_geom *g, const float *packed, const float *bias, float act_a,
              float act_b, const float *x, float *y, int n, float *scratch)
{
  size_t plane = (size_t) g->h * g->w, cs = (size_t) n * plane;
  for (int image = 0; image < n; image++) {
    rows_in xi = { x + (size_t) image * plane, 0, cs, (size_t) g->w };
    rows_out yi = { y + (size_t) image * plane, 0, cs, (size_t) g->w };
    ae_wino_conv_rows (g, packed, bias, act_a, act_b, &xi, &yi, 0, g->h, scratch);
  }
}
