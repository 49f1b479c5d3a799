/* Forward and backward passes of each layer kind on CNHW batches. The
 * activation that follows a layer is applied by the caller (session.c),
 * which also turns the gradient w.r.t. the activated output into the
 * gradient w.r.t. the pre-activation before calling layer_backward. */
#include "nn.h"
#include "simd.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

static size_t
plane_of (const int s[3])
{
  return (size_t) s[1] * s[2];
}

/* ---- Activations -------------------------------------------------------------- */

/* (Leaky) ReLU as a*y + b*|y|: any form with a select lets the compiler
 * turn the in-place update into a conditional store, whose branch random
 * signs mispredict and which does not vectorise. Exact for ReLU (halving
 * is exact); within one rounding of alpha*y or y for leaky ReLU. */
int
act_as_abs_form (ae_act act, float alpha, float *a, float *b)
{
  switch (act) {
  case AE_ACT_LINEAR:
    *a = 1.0f;
    *b = 0.0f;
    return 1;
  case AE_ACT_RELU:
    *a = *b = 0.5f;
    return 1;
  case AE_ACT_LRELU:
    *a = 0.5f * (1.0f + alpha);
    *b = 0.5f * (1.0f - alpha);
    return 1;
  default:
    return 0;
  }
}

typedef float vec8 __attribute__ ((vector_size (32)));
typedef int32_t ivec8 __attribute__ ((vector_size (32)));

/* 1 / (1 + e^-y), 8 values at a time, e^x by Cephes' expf polynomial on
 * x - n ln 2 (within 2 ulp of expf) scaled by 2^n in the exponent bits: a
 * loop calling expf runs one value at a time (the denoiser's output
 * sigmoid took a tenth of a 720p frame's time). */
static MULTIVERSION void
sigmoid_inplace (float *y, size_t n)
{
  const float round = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
  const vec8 lo = (vec8) { 0 } - 87.0f, hi = (vec8) { 0 } + 88.0f;
  for (size_t i = 0; i < n; i += 8) {
    vec8 x = { 0 };
    size_t count = n - i < 8 ? n - i : 8;
    if (count == 8) /* a fixed size: a plain load, not a call */
      memcpy (&x, y + i, sizeof x);
    else
      memcpy (&x, y + i, count * sizeof (float));
    x = -x;
    ivec8 low = x < lo, high = x > hi; /* clamped: e^x stays a normal float */
    x = (vec8) (((ivec8) x & ~(low | high)) | ((ivec8) lo & low) | ((ivec8) hi & high));
    vec8 k = (x * 1.44269504088896341f + round) - round;
    vec8 r = x - k * 0.693359375f - k * -2.12194440e-4f; /* ln 2 in two parts */
    vec8 p = r * 1.9875691500e-4f + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    ivec8 scale = (__builtin_convertvector (k, ivec8) + 127) << 23;
    x = 1.0f / (1.0f + p * (vec8) scale);
    if (count == 8)
      memcpy (y + i, &x, sizeof x);
    else
      memcpy (y + i, &x, count * sizeof (float));
  }
}

void
act_forward (ae_act act, float alpha, float *y, size_t n)
{
  float a, b;
  switch (act) {
  case AE_ACT_RELU:
  case AE_ACT_LRELU:
    act_as_abs_form (act, alpha, &a, &b);
    for (size_t i = 0; i < n; i++)
      y[i] = a * y[i] + b * fabsf (y[i]);
    break;
  case AE_ACT_SIGMOID:
    sigmoid_inplace (y, n);
    break;
  case AE_ACT_TANH:
    for (size_t i = 0; i < n; i++)
      y[i] = tanhf (y[i]);
    break;
  default:
    break;
  }
}

/* The derivative is computed from the activated output y; for (leaky) ReLU
 * the sign of y is the sign of the input because alpha > 0. */
void
act_backward (ae_act act, float alpha, const float *y, float *g, size_t n)
{
  switch (act) {
  case AE_ACT_RELU:
    for (size_t i = 0; i < n; i++)
      g[i] *= y[i] > 0.0f ? 1.0f : 0.0f;
    break;
  case AE_ACT_LRELU:
    for (size_t i = 0; i < n; i++)
      g[i] *= y[i] > 0.0f ? 1.0f : alpha;
    break;
  case AE_ACT_SIGMOID:
    for (size_t i = 0; i < n; i++)
      g[i] *= y[i] * (1.0f - y[i]);
    break;
  case AE_ACT_TANH:
    for (size_t i = 0; i < n; i++)
      g[i] *= 1.0f - y[i] * y[i];
    break;
  default:
    break;
  }
}

