/* Reconstruction losses (value and gradient), anomaly maps and score
 * statistics. */
#include "nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define BCE_EPS 1e-6f
/* SSIM constants for data in [0,1] (Wang et al. 2004: K1 = 0.01, K2 = 0.03). */
#define SSIM_C1 1e-4
#define SSIM_C2 9e-4

/* ---- Element-wise losses ------------------------------------------------------ */

static double
mse (const float *y, const float *t, size_t n, float *grad)
{
  double s = 0.0;
  float k = 2.0f / (float) n;
  for (size_t i = 0; i < n; i++) {
    float d = y[i] - t[i];
    s += (double) d * d;
    if (grad)
      grad[i] = k * d;
  }
  return s / (double) n;
}

static double
l1 (const float *y, const float *t, size_t n, float *grad)
{
  double s = 0.0;
  float k = 1.0f / (float) n;
  for (size_t i = 0; i < n; i++) {
    float d = y[i] - t[i];
    s += fabsf (d);
    if (grad)
      grad[i] = d > 0.0f ? k : d < 0.0f ? -k : 0.0f;
  }
  return s / (double) n;
}

static double
bce (const float *y, const float *t, size_t n, float *grad)
{
  double s = 0.0;
  float k = 1.0f / (float) n;
  for (size_t i = 0; i < n; i++) {
    float p = fminf (fmaxf (y[i], BCE_EPS), 1.0f - BCE_EPS);
    s -= t[i] * logf (p) + (1.0f - t[i]) * logf (1.0f - p);
    if (grad)
      grad[i] = k * (p - t[i]) / (p * (1.0f - p));
  }
  return s / (double) n;
}

/* ---- SSIM with a uniform window ----------------------------------------------------
 * Local statistics over every valid win x win window (hp x wp positions),
 * computed with separable running sums in double precision. */

typedef struct ssim_maps {
  int h, w, win, hp, wp;
  float *tmp;                     /* h * w: horizontal pass */
  float *prod;                    /* h * w: products */
  float *mx, *my, *sxx, *syy, *sxy; /* hp * wp each */
} ssim_maps;

static size_t
ssim_scratch (int h, int w)
{
  return 7 * (size_t) h * w;
}

static void
ssim_layout (ssim_maps *s, int h, int w, int win, float *scratch)
{
  size_t hw = (size_t) h * w;
  s->h = h;
  s->w = w;
  s->win = win < 1 ? 1 : win;
  if (s->win > h)
    s->win = h;
  if (s->win > w)
    s->win = w;
  s->hp = h - s->win + 1;
  s->wp = w - s->win + 1;
  size_t hpwp = (size_t) s->hp * s->wp;
  s->tmp = scratch;
  s->prod = scratch + hw;
  s->mx = scratch + 2 * hw;
  s->my = s->mx + hpwp;
  s->sxx = s->my + hpwp;
  s->syy = s->sxx + hpwp;
  s->sxy = s->syy + hpwp;
}

/* dst (hp x wp) = mean of src (h x w) over each valid window. */
static void
box_mean_valid (const ssim_maps *s, const float *src, float *dst)
{
  int win = s->win;
  for (int y = 0; y < s->h; y++) {
    const float *r = src + (size_t) y * s->w;
    float *o = s->tmp + (size_t) y * s->wp;
    double acc = 0.0;
    for (int x = 0; x < win; x++)
      acc += r[x];
    o[0] = (float) acc;
    for (int x = 1; x < s->wp; x++) {
      acc += r[x + win - 1] - r[x - 1];
      o[x] = (float) acc;
    }
  }
  double norm = 1.0 / ((double) win * win);
  for (int x = 0; x < s->wp; x++) {
    double acc = 0.0;
    for (int y = 0; y < win; y++)
      acc += s->tmp[(size_t) y * s->wp + x];
    dst[x] = (float) (acc * norm);
    for (int y = 1; y < s->hp; y++) {
      acc += s->tmp[(size_t) (y + win - 1) * s->wp + x] - s->tmp[(size_t) (y - 1) * s->wp + x];
      dst[(size_t) y * s->wp + x] = (float) (acc * norm);
    }
  }
}

