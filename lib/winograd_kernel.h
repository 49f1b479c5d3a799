/* The loops of winograd.c, compiled once per vector width: the includer
 * defines VEC (floats per vector, 8 or 16: that many tiles side by side)
 * and KERNEL_ATTRS (the target attributes); the names end in _v<VEC>. Both
 * are undefined at the end.
 *
 * Every vector holds one value of VEC neighbouring 4x4 output tiles, so
 * the transforms are plain vector arithmetic, and only the edges of the
 * tile row (4 * VEC columns, split by column mod 4 and merged again) need
 * shuffles. */

#define WINO_PASTE(name, vec) name##_v##vec
#define WINO_NAME(name, vec) WINO_PASTE (name, vec)
#define WINO_VEC WINO_NAME (wino_vec, VEC)
#define WINO_IVEC WINO_NAME (wino_ivec, VEC)
#define WINO_BT6 WINO_NAME (wino_bt6, VEC)
#define WINO_AT6 WINO_NAME (wino_at6, VEC)
#define WINO_SPLIT WINO_NAME (wino_split, VEC)
#define WINO_MERGE WINO_NAME (wino_merge, VEC)
#define WINO_INPUT WINO_NAME (wino_input, VEC)
#define WINO_PRODUCTS WINO_NAME (wino_products, VEC)
#define WINO_OUTPUT WINO_NAME (wino_output, VEC)
#define WINO_IMAGE WINO_NAME (wino_image, VEC)

typedef float WINO_VEC __attribute__ ((vector_size (VEC * 4)));
typedef int WINO_IVEC __attribute__ ((vector_size (VEC * 4)));

#if VEC == 16
#define WINO_EVEN { 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30 }
#define WINO_ODD { 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31 }
#define WINO_NEXT0 { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 }
#define WINO_NEXT1 { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17 }
#define WINO_ZIP_LO { 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23 }
#define WINO_ZIP_HI { 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31 }
#define WINO_PAIRS_LO { 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23 }
#define WINO_PAIRS_HI { 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31 }
#else
#define WINO_EVEN { 0, 2, 4, 6, 8, 10, 12, 14 }
#define WINO_ODD { 1, 3, 5, 7, 9, 11, 13, 15 }
#define WINO_NEXT0 { 1, 2, 3, 4, 5, 6, 7, 8 }
#define WINO_NEXT1 { 1, 2, 3, 4, 5, 6, 7, 9 }
#define WINO_ZIP_LO { 0, 8, 1, 9, 2, 10, 3, 11 }
#define WINO_ZIP_HI { 4, 12, 5, 13, 6, 14, 7, 15 }
#define WINO_PAIRS_LO { 0, 1, 8, 9, 2, 3, 10, 11 }
#define WINO_PAIRS_HI { 4, 5, 12, 13, 6, 7, 14, 15 }
#endif

/* v = B^T d for F(4x4, 3x3) (Lavin and Gray), along one axis. */
static inline __attribute__ ((always_inline)) void
WINO_BT6 (const WINO_VEC *d, WINO_VEC *v)
{
  WINO_VEC d42 = d[4] - d[2], d31 = d[3] - d[1];
  v[0] = 4.0f * d[0] - 5.0f * d[2] + d[4];
  v[1] = (d[3] + d[4]) - 4.0f * (d[1] + d[2]);
  v[2] = (d[4] - d[3]) + 4.0f * (d[1] - d[2]);
  v[3] = d42 + 2.0f * d31;
  v[4] = d42 - 2.0f * d31;
  v[5] = 4.0f * d[1] - 5.0f * d[3] + d[5];
}

/* y = A^T m, six values to four outputs along one axis. */
static inline __attribute__ ((always_inline)) void
WINO_AT6 (const WINO_VEC *m, WINO_VEC *y)
{
  WINO_VEC s12 = m[1] + m[2], d12 = m[1] - m[2], s34 = m[3] + m[4], d34 = m[3] - m[4];
  y[0] = m[0] + s12 + s34;
  y[1] = d12 + 2.0f * d34;
  y[2] = s12 + 4.0f * s34;
  y[3] = d12 + 8.0f * d34 + m[5];
}

/* The 4 * VEC + 2 values z[0..4] (the fifth vector's first two count)
 * as the six columns of VEC tiles: p[j][t] = value 4t + j. */
static inline __attribute__ ((always_inline)) void
WINO_SPLIT (const WINO_VEC *z, WINO_VEC *p)
{
  const WINO_IVEC even = WINO_EVEN, odd = WINO_ODD, next0 = WINO_NEXT0, next1 = WINO_NEXT1;
  WINO_VEC e01 = __builtin_shuffle (z[0], z[1], even), o01 = __builtin_shuffle (z[0], z[1], odd);
  WINO_VEC e23 = __builtin_shuffle (z[2], z[3], even), o23 = __builtin_shuffle (z[2], z[3], odd);
  p[0] = __builtin_shuffle (e01, e23, even);
  p[2] = __builtin_shuffle (e01, e23, odd);
  p[1] = __builtin_shuffle (o01, o23, even);
  p[3] = __builtin_shuffle (o01, o23, odd);
  p[4] = __builtin_shuffle (p[0], z[4], next0);
  p[5] = __builtin_shuffle (p[1], z[4], next1);
}

