/* The loops of narrow.c, compiled once per vector width: the includer
 * defines VEC (floats per vector: 8 or 16), TILE (most output pixels per
 * tile: as many as leave the accumulators in registers) and KERNEL_ATTRS
 * (the target attributes); the names end in _v<VEC>. All three are
 * undefined at the end. */

#define NARROW_PASTE(name, vec) name##_v##vec
#define NARROW_NAME(name, vec) NARROW_PASTE (name, vec)
#define NARROW_VEC NARROW_NAME (narrow_vec, VEC)
#define NARROW_IVEC NARROW_NAME (narrow_ivec, VEC)
#define NARROW_TILE NARROW_NAME (narrow_tile, VEC)
#define NARROW_ROW_STEP NARROW_NAME (narrow_row_step, VEC)
#define NARROW_ROW NARROW_NAME (narrow_row, VEC)
#define NARROW_SWAP_BLOCKS NARROW_NAME (narrow_swap_blocks, VEC)
#define NARROW_TRANSPOSE NARROW_NAME (narrow_transpose, VEC)
#define NARROW_PLANES NARROW_NAME (narrow_planes, VEC)

typedef float NARROW_VEC __attribute__ ((vector_size (VEC * 4)));
typedef int NARROW_IVEC __attribute__ ((vector_size (VEC * 4)));

/* `tile` output pixels by ov vectors of output channels: every tap loads
 * its ov weight vectors once and multiplies them by each pixel's input
 * value. Pixel j of the tile reads src[j * step + off[t]]; its channels go
 * to dst + j * dst_stride, for the first `count` pixels. */
static inline __attribute__ ((always_inline)) void
NARROW_TILE (const float *src, int step, const int *off, int taps, const float *w, int ocp,
             const float *bias, int ov, int tile, float *dst, size_t dst_stride, int count)
{
  NARROW_VEC acc[TILE][2], b[2];
  for (int o = 0; o < ov; o++)
    memcpy (&b[o], bias + o * VEC, sizeof b[o]);
  for (int j = 0; j < tile; j++)
    for (int o = 0; o < ov; o++)
      acc[j][o] = b[o];
  for (int t = 0; t < taps; t++) {
    const float *x = src + off[t];
    NARROW_VEC wv[2];
    for (int o = 0; o < ov; o++)
      memcpy (&wv[o], w + (size_t) t * ocp + o * VEC, sizeof wv[o]);
    for (int j = 0; j < tile; j++) {
      float xv = x[j * step];
      for (int o = 0; o < ov; o++)
        acc[j][o] += xv * wv[o];
    }
  }
  for (int j = 0; j < count; j++)
    for (int o = 0; o < ov; o++)
      memcpy (dst + j * dst_stride + o * VEC, &acc[j][o], sizeof acc[j][o]);
}

/* One row of tiles: `pixels` outputs starting at src / dst, every output
 * channel block. Constant step, tile and ov after inlining. */
static inline __attribute__ ((always_inline)) void
NARROW_ROW_STEP (const float *src, int step, int tile, int dst_step, const int *off, int taps,
                 const float *w, int ocp, const float *bias, float *dst, int pixels)
{
  for (int x0 = 0; x0 < pixels; x0 += tile) {
    int count = pixels - x0 < tile ? pixels - x0 : tile;
    const float *s = src + (size_t) x0 * step;
    float *d = dst + (size_t) x0 * dst_step * ocp;
    size_t stride = (size_t) dst_step * ocp;
    int ob = 0;
    for (; ob + 2 * VEC <= ocp; ob += 2 * VEC)
      NARROW_TILE (s, step, off, taps, w + ob, ocp, bias + ob, 2, tile, d + ob, stride, count);
    if (ob < ocp)
      NARROW_TILE (s, step, off, taps, w + ob, ocp, bias + ob, 1, tile, d + ob, stride, count);
  }
}

/* Tiles of TILE - 1 where they leave fewer lanes idle (rows of 7 and 14,
 * at 28x28: 12.5 % fewer multiplies than tiles of 8). */