/* dst (h x w) = sum of src (hp x wp) over the windows covering each pixel. */
static void
box_sum_full (const ssim_maps *s, const float *src, float *dst)
{
  int win = s->win;
  for (int y = 0; y < s->hp; y++) {
    const float *r = src + (size_t) y * s->wp;
    float *o = s->tmp + (size_t) y * s->w;
    double acc = 0.0;
    for (int x = 0; x < s->w; x++) {
      if (x < s->wp)
        acc += r[x];
      if (x - win >= 0)
        acc -= r[x - win];
      o[x] = (float) acc;
    }
  }
  for (int x = 0; x < s->w; x++) {
    double acc = 0.0;
    for (int y = 0; y < s->h; y++) {
      if (y < s->hp)
        acc += s->tmp[(size_t) y * s->w + x];
      if (y - win >= 0)
        acc -= s->tmp[(size_t) (y - win) * s->w + x];
      dst[(size_t) y * s->w + x] = (float) acc;
    }
  }
}

static void
product (const float *a, const float *b, float *out, size_t n)
{
  for (size_t i = 0; i < n; i++)
    out[i] = a[i] * b[i];
}

/* x: reference (target), y: reconstruction. Leaves the window means in
 * mx/my and the (co)variances in sxx/syy/sxy. */
static void
ssim_stats (ssim_maps *s, const float *x, const float *y)
{
  size_t hw = (size_t) s->h * s->w, np = (size_t) s->hp * s->wp;
  box_mean_valid (s, x, s->mx);
  box_mean_valid (s, y, s->my);
  product (x, x, s->prod, hw);
  box_mean_valid (s, s->prod, s->sxx);
  product (y, y, s->prod, hw);
  box_mean_valid (s, s->prod, s->syy);
  product (x, y, s->prod, hw);
  box_mean_valid (s, s->prod, s->sxy);
  for (size_t i = 0; i < np; i++) {
    s->sxx[i] -= s->mx[i] * s->mx[i];
    s->syy[i] -= s->my[i] * s->my[i];
    s->sxy[i] -= s->mx[i] * s->my[i];
  }
}

/* Mean SSIM of one plane; with grad, adds d(-mean SSIM)/dy * scale. The
 * per-window partial derivatives overwrite the statistics maps, then are
 * spread back to the pixels of each window. */
static double
ssim_plane (ssim_maps *s, const float *x, const float *y, float *grad, double scale)
{
  size_t np = (size_t) s->hp * s->wp, hw = (size_t) s->h * s->w;
  ssim_stats (s, x, y);
  double total = 0.0;
  for (size_t i = 0; i < np; i++) {
    double mx = s->mx[i], my = s->my[i];
    double a1 = 2 * mx * my + SSIM_C1, a2 = 2 * s->sxy[i] + SSIM_C2;
    double b1 = mx * mx + my * my + SSIM_C1, b2 = s->sxx[i] + s->syy[i] + SSIM_C2;
    double ssim = a1 * a2 / (b1 * b2);
    total += ssim;
    if (!grad)
      continue;
    double d_my = 2 * mx * a2 / (b1 * b2) - 2 * my * ssim / b1;
    double d_vy = -ssim / b2;
    double d_cov = 2 * a1 / (b1 * b2);
    /* dS/dy_q = (1/n) sum_p [d_my + d_vy * 2 (y_q - my) + d_cov * (x_q - mx)] */
    s->mx[i] = (float) (d_my - 2 * d_vy * my - d_cov * mx); /* constant part */
    s->my[i] = (float) (2 * d_vy);                          /* times y_q */
    s->sxx[i] = (float) d_cov;                              /* times x_q */
  }
  if (grad) {
    double k = -scale / ((double) s->win * s->win);
    float *full = s->prod;
    box_sum_full (s, s->mx, full);
    for (size_t q = 0; q < hw; q++)
      grad[q] += (float) (k * full[q]);
    box_sum_full (s, s->my, full);
    for (size_t q = 0; q < hw; q++)
      grad[q] += (float) (k * full[q] * y[q]);
    box_sum_full (s, s->sxx, full);
    for (size_t q = 0; q < hw; q++)
      grad[q] += (float) (k * full[q] * x[q]);
  }
  return total / (double) np;
}