/* ---- Helpers -------------------------------------------------------------------- */

static void
add_channel_bias (float *y, const float *b, int channels, size_t per_channel)
{
  for (int c = 0; c < channels; c++) {
    float *row = y + (size_t) c * per_channel;
    for (size_t j = 0; j < per_channel; j++)
      row[j] += b[c];
  }
}

static void
sum_channel_grad (const float *dy, float *db, int channels, size_t per_channel)
{
  for (int c = 0; c < channels; c++) {
    const float *row = dy + (size_t) c * per_channel;
    float s = 0.0f;
    for (size_t j = 0; j < per_channel; j++)
      s += row[j];
    db[c] += s;
  }
}

static int
is_pointwise (const ae_layer *l)
{
  return l->k == 1 && l->s == 1 && l->p == 0;
}

/* ---- Dense ---------------------------------------------------------------------- */

static void
dense_forward (const layer_ctx *c, const float *x, float *y)
{
  const ae_layer *l = c->l;
  const float *w = c->m->params + l->w_off, *b = c->m->params + l->b_off;
  int n = c->n, f = l->out_c;
  int d = c->in[0] * c->in[1] * c->in[2];
  if (n == 1) {
    memcpy (y, b, (size_t) f * sizeof (float));
    cblas_sgemv (CblasRowMajor, CblasNoTrans, f, d, 1.0f, w, d, x, 1, 1.0f, y, 1);
    return;
  }
  float *xn = c->s->tmp_a, *yn = c->s->tmp_b;
  ae_nchw_from_cnhw (x, xn, n, c->in[0], plane_of (c->in));
  for (int i = 0; i < n; i++)
    memcpy (yn + (size_t) i * f, b, (size_t) f * sizeof (float));
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, n, f, d, 1.0f, xn, d, w, d, 1.0f, yn, f);
  ae_cnhw_from_nchw (yn, y, n, c->out[0], plane_of (c->out));
}

static void
dense_backward (const layer_ctx *c, const float *x, const float *dy, float *dx, float *grads)
{
  const ae_layer *l = c->l;
  const float *w = c->m->params + l->w_off;
  float *dw = grads + l->w_off, *db = grads + l->b_off;
  int n = c->n, f = l->out_c;
  int d = c->in[0] * c->in[1] * c->in[2];
  const float *xn = x, *dyn = dy;
  if (n > 1) {
    ae_nchw_from_cnhw (x, c->s->tmp_a, n, c->in[0], plane_of (c->in));
    ae_nchw_from_cnhw (dy, c->s->tmp_b, n, c->out[0], plane_of (c->out));
    xn = c->s->tmp_a;
    dyn = c->s->tmp_b;
  }
  for (int i = 0; i < n; i++)
    cblas_saxpy (f, 1.0f, dyn + (size_t) i * f, 1, db, 1);
  cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, f, d, n, 1.0f, dyn, f, xn, d, 1.0f, dw, d);
  if (!dx)
    return;
  float *dxn = n > 1 ? c->s->tmp_a : dx; /* xn is no longer needed */
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, n, d, f, 1.0f, dyn, f, w, d, 0.0f, dxn, d);
  if (n > 1)
    ae_cnhw_from_nchw (dxn, dx, n, c->in[0], plane_of (c->in));
}

/* ---- Convolution ------------------------------------------------------------------ */

static conv_geom
conv_geometry (const layer_ctx *c)
{
  conv_geom g = { c->in[0], c->in[1], c->in[2], c->l->k, c->l->s, c->l->p,
                  c->out[1], c->out[2], c->n };
  return g;
}

/* Transposed convolution read backwards: the image is the output, the
 * positions are the input pixels. */
static conv_geom
deconv_geometry (const layer_ctx *c)
{
  conv_geom g = { c->out[0], c->out[1], c->out[2], c->l->k, c->l->s, c->l->p,
                  c->in[1], c->in[2], c->n };
  return g;
}