/* The inverse for four outputs a tile: row[4t + j] = y[j][t]. */
static inline __attribute__ ((always_inline)) void
WINO_MERGE (const WINO_VEC *y, WINO_VEC *row)
{
  const WINO_IVEC zip_lo = WINO_ZIP_LO, zip_hi = WINO_ZIP_HI;
  const WINO_IVEC pairs_lo = WINO_PAIRS_LO, pairs_hi = WINO_PAIRS_HI;
  WINO_VEC lo01 = __builtin_shuffle (y[0], y[1], zip_lo), hi01 = __builtin_shuffle (y[0], y[1], zip_hi);
  WINO_VEC lo23 = __builtin_shuffle (y[2], y[3], zip_lo), hi23 = __builtin_shuffle (y[2], y[3], zip_hi);
  row[0] = __builtin_shuffle (lo01, lo23, pairs_lo);
  row[1] = __builtin_shuffle (lo01, lo23, pairs_hi);
  row[2] = __builtin_shuffle (hi01, hi23, pairs_lo);
  row[3] = __builtin_shuffle (hi01, hi23, pairs_hi);
}

/* V[ic][pos] of one channel ic, its 36 vectors in a row, for the VEC tiles
 * whose input window starts at rows[j] (six rows, 5 * VEC floats readable
 * each). Channel-major like M: position-major, a channel's 36 stores went
 * 1 KiB apart into 4 of L1's 64 sets, and a 16 -> 16 layer took 10 % longer
 * (16 -> 4, whose products are few, 25 %). */
static inline __attribute__ ((always_inline)) void
WINO_INPUT (const float *const *rows, float *v)
{
  WINO_VEC z[6][5];
  for (int k = 0; k < 5; k++) {
    WINO_VEC d[6], t[6];
    for (int j = 0; j < 6; j++)
      memcpy (&d[j], rows[j] + k * VEC, sizeof d[j]);
    WINO_BT6 (d, t);
    for (int r = 0; r < 6; r++)
      z[r][k] = t[r];
  }
  for (int r = 0; r < 6; r++) {
    WINO_VEC p[6], t[6];
    WINO_SPLIT (z[r], p);
    WINO_BT6 (p, t);
    for (int c = 0; c < 6; c++)
      memcpy (v + (size_t) (r * 6 + c) * VEC, &t[c], sizeof t[c]);
  }
}

/* M[oc][pos] for oc in [ob, ob + OB): the sum over ic of V[ic][pos] * U[pos][ic][oc].
 * (M is oc-major so the output transform reads each channel's 36 vectors
 * in a row: position-major, they were 1 KiB apart and thrashed L1 sets.) */
#define WINO_PRODUCT_BLOCK_OF(OB)                                                            \
  static inline __attribute__ ((always_inline)) void WINO_NAME (wino_product_##OB, VEC) (   \
      const float *v, const float *u, int in_c, int ocp, float *m)                          \
  {                                                                                          \
    WINO_VEC acc[OB];                                                                        \
    for (int o = 0; o < OB; o++)                                                             \
      acc[o] = (WINO_VEC) { 0 };                                                             \
    for (int ic = 0; ic < in_c; ic++) {                                                      \
      WINO_VEC x;                                                                            \
      memcpy (&x, v + (size_t) ic * 36 * VEC, sizeof x);                                     \
      const float *w = u + (size_t) ic * ocp;                                                \
      for (int o = 0; o < OB; o++)                                                           \
        acc[o] += x * w[o];                                                                  \
    }                                                                                        \
    for (int o = 0; o < OB; o++)                                                             \
      memcpy (m + (size_t) o * 36 * VEC, &acc[o], sizeof acc[o]);                            \
  }
WINO_PRODUCT_BLOCK_OF (4)
WINO_PRODUCT_BLOCK_OF (8)
#if VEC == 16
WINO_PRODUCT_BLOCK_OF (16)
#endif

/* The 36 element-wise products, as in_c x ocp matrix products per position:
 * output channels in blocks as wide as the registers hold. */
static inline __attribute__ ((always_inline)) void
WINO_PRODUCTS (const float *v, const float *u, int in_c, int ocp, float *m)
{
  for (int pos = 0; pos < 36; pos++) {
    const float *vp = v + (size_t) pos * VEC, *up = u + (size_t) pos * in_c * ocp;
    float *mp = m + (size_t) pos * VEC;
    int ob = 0;
#if VEC == 16
    for (; ob + 16 <= ocp; ob += 16)
      WINO_NAME (wino_product_16, VEC) (vp, up + ob, in_c, ocp, mp + (size_t) ob * 36 * VEC);
#endif
    for (; ob + 8 <= ocp; ob += 8)
      WINO_NAME (wino_product_8, VEC) (vp, up + ob, in_c, ocp, mp + (size_t) ob * 36 * VEC);
    for (; ob < ocp; ob += 4)
      WINO_NAME (wino_product_4, VEC) (vp, up + ob, in_c, ocp, mp + (size_t) ob * 36 * VEC);
  }
}