static double
ssim_loss (const float *y, const float *t, size_t planes, int h, int w, int window,
           float *grad, float *scratch)
{
  ssim_maps s;
  ssim_layout (&s, h, w, window, scratch);
  size_t hw = (size_t) h * w;
  double scale = 1.0 / (double) planes; /* loss = 1 - mean over planes of mean SSIM */
  double sum = 0.0;
  if (grad)
    memset (grad, 0, planes * hw * sizeof (float));
  for (size_t p = 0; p < planes; p++)
    sum += ssim_plane (&s, t + p * hw, y + p * hw, grad ? grad + p * hw : NULL,
                       scale / ((double) s.hp * s.wp));
  return 1.0 - sum / (double) planes;
}

size_t
ae_loss_scratch_floats (ae_loss kind, int h, int w)
{
  return kind == AE_LOSS_SSIM ? ssim_scratch (h, w) : 1;
}

double
ae_loss_eval (ae_loss kind, const float *y, const float *t, size_t planes, int h, int w,
              int window, float *grad, float *scratch)
{
  size_t n = planes * (size_t) h * w;
  switch (kind) {
  case AE_LOSS_L1:
    return l1 (y, t, n, grad);
  case AE_LOSS_BCE:
    return bce (y, t, n, grad);
  case AE_LOSS_SSIM:
    return ssim_loss (y, t, planes, h, w, window, grad, scratch);
  default:
    return mse (y, t, n, grad);
  }
}

/* ---- Anomaly maps ---------------------------------------------------------------- */

static void
ssim_error_map (const float *x, const float *y, int h, int w, int window, float *map,
                float *scratch)
{
  ssim_maps s;
  ssim_layout (&s, h, w, window, scratch);
  size_t np = (size_t) s.hp * s.wp, hw = (size_t) h * w;
  ssim_stats (&s, x, y);
  for (size_t i = 0; i < np; i++) {
    double mx = s.mx[i], my = s.my[i];
    s.mx[i] = (float) ((2 * mx * my + SSIM_C1) * (2 * s.sxy[i] + SSIM_C2)
                       / ((mx * mx + my * my + SSIM_C1) * (s.sxx[i] + s.syy[i] + SSIM_C2)));
    s.my[i] = 1.0f;
  }
  /* Each pixel: 1 - mean SSIM of the windows that cover it. */
  float *count = s.prod;
  box_sum_full (&s, s.my, count);
  box_sum_full (&s, s.mx, map);
  for (size_t q = 0; q < hw; q++)
    map[q] = 1.0f - map[q] / count[q];
}

ae_status
ae_error_map (ae_loss kind, const float *input, const float *recon, int channels, int height,
              int width, int window, float *map, float *scratch)
{
  if (!input || !recon || !map || channels <= 0 || height <= 0 || width <= 0)
    return AE_E_ARG;
  size_t hw = (size_t) height * width;
  if (kind == AE_LOSS_SSIM && (!scratch || window <= 0))
    return AE_E_ARG;
  memset (map, 0, hw * sizeof (float));
  float *plane_map = kind == AE_LOSS_SSIM ? scratch + ssim_scratch (height, width) : NULL;
  for (int c = 0; c < channels; c++) {
    const float *x = input + c * hw, *y = recon + c * hw;
    if (kind == AE_LOSS_SSIM) {
      ssim_error_map (x, y, height, width, window, channels == 1 ? map : plane_map, scratch);
      if (channels > 1)
        for (size_t i = 0; i < hw; i++)
          map[i] += plane_map[i];
    } else {
      for (size_t i = 0; i < hw; i++) {
        float d = y[i] - x[i];
        map[i] += kind == AE_LOSS_L1 ? fabsf (d) : d * d;
      }
    }
  }
  if (channels > 1)
    for (size_t i = 0; i < hw; i++)
      map[i] /= (float) channels;
  return AE_OK;
}