int
layer_narrow_geom (const ae_layer *l, const int *in, const int *out, int back, narrow_geom *g)
{
  int transposed = l->kind == LAYER_DECONV;
  if (back) { /* dx from dy: the transposed operation, its weights read the same way */
    const int *t = in;
    in = out;
    out = t;
    transposed = !transposed;
  }
  *g = (narrow_geom) { in[0], in[1], in[2], out[0], out[1], out[2], l->k, l->s, l->p,
                       transposed, 0 };
  return (l->kind == LAYER_CONV || l->kind == LAYER_DECONV) && !is_pointwise (l)
         && ae_narrow_fits (g);
}

int
layer_wino_geom (const ae_layer *l, const int *in, const int *out, wino_geom *g)
{
  *g = (wino_geom) { in[0], out[0], in[1], in[2], 0 };
  return l->kind == LAYER_CONV && l->k == 3 && l->s == 1 && l->p == 1 && ae_wino_fits (g);
}

/* Whether pack p predates the model's last change; it counts as current after. */
static int
pack_stale (const ae_model *m, weight_pack *p)
{
  if (p->rev == m->revision)
    return 0;
  p->rev = m->revision;
  return 1;
}

/* The weights of pack p (geometry g), repacked if the model changed since. */
static const float *
current_pack (const layer_ctx *c, weight_pack *p, const narrow_geom *g)
{
  if (pack_stale (c->m, p))
    ae_narrow_pack (g, c->m->params + c->l->w_off, p->w);
  return p->w;
}

const float *
layer_wino_weights (const ae_model *m, const ae_layer *l, weight_pack *p, const wino_geom *g)
{
  if (pack_stale (m, p))
    ae_wino_pack (g, m->params + l->w_off, p->w);
  return p->w;
}

/* A convolution or transposed convolution by a kernel without im2col:
 * winograd.c or narrow.c where the session packed the layer's weights for
 * it, else direct.c. y = act_a * v + act_b * |v| for v = conv + bias.
 * Returns 0, doing nothing, where none applies. */
static int
direct_forward (const layer_ctx *c, const float *bias, float act_a, float act_b,
                const float *x, float *y)
{
  const ae_layer *l = c->l;
  const float *w = c->m->params + l->w_off;
  ae_session *s = c->s;
  wino_geom wg;
  if (s->wino && s->wino[c->index].w && layer_wino_geom (l, c->in, c->out, &wg)) {
    const float *packed = layer_wino_weights (c->m, l, &s->wino[c->index], &wg);
    ae_wino_conv (&wg, packed, bias, act_a, act_b, x, y, c->n, s->col);
    return 1;
  }
  narrow_geom ng;
  if (s->narrow_fwd && s->narrow_fwd[c->index].w && layer_narrow_geom (l, c->in, c->out, 0, &ng)) {
    const float *packed = current_pack (c, &s->narrow_fwd[c->index], &ng);
    ae_narrow_conv (&ng, packed, bias, act_a, act_b, x, y, c->n, s->col);
    return 1;
  }
  conv_geom g = conv_geometry (c);
  if (l->kind == LAYER_CONV && !is_pointwise (l) && ae_direct_conv_fits (&g)) {
    ae_direct_conv (&g, l->out_c, w, bias, act_a, act_b, x, y, s->col);
    return 1;
  }
  return 0;
}

/* dx of a convolution or transposed convolution on narrow.c, when the
 * session packed the weights for it. Returns 0, doing nothing, otherwise. */
static int
narrow_input_grad (const layer_ctx *c, const float *dy, float *dx)
{
  ae_session *s = c->s;
  narrow_geom ng;
  if (!dx || !s->narrow_back || !s->narrow_back[c->index].w
      || !layer_narrow_geom (c->l, c->in, c->out, 1, &ng))
    return 0;
  const float *packed = current_pack (c, &s->narrow_back[c->index], &ng);
  ae_narrow_conv (&ng, packed, NULL, 1.0f, 0.0f, dy, dx, c->n, s->col);
  return 1;
}

/* The layer's (leaky) ReLU in direct_forward's a, b form, else the identity.
 * Returns whether it is the layer's activation. */
static int
fusable_activation (const ae_layer *l, float *a, float *b)
{
  if (act_as_abs_form (l->act, l->alpha, a, b))
    return 1;
  *a = 1.0f;
  *b = 0.0f;
  return 0;
}

