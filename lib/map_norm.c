/* Per-pixel standardised anomaly maps: the mean map of normal frames,
 * stored in the model (tensor map.mean), divides every frame's map, so a
 * pixel's error counts in units of that pixel's normal error. Pixels that
 * are always hard to reconstruct (the outline of the class's shapes) then
 * stop drowning the ones that are not (docs/model-format.md). */
#include "nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Pixels whose normal error is under this fraction of the mean pixel's are
 * raised to it: a pixel that is never wrong on normal frames (a constant
 * border) must not turn rounding noise into an alarm. */
#define MAP_MEAN_FLOOR 1e-3

void
ae_map_mean_clear (ae_model *m)
{
  free (m->map_mean);
  m->map_mean = NULL;
}

int
ae_model_has_map_mean (const ae_model *m)
{
  return m && m->map_mean;
}

/* Values the loader accepts: finite and positive, so dividing by them is. */
static ae_status
check_values (const float *v, size_t n, ae_status status, ae_error *err)
{
  for (size_t i = 0; i < n; i++)
    if (!(v[i] > 0.0f) || !isfinite (v[i]))
      return ae_fail (err, status, "tensor '%s' must hold finite values > 0 (value %zu is %g)",
                      AE_MAP_MEAN_TENSOR, i, (double) v[i]);
  return AE_OK;
}

static ae_status
store (ae_model *m, const float *mean, ae_status status, ae_error *err)
{
  size_t n = (size_t) m->in_h * m->in_w;
  ae_status st = check_values (mean, n, status, err);
  if (st != AE_OK)
    return st;
  float *copy = malloc (n * sizeof *copy);
  if (!copy)
    return ae_fail (err, AE_E_NOMEM, "out of memory");
  memcpy (copy, mean, n * sizeof *copy);
  ae_map_mean_clear (m);
  m->map_mean = copy;
  return AE_OK;
}

ae_status
ae_model_set_map_mean (ae_model *m, const float *mean, int height, int width, ae_error *err)
{
  if (!m || !mean)
    return ae_fail (err, AE_E_ARG, "no model or mean map");
  if (height != m->in_h || width != m->in_w)
    return ae_fail (err, AE_E_SHAPE, "the mean map is %dx%d, the model's build size %dx%d",
                    width, height, m->in_w, m->in_h);
  size_t n = (size_t) height * width;
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) {
    if (!(mean[i] >= 0.0f) || !isfinite (mean[i]))
      return ae_fail (err, AE_E_ARG, "the mean map holds %g at %zu", (double) mean[i], i);
    sum += mean[i];
  }
  float floor = (float) (MAP_MEAN_FLOOR * sum / (double) n);
  if (!(floor > 0.0f))
    return ae_fail (err, AE_E_ARG, "the mean map is zero everywhere");
  float *v = malloc (n * sizeof *v);
  if (!v)
    return ae_fail (err, AE_E_NOMEM, "out of memory");
  for (size_t i = 0; i < n; i++)
    v[i] = mean[i] > floor ? mean[i] : floor;
  ae_status st = store (m, v, AE_E_ARG, err);
  free (v);
  return st;
}

ae_status
ae_map_mean_adopt (ae_model *m, const aem_tensor *t, ae_error *err)
{
  if (!t || strcmp (t->name, AE_MAP_MEAN_TENSOR) != 0 || t->ndim != 2 || t->shape[0] != m->in_h
      || t->shape[1] != m->in_w)
    return ae_fail (err, AE_E_FORMAT, "tensor '%s' should be '%s' of shape [%d, %d], the build "
                    "size", t ? t->name : "(none)", AE_MAP_MEAN_TENSOR, m->in_h, m->in_w);
  return store (m, t->data, AE_E_FORMAT, err);
}

ae_status
ae_map_normalise (const ae_model *m, float *map, int height, int width)
{
  if (!m || !m->map_mean || !map)
    return AE_E_ARG;
  if (height != m->in_h || width != m->in_w)
    return AE_E_SHAPE;
  size_t n = (size_t) height * width;
  for (size_t i = 0; i < n; i++)
    map[i] /= m->map_mean[i];
  return AE_OK;
}
