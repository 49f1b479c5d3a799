/* Synthetic defects for anomaly training: the input of a training sample
 * gets one local corruption while its target stays the good frame, so the
 * autoencoder learns to put good surface back where something else is. A
 * plain autoencoder reproduces soft blots and worn patches faithfully (they
 * look like lighting and like flat good texture) and so cannot flag them;
 * trained this way, it repairs them, and the repair is the error. This is
 * the reconstructive half of DRAEM (Zavrtanik et al., 2021) with simple
 * generic shapes instead of textures from an image set.
 *
 * The shapes are deliberately generic: a smooth bump of either sign, a
 * patch flattened to its mean, a thin straight line, each of random size,
 * place and strength. They are not the defects of any benchmark.
 */
#include "nn.h"

#include <math.h>

typedef enum { DEFECT_BUMP, DEFECT_FLAT, DEFECT_LINE, DEFECT_KINDS } defect_kind;

typedef struct {
  defect_kind kind;
  float cy, cx;     /* centre */
  float ry, rx;     /* radii (bump, flat); half length and half width (line) */
  float cos_a, sin_a; /* line direction */
  float amplitude;  /* added level (bump, line) */
} defect;

static float
uniform (ae_rng *rng, float lo, float hi)
{
  return lo + (float) ae_rng_uniform (rng) * (hi - lo);
}

static defect
draw_defect (int h, int w, ae_rng *rng)
{
  defect d;
  float side = (float) (h < w ? h : w);
  d.kind = (defect_kind) ae_rng_below (rng, DEFECT_KINDS);
  d.cy = uniform (rng, 0.0f, (float) h);
  d.cx = uniform (rng, 0.0f, (float) w);
  float sign = ae_rng_uniform (rng) < 0.5 ? -1.0f : 1.0f;
  float angle = uniform (rng, 0.0f, 3.14159265f);
  d.cos_a = cosf (angle);
  d.sin_a = sinf (angle);
  switch (d.kind) {
  case DEFECT_BUMP:
    d.ry = d.rx = uniform (rng, 3.0f, fmaxf (3.0f, side / 3.0f));
    d.amplitude = sign * uniform (rng, 0.05f, 0.3f);
    break;
  case DEFECT_FLAT:
    d.ry = uniform (rng, 3.0f, fmaxf (3.0f, side / 4.0f));
    d.rx = uniform (rng, 3.0f, fmaxf (3.0f, side / 4.0f));
    d.amplitude = 0.0f;
    break;
  default:
    d.ry = uniform (rng, 5.0f, fmaxf (5.0f, side / 3.0f));
    d.rx = uniform (rng, 0.5f, 1.25f);
    d.amplitude = sign * uniform (rng, 0.1f, 0.3f);
    break;
  }
  return d;
}

/* How much of the defect covers pixel (y, x), 0..1 with soft edges. */
static float
coverage (const defect *d, int y, int x)
{
  float dy = (float) y + 0.5f - d->cy, dx = (float) x + 0.5f - d->cx;
  if (d->kind == DEFECT_LINE) {
    float along = dx * d->cos_a + dy * d->sin_a, across = -dx * d->sin_a + dy * d->cos_a;
    if (fabsf (along) > d->ry)
      return 0.0f;
    return fminf (1.0f, fmaxf (0.0f, d->rx + 0.5f - fabsf (across)));
  }
  float r2 = (dy * dy) / (d->ry * d->ry) + (dx * dx) / (d->rx * d->rx);
  if (r2 >= 1.0f)
    return 0.0f;
  if (d->kind == DEFECT_BUMP) /* smooth to its rim, like a blot or a dent in the light */
    return (1.0f - r2) * (1.0f - r2);
  return fminf (1.0f, (1.0f - sqrtf (r2)) * fmaxf (d->ry, d->rx) + 0.5f);
}

static float
mean_under (const defect *d, const float *plane, int h, int w)
{
  double sum = 0.0, weight = 0.0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      float a = coverage (d, y, x);
      sum += a * plane[(size_t) y * w + x];
      weight += a;
    }
  return weight > 0.0 ? (float) (sum / weight) : 0.0f;
}

static void
apply_defect (const defect *d, float *plane, int h, int w)
{
  float flat = d->kind == DEFECT_FLAT ? mean_under (d, plane, h, w) : 0.0f;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      float a = coverage (d, y, x), *p = &plane[(size_t) y * w + x];
      if (a <= 0.0f)
        continue;
      float v = d->kind == DEFECT_FLAT ? *p + a * (flat - *p) : *p + a * d->amplitude;
      *p = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
    }
}

void
ae_add_synthetic_defect (float *planes, int channels, size_t channel_stride, int h, int w,
                         ae_rng *rng)
{
  defect d = draw_defect (h, w, rng);
  for (int c = 0; c < channels; c++)
    apply_defect (&d, planes + (size_t) c * channel_stride, h, w);
}