/* Returns 1 when it also applied the layer's activation (direct kernels). */
static int
conv_forward (const layer_ctx *c, const float *x, float *y)
{
  const ae_layer *l = c->l;
  conv_geom g = conv_geometry (c);
  const float *w = c->m->params + l->w_off;
  float a, b;
  int fused = fusable_activation (l, &a, &b);
  if (direct_forward (c, c->m->params + l->b_off, a, b, x, y))
    return fused;
  size_t rows = (size_t) g.c * g.k * g.k, total = (size_t) g.n * g.oh * g.ow;
  size_t chunk = ae_col_chunk (rows, total, c->s->col_budget);
  for (size_t j0 = 0; j0 < total; j0 += chunk) {
    size_t j1 = j0 + chunk < total ? j0 + chunk : total, cols = j1 - j0;
    const float *b = x + j0;
    size_t ldb = total;
    if (!is_pointwise (l)) {
      ae_im2col (&g, x, j0, j1, c->s->col);
      b = c->s->col;
      ldb = cols;
    }
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, l->out_c, (int) cols, (int) rows, 1.0f,
                 w, (int) rows, b, (int) ldb, 0.0f, y + j0, (int) total);
  }
  add_channel_bias (y, c->m->params + l->b_off, l->out_c, total);
  return 0;
}

/* Largest convolution whose bias conv_noise_forward folds (a stack buffer). */
#define FOLD_MAX_CHANNELS 512

void
layer_fold_noise (const ae_model *m, const ae_layer *conv, const ae_layer *noise, float sigma,
                  float *bias)
{
  const float *conv_bias = m->params + conv->b_off;
  const float *gain = m->params + noise->w_off, *shift = m->params + noise->b_off;
  for (int ch = 0; ch < conv->out_c; ch++)
    bias[ch] = conv_bias[ch] + (gain[ch] * sigma + shift[ch]);
}

int
conv_noise_forward (const layer_ctx *c, const ae_layer *noise, const float *x, float *y)
{
  const ae_layer *l = c->l;
  float bias[FOLD_MAX_CHANNELS], a, b;
  if (c->s->training || c->n != 1 || l->kind != LAYER_CONV || l->act != AE_ACT_LINEAR
      || l->out_c > FOLD_MAX_CHANNELS || !act_as_abs_form (noise->act, noise->alpha, &a, &b))
    return 0;
  layer_fold_noise (c->m, l, noise, c->s->noise[0], bias);
  return direct_forward (c, bias, a, b, x, y);
}

static void
conv_backward (const layer_ctx *c, const float *x, const float *dy, float *dx, float *grads)
{
  const ae_layer *l = c->l;
  conv_geom g = conv_geometry (c);
  const float *w = c->m->params + l->w_off;
  float *dw = grads + l->w_off;
  size_t rows = (size_t) g.c * g.k * g.k, total = (size_t) g.n * g.oh * g.ow;
  size_t chunk = ae_col_chunk (rows, total, c->s->col_budget);
  int pointwise = is_pointwise (l);
  sum_channel_grad (dy, grads + l->b_off, l->out_c, total);
  if (narrow_input_grad (c, dy, dx))
    dx = NULL; /* done */
  if (dx && !pointwise)
    memset (dx, 0, (size_t) g.c * g.n * g.h * g.w * sizeof (float));
  for (size_t j0 = 0; j0 < total; j0 += chunk) {
    size_t j1 = j0 + chunk < total ? j0 + chunk : total, cols = j1 - j0;
    const float *b = x + j0;
    size_t ldb = total;
    if (!pointwise) {
      ae_im2col (&g, x, j0, j1, c->s->col);
      b = c->s->col;
      ldb = cols;
    }
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, l->out_c, (int) rows, (int) cols, 1.0f,
                 dy + j0, (int) total, b, (int) ldb, 1.0f, dw, (int) rows);
    if (!dx)
      continue;
    float *dcol = pointwise ? dx + j0 : c->s->col;
    cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, (int) rows, (int) cols, l->out_c, 1.0f,
                 w, (int) rows, dy + j0, (int) total, 0.0f, dcol, (int) (pointwise ? total : cols));
    if (!pointwise)
      ae_col2im (&g, dcol, j0, j1, dx);
  }
}

/* Measured at 28x28 batch 1: the pixel-major columns win once several
 * output channels share each input position (16 channels: -16 %), the
 * tap-major ones for a single output channel (+20 % otherwise). */
enum { PIXEL_MAJOR_MIN_CHANNELS = 4 };

