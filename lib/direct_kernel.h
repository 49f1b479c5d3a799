/* The convolution kernel of direct.c, compiled once per vector width:
 * the includer defines BAND_KERNEL (the function's name), VEC (floats per
 * vector), KERNEL_OC (output channels per tile: as many as leave the
 * accumulators in registers) and KERNEL_ATTRS (its target attributes). A
 * tile is KERNEL_OC output channels by KERNEL_XV * VEC output columns; each input
 * vector is loaded once per tap and used for all KERNEL_OC channels. */

_Static_assert (KERNEL_XV * VEC <= TILE_X_MAX, "tiles wider than the bands are padded for");

typedef float KERNEL_VEC __attribute__ ((vector_size (VEC * 4)));
typedef int KERNEL_IVEC __attribute__ ((vector_size (VEC * 4)));

/* Inlined with constant k and s for the common geometries, so the tap
 * loops unroll and the phase arithmetic folds away. Tap (ic, ky, kx) of
 * the tile's first column is at win->src + ic * win->ch + ky * win->row +
 * (kx % s) * win->phase + kx / s. */
static inline __attribute__ ((always_inline)) void
KERNEL_TILE (const conv_geom *g, const window *win, const float *w, const float *bias, int oc,
             int noc, int k, int s, float act_a, float act_b, float out[KERNEL_OC][KERNEL_XV * VEC])
{
  const int kk = k * k;
  const size_t ocstride = (size_t) g->c * kk;
  KERNEL_VEC acc[KERNEL_OC][KERNEL_XV];
  for (int o = 0; o < KERNEL_OC; o++)
    for (int v = 0; v < KERNEL_XV; v++)
      acc[o][v] = (KERNEL_VEC) { 0 } + (o < noc ? bias[oc + o] : 0.0f);
  for (int ic = 0; ic < g->c; ic++) {
    const float *wk = w + ((size_t) oc * g->c + ic) * kk;
    for (int ky = 0; ky < k; ky++) {
      const float *base = win->src + ic * win->ch + ky * win->row;
      for (int kx = 0; kx < k; kx++) {
        const float *p = base + (kx % s) * win->phase + kx / s;
        KERNEL_VEC a[KERNEL_XV];
        for (int v = 0; v < KERNEL_XV; v++)
          memcpy (&a[v], p + v * VEC, sizeof a[v]); /* unaligned loads */
        for (int o = 0; o < KERNEL_OC; o++) {
          if (o < noc) {
            float wv = wk[o * ocstride + ky * k + kx];
            for (int v = 0; v < KERNEL_XV; v++)
              acc[o][v] += a[v] * wv;
          }
        }
      }
    }
  }
  for (int o = 0; o < noc; o++) {
    for (int h = 0; h < KERNEL_XV; h++) { /* activation a*y + b*|y| (see act_forward) */
      KERNEL_IVEC bits;
      memcpy (&bits, &acc[o][h], sizeof bits);
      bits &= 0x7fffffff;
      KERNEL_VEC magnitude;
      memcpy (&magnitude, &bits, sizeof magnitude);
      acc[o][h] = act_a * acc[o][h] + act_b * magnitude;
    }
    for (int v = 0; v < KERNEL_XV; v++)
      memcpy (out[o] + v * VEC, &acc[o][v], sizeof acc[o][v]);
  }
}

/* All output channels of one tile position, stored into y. */
static inline __attribute__ ((always_inline)) void
KERNEL_COLUMN (const conv_geom *g, const window *win, const float *w, const float *bias,
               int out_c, const rows_out *y, int oy, int x0, int k, int s, float act_a,
               float act_b)
{
  float out[KERNEL_OC][KERNEL_XV * VEC];
  int len = g->ow - x0 < KERNEL_XV * VEC ? g->ow - x0 : KERNEL_XV * VEC;
  for (int oc = 0; oc < out_c; oc += KERNEL_OC) {
    int noc = out_c - oc < KERNEL_OC ? out_c - oc : KERNEL_OC;
    if (noc == KERNEL_OC)
      KERNEL_TILE (g, win, w, bias, oc, KERNEL_OC, k, s, act_a, act_b, out);
    else
      KERNEL_TILE (g, win, w, bias, oc, noc, k, s, act_a, act_b, out);
    for (int o = 0; o < noc; o++) {
      float *dst = y->data + (oc + o) * y->cs + (size_t) (oy - y->first) * y->rs + x0;
      if (len == KERNEL_XV * VEC) /* a fixed size: vector stores, not a call */
        memcpy (dst, out[o], sizeof out[o]);
      else
        memcpy (dst, out[o], (size_t) len * sizeof (float));
    }
  }
}

