/* The convolution kernel of direct.c, compiled once per vector width:
 * the includer defines BAND_KERNEL (the function's name), VEC (floats per
 * vector), KERNEL_OC (output channels per tile: as many as leave the
 * accumulators in registers) and KERNEL_ATTRS (its target attributes). A
 * tile is KERNEL_OC output channels by 2 * VEC output columns; each input
 * vector is loaded once per tap and used for all KERNEL_OC channels. */

typedef float KERNEL_VEC __attribute__ ((vector_size (VEC * 4)));
typedef int KERNEL_IVEC __attribute__ ((vector_size (VEC * 4)));

/* Inlined with constant k and s for the common geometries, so the tap
 * loops unroll and the phase arithmetic folds away. */
static inline __attribute__ ((always_inline)) void
KERNEL_TILE (const conv_geom *g, const band *b, const float *bandp, const float *w,
             const float *bias, int oc, int noc, int oy, int x0, int k, int s, float act_a,
             float act_b, float out[KERNEL_OC][2 * VEC])
{
  const int kk = k * k;
  const size_t ocstride = (size_t) g->c * kk;
  KERNEL_VEC acc[KERNEL_OC][2];
  for (int o = 0; o < KERNEL_OC; o++)
    acc[o][0] = acc[o][1] = (KERNEL_VEC) { 0 } + (o < noc ? bias[oc + o] : 0.0f);
  for (int ic = 0; ic < g->c; ic++) {
    const float *wk = w + ((size_t) oc * g->c + ic) * kk;
    for (int ky = 0; ky < k; ky++) {
      const float *base = bandp + ((size_t) ic * b->rows + (size_t) (oy - b->oy0) * s + ky) * s
                                      * b->pw + x0;
      for (int kx = 0; kx < k; kx++) {
        const float *p = base + (kx % s) * b->pw + kx / s;
        KERNEL_VEC a0, a1; /* memcpy: unaligned loads */
        memcpy (&a0, p, sizeof a0);
        memcpy (&a1, p + VEC, sizeof a1);
        for (int o = 0; o < KERNEL_OC; o++) {
          if (o < noc) {
            float wv = wk[o * ocstride + ky * k + kx];
            acc[o][0] += a0 * wv;
            acc[o][1] += a1 * wv;
          }
        }
      }
    }
  }
  for (int o = 0; o < noc; o++) {
    for (int h = 0; h < 2; h++) { /* activation a*y + b*|y| (see act_forward) */
      KERNEL_IVEC bits;
      memcpy (&bits, &acc[o][h], sizeof bits);
      bits &= 0x7fffffff;
      KERNEL_VEC magnitude;
      memcpy (&magnitude, &bits, sizeof magnitude);
      acc[o][h] = act_a * acc[o][h] + act_b * magnitude;
    }
    memcpy (out[o], &acc[o][0], sizeof acc[o][0]);
    memcpy (out[o] + VEC, &acc[o][1], sizeof acc[o][1]);
  }
}

static inline __attribute__ ((always_inline)) void
KERNEL_TILES (const conv_geom *g, const band *b, const float *bandp, const float *w,
              const float *bias, int out_c, int n, float *y, int k, int s, float act_a,
              float act_b)
{
  float out[KERNEL_OC][2 * VEC];
  for (int oc = 0; oc < out_c; oc += KERNEL_OC) {
    int noc = out_c - oc < KERNEL_OC ? out_c - oc : KERNEL_OC;
    for (int oy = b->oy0; oy < b->oy1; oy++)
      for (int x0 = 0; x0 < g->ow; x0 += 2 * VEC) {
        if (noc == KERNEL_OC)
          KERNEL_TILE (g, b, bandp, w, bias, oc, KERNEL_OC, oy, x0, k, s, act_a, act_b, out);
        else
          KERNEL_TILE (g, b, bandp, w, bias, oc, noc, oy, x0, k, s, act_a, act_b, out);
        int len = g->ow - x0 < 2 * VEC ? g->ow - x0 : 2 * VEC;
        for (int o = 0; o < noc; o++)
          memcpy (y + (((size_t) (oc + o) * g->n + n) * g->oh + oy) * g->ow + x0, out[o],
                  (size_t) len * sizeof (float));
      }
  }
}

KERNEL_ATTRS __attribute__ ((optimize ("fp-contract=fast"))) static void
BAND_KERNEL (const conv_geom *g, const band *b, const float *bandp, const float *w,
             const float *bias, int out_c, int n, float *y, float act_a, float act_b)
{
  if (g->k == 3 && g->s == 1)
    KERNEL_TILES (g, b, bandp, w, bias, out_c, n, y, 3, 1, act_a, act_b);
  else if (g->k == 3 && g->s == 2)
    KERNEL_TILES (g, b, bandp, w, bias, out_c, n, y, 3, 2, act_a, act_b);
  else if (g->k == 4 && g->s == 2)
    KERNEL_TILES (g, b, bandp, w, bias, out_c, n, y, 4, 2, act_a, act_b);
  else
    KERNEL_TILES (g, b, bandp, w, bias, out_c, n, y, g->k, g->s, act_a, act_b);
}

#undef KERNEL_VEC
#undef KERNEL_IVEC
#undef KERNEL_TILE
#undef KERNEL_TILES