/* Returns 1 when it also applied the layer's activation (narrow kernel). */
static int
deconv_forward (const layer_ctx *c, const float *x, float *y)
{
  const ae_layer *l = c->l;
  float a, b;
  int fused = fusable_activation (l, &a, &b);
  if (direct_forward (c, c->m->params + l->b_off, a, b, x, y))
    return fused;
  conv_geom g = deconv_geometry (c);
  const float *w = c->m->params + l->w_off;
  int cin = c->in[0], pixel_major = l->out_c >= PIXEL_MAJOR_MIN_CHANNELS;
  size_t rows = (size_t) g.c * g.k * g.k, total = (size_t) g.n * g.oh * g.ow;
  size_t chunk = ae_col_chunk (rows, total, c->s->col_budget), out_total = (size_t) g.n * g.h * g.w;
  memset (y, 0, (size_t) g.c * out_total * sizeof (float));
  for (size_t j0 = 0; j0 < total; j0 += chunk) {
    size_t j1 = j0 + chunk < total ? j0 + chunk : total, cols = j1 - j0;
    if (pixel_major) { /* colt = x^T w: every tap of one input position in a row */
      cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, (int) cols, (int) rows, cin, 1.0f,
                   x + j0, (int) total, w, (int) rows, 0.0f, c->s->col, (int) rows);
      ae_col2im_pixel_major (&g, c->s->col, j0, j1, y);
    } else {
      cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, (int) rows, (int) cols, cin, 1.0f, w,
                   (int) rows, x + j0, (int) total, 0.0f, c->s->col, (int) cols);
      ae_col2im (&g, c->s->col, j0, j1, y);
    }
  }
  add_channel_bias (y, c->m->params + l->b_off, l->out_c, out_total);
  return 0;
}

static void
deconv_backward (const layer_ctx *c, const float *x, const float *dy, float *dx, float *grads)
{
  const ae_layer *l = c->l;
  conv_geom g = deconv_geometry (c);
  const float *w = c->m->params + l->w_off;
  float *dw = grads + l->w_off;
  int cin = c->in[0];
  size_t rows = (size_t) g.c * g.k * g.k, total = (size_t) g.n * g.oh * g.ow;
  size_t chunk = ae_col_chunk (rows, total, c->s->col_budget);
  sum_channel_grad (dy, grads + l->b_off, l->out_c, (size_t) g.n * g.h * g.w);
  if (narrow_input_grad (c, dy, dx))
    dx = NULL; /* done */
  for (size_t j0 = 0; j0 < total; j0 += chunk) {
    size_t j1 = j0 + chunk < total ? j0 + chunk : total, cols = j1 - j0;
    ae_im2col (&g, dy, j0, j1, c->s->col);
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, cin, (int) rows, (int) cols, 1.0f,
                 x + j0, (int) total, c->s->col, (int) cols, 1.0f, dw, (int) rows);
    if (dx)
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, cin, (int) cols, (int) rows, 1.0f,
                   w, (int) rows, c->s->col, (int) cols, 0.0f, dx + j0, (int) total);
  }
}

/* ---- Batch normalisation -------------------------------------------------------- */

static void
bn_forward (const layer_ctx *c, const float *x, float *y)
{
  const ae_layer *l = c->l;
  const float *gamma = c->m->params + l->w_off, *beta = c->m->params + l->b_off;
  int channels = c->in[0];
  size_t m = (size_t) c->n * plane_of (c->in);
  int training = c->s->training;
  float *mean = (training ? c->s->stats : c->m->stats) + l->stat_off;
  float *var = mean + channels;
  for (int ch = 0; ch < channels; ch++) {
    const float *xs = x + ch * m;
    float *ys = y + ch * m;
    float mu = mean[ch], invstd = 1.0f / sqrtf (var[ch] + AE_BN_EPS);
    if (training) {
      double s = 0.0, ss = 0.0;
      for (size_t i = 0; i < m; i++)
        s += xs[i];
      double dmu = s / (double) m;
      for (size_t i = 0; i < m; i++)
        ss += (xs[i] - dmu) * (xs[i] - dmu);
      double v = ss / (double) m;
      mu = (float) dmu;
      invstd = (float) (1.0 / sqrt (v + AE_BN_EPS));
      c->s->bn[c->index].invstd[ch] = invstd;
      mean[ch] = (1.0f - AE_BN_MOMENTUM) * mean[ch] + AE_BN_MOMENTUM * mu;
      var[ch] = (1.0f - AE_BN_MOMENTUM) * var[ch]
              + AE_BN_MOMENTUM * (float) (m > 1 ? ss / (double) (m - 1) : v);
    }
    float *xhat = training ? c->s->bn[c->index].xhat + ch * m : NULL;
    for (size_t i = 0; i < m; i++) {
      float h = (xs[i] - mu) * invstd;
      if (xhat)
        xhat[i] = h;
      ys[i] = gamma[ch] * h + beta[ch];
    }
  }
}