/* Stride 1, output rows [oy0, oy1): tiles whose window lies inside the
 * image read it in place; the others read a zero-padded copy of their window. */
static inline __attribute__ ((always_inline)) void
KERNEL_ROWS (const conv_geom *g, const rows_in *x, const float *w, const float *bias, int out_c,
             const rows_out *y, int oy0, int oy1, float *scratch, int k, float act_a,
             float act_b)
{
  const int span = KERNEL_XV * VEC + k - 1;
  for (int oy = oy0; oy < oy1; oy++) {
    int iy = oy - g->p;
    int rows_inside = iy >= 0 && iy + k <= g->h;
    for (int x0 = 0; x0 < g->ow; x0 += KERNEL_XV * VEC) {
      int ix = x0 - g->p;
      window win;
      if (rows_inside && ix >= 0 && ix + span <= g->w) {
        win = (window) { x->data + (size_t) (iy - x->first) * x->rs + ix, x->cs, x->rs, 0 };
      } else {
        fill_window (g, x, iy, ix, k, span, scratch);
        win = (window) { scratch, (size_t) k * span, (size_t) span, 0 };
      }
      KERNEL_COLUMN (g, &win, w, bias, out_c, y, oy, x0, k, 1, act_a, act_b);
    }
  }
}

static inline __attribute__ ((always_inline)) void
KERNEL_BAND_TILES (const conv_geom *g, const band *b, const float *bandp, const float *w,
                   const float *bias, int out_c, const rows_out *y, int k, int s, float act_a,
                   float act_b)
{
  size_t pw = (size_t) b->pw;
  for (int oy = b->oy0; oy < b->oy1; oy++)
    for (int x0 = 0; x0 < g->ow; x0 += KERNEL_XV * VEC) {
      window win = { bandp + (size_t) (oy - b->oy0) * s * s * pw + x0,
                     (size_t) b->rows * s * pw, s * pw, pw };
      KERNEL_COLUMN (g, &win, w, bias, out_c, y, oy, x0, k, s, act_a, act_b);
    }
}

KERNEL_ATTRS __attribute__ ((optimize ("fp-contract=fast"))) static void
ROW_KERNEL (const conv_geom *g, const rows_in *x, const float *w, const float *bias, int out_c,
            const rows_out *y, int oy0, int oy1, float *scratch, float act_a, float act_b)
{
  if (g->k == 3)
    KERNEL_ROWS (g, x, w, bias, out_c, y, oy0, oy1, scratch, 3, act_a, act_b);
  else if (g->k == 5)
    KERNEL_ROWS (g, x, w, bias, out_c, y, oy0, oy1, scratch, 5, act_a, act_b);
  else
    KERNEL_ROWS (g, x, w, bias, out_c, y, oy0, oy1, scratch, g->k, act_a, act_b);
}

KERNEL_ATTRS __attribute__ ((optimize ("fp-contract=fast"))) static void
BAND_KERNEL (const conv_geom *g, const band *b, const float *bandp, const float *w,
             const float *bias, int out_c, const rows_out *y, float act_a, float act_b)
{
  if (g->k == 3 && g->s == 2)
    KERNEL_BAND_TILES (g, b, bandp, w, bias, out_c, y, 3, 2, act_a, act_b);
  else if (g->k == 4 && g->s == 2)
    KERNEL_BAND_TILES (g, b, bandp, w, bias, out_c, y, 4, 2, act_a, act_b);
  else
    KERNEL_BAND_TILES (g, b, bandp, w, bias, out_c, y, g->k, g->s, act_a, act_b);
}

#undef KERNEL_VEC
#undef KERNEL_IVEC
#undef KERNEL_TILE
#undef KERNEL_COLUMN
#undef KERNEL_ROWS
#undef KERNEL_BAND_TILES