ae_status
ae_error_map_mix (const float *input, const float *recon, int channels, int height, int width,
                  int window, const float scale[2], float *map, float *scratch)
{
  if (!scale || !(scale[0] > 0.0f) || !(scale[1] > 0.0f))
    return AE_E_ARG;
  ae_status st = ae_error_map (AE_LOSS_SSIM, input, recon, channels, height, width, window, map,
                               scratch);
  if (st != AE_OK)
    return st;
  /* The squared error goes where SSIM's scratch was. */
  ae_error_map (AE_LOSS_MSE, input, recon, channels, height, width, window, scratch, NULL);
  size_t hw = (size_t) height * width;
  for (size_t i = 0; i < hw; i++)
    map[i] = scratch[i] / scale[0] + map[i] / scale[1];
  return AE_OK;
}

ae_status
ae_error_map_means (const float *input, const float *recon, int channels, int height, int width,
                    int window, double means[2], float *map, float *scratch)
{
  static const ae_loss kinds[2] = { AE_LOSS_MSE, AE_LOSS_SSIM };
  size_t hw = (size_t) height * width;
  for (int i = 0; i < 2; i++) {
    ae_status st = ae_error_map (kinds[i], input, recon, channels, height, width, window, map,
                                 scratch);
    if (st != AE_OK)
      return st;
    double sum = 0.0;
    for (size_t p = 0; p < hw; p++)
      sum += map[p];
    means[i] = sum / (double) hw;
  }
  return AE_OK;
}

/* ---- Score statistics ------------------------------------------------------------ */

/* Rearranges v so that v[k] is the k-th smallest (Hoare's selection). */
static void
select_kth (float *v, size_t n, size_t k)
{
  size_t lo = 0, hi = n - 1;
  while (lo < hi) {
    float pivot = v[lo + (hi - lo) / 2];
    size_t i = lo, j = hi;
    while (i <= j) {
      while (v[i] < pivot)
        i++;
      while (v[j] > pivot)
        j--;
      if (i <= j) {
        float t = v[i];
        v[i] = v[j];
        v[j] = t;
        i++;
        if (j == 0)
          break;
        j--;
      }
    }
    if (k <= j)
      hi = j;
    else if (k >= i)
      lo = i;
    else
      return;
  }
}

float
ae_score_top_mean (const float *values, size_t n, float top_fraction, float *scratch)
{
  if (!n)
    return 0.0f;
  if (!(top_fraction > 0.0f) || top_fraction >= 1.0f) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
      s += values[i];
    return (float) (s / (double) n);
  }
  /* A fraction written as k/n (9/117, say) rounds to a float a hair above
   * it; the tolerance keeps ceil from taking one pixel more. */
  double wanted = (double) top_fraction * (double) n;
  size_t k = (size_t) ceil (wanted * (1.0 - 1e-6));
  if (k < 1)
    k = 1;
  memcpy (scratch, values, n * sizeof (float));
  select_kth (scratch, n, n - k);
  double s = 0.0;
  for (size_t i = n - k; i < n; i++)
    s += scratch[i];
  return (float) (s / (double) k);
}

static int
cmp_float (const void *a, const void *b)
{
  float x = *(const float *) a, y = *(const float *) b;
  return (x > y) - (x < y);
}

float
ae_percentile (const float *values, size_t n, double p, float *scratch)
{
  if (!n)
    return 0.0f;
  memcpy (scratch, values, n * sizeof (float));
  qsort (scratch, n, sizeof (float), cmp_float);
  if (p <= 0.0)
    return scratch[0];
  if (p >= 100.0)
    return scratch[n - 1];
  double pos = p / 100.0 * (double) (n - 1);
  size_t i = (size_t) pos;
  double frac = pos - (double) i;
  return i + 1 < n ? (float) (scratch[i] + frac * (scratch[i + 1] - scratch[i])) : scratch[i];
}