static void
bn_backward (const layer_ctx *c, const float *dy, float *dx, float *grads)
{
  const ae_layer *l = c->l;
  const float *gamma = c->m->params + l->w_off;
  float *dgamma = grads + l->w_off, *dbeta = grads + l->b_off;
  int channels = c->in[0];
  size_t m = (size_t) c->n * plane_of (c->in);
  const bn_cache *bc = &c->s->bn[c->index];
  for (int ch = 0; ch < channels; ch++) {
    const float *g = dy + ch * m, *xhat = bc->xhat + ch * m;
    double sg = 0.0, sgx = 0.0;
    for (size_t i = 0; i < m; i++) {
      sg += g[i];
      sgx += (double) g[i] * xhat[i];
    }
    dgamma[ch] += (float) sgx;
    dbeta[ch] += (float) sg;
    if (!dx)
      continue;
    float k = gamma[ch] * bc->invstd[ch] / (float) m;
    float mean_g = (float) sg, mean_gx = (float) sgx;
    float *d = dx + ch * m;
    for (size_t i = 0; i < m; i++)
      d[i] = k * ((float) m * g[i] - mean_g - xhat[i] * mean_gx);
  }
}

/* ---- VAE sampling: z = mu + exp(logvar / 2) * eps ------------------------------ */

static void
sample_forward (const layer_ctx *c, const float *x, float *y)
{
  size_t half = (size_t) c->n * c->out[0] * plane_of (c->out);
  const float *mu = x, *logvar = x + half;
  if (!c->s->training) {
    memcpy (y, mu, half * sizeof (float));
    return;
  }
  for (size_t i = 0; i < half; i++) {
    float e = (float) ae_rng_normal (&c->s->rng);
    c->s->eps[i] = e;
    y[i] = mu[i] + expf (0.5f * logvar[i]) * e;
  }
}

static void
sample_backward (const layer_ctx *c, const float *x, const float *dy, float *dx)
{
  size_t half = (size_t) c->n * c->out[0] * plane_of (c->out);
  const float *mu = x, *logvar = x + half;
  float k = c->s->kl_scale;
  if (!dx)
    return;
  for (size_t i = 0; i < half; i++) {
    float sd = expf (0.5f * logvar[i]);
    dx[i] = dy[i] + k * mu[i];
    dx[half + i] = dy[i] * c->s->eps[i] * 0.5f * sd + k * 0.5f * (sd * sd - 1.0f);
  }
}

double
ae_session_kl (const ae_session *s)
{
  const ae_model *m = s->model;
  if (!m->vae)
    return 0.0;
  int i = m->latent_layer;
  size_t half = s->numel[i + 1];
  return ae_gaussian_kl (s->act[i], s->act[i] + half, half);
}

double
ae_gaussian_kl (const float *mu, const float *logvar, size_t n)
{
  double kl = 0.0;
  for (size_t j = 0; j < n; j++)
    kl += -0.5 * (1.0 + logvar[j] - (double) mu[j] * mu[j] - exp (logvar[j]));
  return kl;
}

/* ---- Shuffle (depth to space, as PyTorch's pixel_shuffle) ----------------------- *
 * Output (c, y * R + i, x * R + j) is input channel c * R * R + i * R + j at
 * (y, x). Backward is the same walk with the copy reversed. */

static void
shuffle_walk (const layer_ctx *c, float *x, float *y, int to_output)
{
  int r = c->l->s, ih = c->in[1], iw = c->in[2];
  size_t in_plane = plane_of (c->in), out_plane = plane_of (c->out);
  for (int oc = 0; oc < c->out[0]; oc++)
    for (int n = 0; n < c->n; n++)
      for (int i = 0; i < r; i++)
        for (int j = 0; j < r; j++) {
          float *src = x + ((size_t) (oc * r * r + i * r + j) * c->n + n) * in_plane;
          float *dst = y + ((size_t) oc * c->n + n) * out_plane + (size_t) i * iw * r + j;
          for (int yy = 0; yy < ih; yy++)
            for (int xx = 0; xx < iw; xx++) {
              float *o = dst + (size_t) yy * r * iw * r + (size_t) xx * r;
              float *v = src + (size_t) yy * iw + xx;
              if (to_output)
                *o = *v;
              else
                *v = *o;
            }
        }
}