KERNEL_ATTRS __attribute__ ((optimize ("fp-contract=fast"))) static void
NARROW_ROW (const float *src, int step, int dst_step, const int *off, int taps, const float *w,
            int ocp, const float *bias, float *dst, int pixels)
{
  int t = TILE, t1 = TILE - 1;
  int shorter = (pixels + t1 - 1) / t1 * t1 < (pixels + t - 1) / t * t;
  if (step == 1 && shorter)
    NARROW_ROW_STEP (src, 1, TILE - 1, dst_step, off, taps, w, ocp, bias, dst, pixels);
  else if (step == 1)
    NARROW_ROW_STEP (src, 1, TILE, dst_step, off, taps, w, ocp, bias, dst, pixels);
  else if (step == 2 && shorter)
    NARROW_ROW_STEP (src, 2, TILE - 1, dst_step, off, taps, w, ocp, bias, dst, pixels);
  else if (step == 2)
    NARROW_ROW_STEP (src, 2, TILE, dst_step, off, taps, w, ocp, bias, dst, pixels);
  else
    NARROW_ROW_STEP (src, step, TILE, dst_step, off, taps, w, ocp, bias, dst, pixels);
}

/* One level of NARROW_TRANSPOSE: the two off-diagonal s x s blocks of
 * every 2s x 2s block swap. Unrolled, so the masks are constants. */
static inline __attribute__ ((always_inline)) void
NARROW_SWAP_BLOCKS (NARROW_VEC r[VEC], int s)
{
  NARROW_IVEC lo, hi; /* __builtin_shuffle: 0..VEC-1 pick from a, VEC.. from b */
#pragma GCC unroll 16
  for (int j = 0; j < VEC; j++) {
    lo[j] = j & s ? VEC + j - s : j;
    hi[j] = j & s ? VEC + j : j + s;
  }
#pragma GCC unroll 16
  for (int i = 0; i < VEC; i++)
    if (!(i & s)) {
      NARROW_VEC a = r[i], b = r[i + s];
      r[i] = __builtin_shuffle (a, b, lo);
      r[i + s] = __builtin_shuffle (a, b, hi);
    }
}

/* r[i][j] <-> r[j][i] for a VEC x VEC block. */
static inline __attribute__ ((always_inline)) void
NARROW_TRANSPOSE (NARROW_VEC r[VEC])
{
  if (VEC == 16)
    NARROW_SWAP_BLOCKS (r, 8);
  NARROW_SWAP_BLOCKS (r, 4);
  NARROW_SWAP_BLOCKS (r, 2);
  NARROW_SWAP_BLOCKS (r, 1);
}

/* y[o * ystride + i] = a * v + b * |v| for v = src[i * ocp + o], i < plane:
 * pixel-major to channel planes, VEC x VEC blocks transposed in registers. */
KERNEL_ATTRS static void
NARROW_PLANES (const float *src, int ocp, int out_c, size_t plane, size_t ystride, float act_a,
               float act_b, float *y)
{
  size_t i0 = 0;
  for (; i0 + VEC <= plane; i0 += VEC)
    for (int o0 = 0; o0 < out_c; o0 += VEC) {
      NARROW_VEC r[VEC];
#pragma GCC unroll 16
      for (int i = 0; i < VEC; i++) {
        memcpy (&r[i], src + (i0 + i) * ocp + o0, sizeof r[i]);
        NARROW_IVEC bits;
        memcpy (&bits, &r[i], sizeof bits);
        bits &= 0x7fffffff;
        NARROW_VEC magnitude;
        memcpy (&magnitude, &bits, sizeof magnitude);
        r[i] = act_a * r[i] + act_b * magnitude;
      }
      NARROW_TRANSPOSE (r);
      for (int o = 0; o < VEC && o0 + o < out_c; o++)
        memcpy (y + (size_t) (o0 + o) * ystride + i0, &r[o], sizeof r[o]);
    }
  for (size_t i = i0; i < plane; i++)
    for (int o = 0; o < out_c; o++) {
      float t = src[i * ocp + o];
      y[o * ystride + i] = act_a * t + act_b * fabsf (t);
    }
}

#undef NARROW_VEC
#undef NARROW_IVEC
#undef NARROW_TILE
#undef NARROW_ROW_STEP
#undef NARROW_ROW
#undef NARROW_SWAP_BLOCKS
#undef NARROW_TRANSPOSE
#undef NARROW_PLANES
#undef NARROW_NAME
#undef NARROW_PASTE
#undef VEC
#undef TILE
#undef KERNEL_ATTRS