/* Output channel oc of the VEC tiles: A^T M A, bias, activation, merged
 * back into rows of the plane `dst`, `rs` floats apart (rows, cols: how
 * many of the tiles' 4 x 4 VEC outputs lie inside it). */
static inline __attribute__ ((always_inline)) void
WINO_OUTPUT (const float *m, size_t pos_stride, float bias, float act_a, float act_b, float *dst,
             size_t rs, int rows, int cols)
{
  WINO_VEC t[4][6];
  for (int c = 0; c < 6; c++) {
    WINO_VEC col[6], y[4];
    for (int r = 0; r < 6; r++)
      memcpy (&col[r], m + (size_t) (r * 6 + c) * pos_stride, sizeof col[r]);
    WINO_AT6 (col, y);
    for (int i = 0; i < 4; i++)
      t[i][c] = y[i];
  }
  for (int i = 0; i < rows; i++) {
    WINO_VEC y[4], row[4];
    WINO_AT6 (t[i], y);
    for (int j = 0; j < 4; j++) {
      WINO_VEC v = y[j] + bias;
      WINO_VEC mag = (WINO_VEC) ((WINO_IVEC) v & 0x7fffffff);
      y[j] = act_a * v + act_b * mag;
    }
    WINO_MERGE (y, row);
    float *out = dst + (size_t) i * rs;
    if (cols == 4 * VEC)
      memcpy (out, row, sizeof row);
    else
      memcpy (out, row, (size_t) cols * sizeof (float));
  }
}

/* Output rows [r0, r1) of one image, tiles starting at r0. */
KERNEL_ATTRS __attribute__ ((optimize ("fp-contract=fast"))) static void
WINO_IMAGE (const wino_geom *g, const float *u, const float *bias, float act_a, float act_b,
            const rows_in *x, const rows_out *y, int r0, int r1, float *scratch)
{
  const int h = g->h, w = g->w, span = 5 * VEC;
  int ocp = wino_ocp (g);
  float *v = scratch, *m = v + (size_t) 36 * g->in_c * VEC;
  float *window = m + (size_t) 36 * ocp * VEC, *zero = window + 6 * span;
  memset (zero, 0, span * sizeof (float));
  for (int y0 = r0; y0 < r1; y0 += 4) {
    int rows = r1 - y0 < 4 ? r1 - y0 : 4;
    for (int x0 = 0; x0 < w; x0 += 4 * VEC) {
      int cols = w - x0 < 4 * VEC ? w - x0 : 4 * VEC;
      int inside = x0 >= 1 && x0 - 1 + span <= w;
      for (int ic = 0; ic < g->in_c; ic++) {
        const float *src[6];
        for (int j = 0; j < 6; j++) {
          int yy = y0 - 1 + j;
          /* Zero padding, and below a partial tile's rows (which the caller
           * may not hold: its outputs would not read them). */
          if (yy < 0 || yy >= h || j > rows + 1) {
            src[j] = zero;
            continue;
          }
          const float *row = x->data + ic * x->cs + (size_t) (yy - x->first) * x->rs;
          src[j] = inside ? row + x0 - 1 : wino_pad_row (row, w, x0 - 1, span, window + j * span);
        }
        WINO_INPUT (src, v + (size_t) ic * 36 * VEC);
      }
      WINO_PRODUCTS (v, u, g->in_c, ocp, m);
      for (int oc = 0; oc < g->out_c; oc++)
        WINO_OUTPUT (m + (size_t) oc * 36 * VEC, VEC, bias ? bias[oc] : 0.0f, act_a, act_b,
                     y->data + oc * y->cs + (size_t) (y0 - y->first) * y->rs + x0, y->rs, rows,
                     cols);
    }
  }
}

#undef WINO_EVEN
#undef WINO_ODD
#undef WINO_NEXT0
#undef WINO_NEXT1
#undef WINO_ZIP_LO
#undef WINO_ZIP_HI
#undef WINO_PAIRS_LO
#undef WINO_PAIRS_HI
#undef WINO_PRODUCT_BLOCK_OF
#undef WINO_PASTE
#undef WINO_NAME
#undef WINO_VEC
#undef WINO_IVEC
#undef WINO_BT6
#undef WINO_AT6
#undef WINO_SPLIT
#undef WINO_MERGE
#undef WINO_INPUT
#undef WINO_PRODUCTS
#undef WINO_OUTPUT
#undef WINO_IMAGE
#undef VEC
#undef KERNEL_ATTRS