/* ---- Residual: y = x + the model's input -------------------------------------- */

static void
residual_forward (const layer_ctx *c, const float *x, float *y)
{
  const float *in = c->s->net_in;
  size_t n = (size_t) c->n * c->in[0] * plane_of (c->in);
  for (size_t i = 0; i < n; i++)
    y[i] = x[i] + in[i];
}

/* ---- Noise conditioning: y = x + gain * sigma + bias ----------------------------- *
 * sigma is the sample's noise level (ae_session_set_noise): after a
 * convolution this is the same as a constant noise-level map fed as an
 * extra input channel (FFDNet), minus the border effects, at the cost of one
 * add per value. */

static void
noise_forward (const layer_ctx *c, const float *x, float *y)
{
  const float *gain = c->m->params + c->l->w_off, *bias = c->m->params + c->l->b_off;
  size_t plane = plane_of (c->in);
  for (int ch = 0; ch < c->in[0]; ch++)
    for (int n = 0; n < c->n; n++) {
      size_t at = ((size_t) ch * c->n + n) * plane;
      float add = gain[ch] * c->s->noise[n] + bias[ch];
      for (size_t i = 0; i < plane; i++)
        y[at + i] = x[at + i] + add;
    }
}

static void
noise_backward (const layer_ctx *c, const float *dy, float *dx, float *grads)
{
  float *dgain = grads + c->l->w_off, *dbias = grads + c->l->b_off;
  size_t plane = plane_of (c->in);
  for (int ch = 0; ch < c->in[0]; ch++)
    for (int n = 0; n < c->n; n++) {
      const float *g = dy + ((size_t) ch * c->n + n) * plane;
      double sum = 0.0;
      for (size_t i = 0; i < plane; i++)
        sum += g[i];
      dgain[ch] += (float) sum * c->s->noise[n];
      dbias[ch] += (float) sum;
    }
  if (dx)
    memcpy (dx, dy, (size_t) c->n * c->in[0] * plane * sizeof (float));
}

/* ---- Dispatch ---------------------------------------------------------------------- */

int
layer_forward (const layer_ctx *c, const float *x, float *y)
{
  switch (c->l->kind) {
  case LAYER_DENSE:
    dense_forward (c, x, y);
    break;
  case LAYER_CONV:
    return conv_forward (c, x, y);
  case LAYER_DECONV:
    return deconv_forward (c, x, y);
  case LAYER_BN:
    bn_forward (c, x, y);
    break;
  case LAYER_SAMPLE:
    sample_forward (c, x, y);
    break;
  case LAYER_ACT:
    memcpy (y, x, (size_t) c->n * c->in[0] * plane_of (c->in) * sizeof (float));
    break;
  case LAYER_RESIDUAL:
    residual_forward (c, x, y);
    break;
  case LAYER_SHUFFLE:
    shuffle_walk (c, (float *) x, y, 1); /* reads x only */
    break;
  case LAYER_NOISE:
    noise_forward (c, x, y);
    break;
  }
  return 0;
}

void
layer_backward (const layer_ctx *c, const float *x, const float *y, const float *dy, float *dx,
                float *grads)
{
  (void) y;
  switch (c->l->kind) {
  case LAYER_DENSE:
    dense_backward (c, x, dy, dx, grads);
    break;
  case LAYER_CONV:
    conv_backward (c, x, dy, dx, grads);
    break;
  case LAYER_DECONV:
    deconv_backward (c, x, dy, dx, grads);
    break;
  case LAYER_BN:
    bn_backward (c, dy, dx, grads);
    break;
  case LAYER_SAMPLE:
    sample_backward (c, x, dy, dx);
    break;
  case LAYER_SHUFFLE:
    if (dx)
      shuffle_walk (c, dx, (float *) dy, 0); /* writes dx only */
    break;
  case LAYER_NOISE:
    noise_backward (c, dy, dx, grads);
    break;
  case LAYER_ACT:
  case LAYER_RESIDUAL: /* the added input is data, not trained: only x gets a gradient */
    if (dx)
      memcpy (dx, dy, (size_t) c->n * c->in[0] * plane_of (c->in) * sizeof (float));
    break;
  }
}
