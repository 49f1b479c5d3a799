/* Models: building from a specification, weights, metadata, and the
 * mapping between a model and the .aem container. */
#include "nn.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keys libae owns in a model file; users cannot set them. */
#define ARCH_PREFIX "arch."

static size_t
shape_numel (const int s[3])
{
  return (size_t) s[0] * s[1] * s[2];
}

/* Weight and bias counts of a layer given its input channels/size. */
static void
layer_param_counts (const ae_layer *l, size_t *w, size_t *b)
{
  size_t k2 = (size_t) l->k * l->k;
  *w = *b = 0;
  switch (l->kind) {
  case LAYER_DENSE:
    *w = (size_t) l->out_c * shape_numel (l->in);
    *b = (size_t) l->out_c;
    break;
  case LAYER_CONV:
  case LAYER_DECONV:
    *w = (size_t) l->out_c * l->in[0] * k2;
    *b = (size_t) l->out_c;
    break;
  case LAYER_BN:
  case LAYER_NOISE:
    *w = *b = (size_t) l->in[0];
    break;
  default:
    break;
  }
}

/* Too many parameters to be sensible on this class of machine. */
#define MAX_PARAMS ((size_t) 1 << 28)

static ae_status
assign_shapes_and_offsets (ae_model *m, ae_error *err)
{
  int shape[3] = { m->in_c, m->in_h, m->in_w };
  const int net_in[3] = { m->in_c, m->in_h, m->in_w };
  size_t off = 0, stat = 0;
  m->fully_conv = 1;
  for (int i = 0; i < m->nlayers; i++) {
    ae_layer *l = &m->layers[i];
    memcpy (l->in, shape, sizeof shape);
    ae_error why = { AE_OK, "" };
    ae_status st = ae_layer_out_shape (l, l->in, net_in, l->out, &why);
    if (st != AE_OK)
      return ae_fail (err, st, "layer %d (%s): %s", i, ae_layer_kind_name (l->kind), why.message);
    layer_param_counts (l, &l->w_n, &l->b_n);
    l->w_off = off;
    off += l->w_n;
    l->b_off = off;
    off += l->b_n;
    if (off > MAX_PARAMS)
      return ae_fail (err, AE_E_ARG, "model has more than %zu parameters", MAX_PARAMS);
    if (l->kind == LAYER_BN) {
      l->stat_off = stat;
      stat += 2 * (size_t) l->in[0];
    }
    if (l->kind == LAYER_DENSE)
      m->fully_conv = 0;
    if (l->kind == LAYER_SAMPLE)
      m->vae = 1;
    if (l->kind == LAYER_NOISE)
      m->noise_conditioned = 1;
    memcpy (shape, l->out, sizeof shape);
  }
  m->nparams = off;
  m->nstats = stat;
  return AE_OK;
}

/* The VAE's sample layer; otherwise the last layer of the first run of
 * layers with the smallest output (so a bottleneck conv followed by its BN
 * and activation yields the activated map). */
static int
find_latent_layer (const ae_model *m)
{
  int best = 0;
  for (int i = 0; i < m->nlayers; i++)
    if (m->layers[i].kind == LAYER_SAMPLE)
      return i;
  for (int i = 1; i < m->nlayers; i++) {
    size_t n = shape_numel (m->layers[i].out), bn = shape_numel (m->layers[best].out);
    if (n < bn || (n == bn && i == best + 1))
      best = i;
  }
  return best;
}

ae_model *
ae_model_build (const char *spec, int c, int h, int w, ae_error *err)
{
  if (c <= 0 || h <= 0 || w <= 0 || c > 64 || h > 65536 || w > 65536) {
    ae_fail (err, AE_E_ARG, "bad model input shape %dx%dx%d", c, h, w);
    return NULL;
  }
  ae_model *m = calloc (1, sizeof *m);
  if (!m) {
    ae_fail (err, AE_E_NOMEM, "out of memory");
    return NULL;
  }
  ae_meta_init (&m->meta);
  m->in_c = c;
  m->in_h = h;
  m->in_w = w;
  m->spec = strdup (spec ? spec : "");
  if (!m->spec || ae_spec_parse (spec, &m->layers, &m->nlayers, err) != AE_OK
      || assign_shapes_and_offsets (m, err) != AE_OK)
    goto fail;
  const int *out = m->layers[m->nlayers - 1].out;
  if (out[0] != c || out[1] != h || out[2] != w) {
    ae_fail (err, AE_E_SHAPE, "the model maps %dx%dx%d to %dx%dx%d; an autoencoder must "
             "reproduce its input shape", c, h, w, out[0], out[1], out[2]);
    goto fail;
  }
  m->latent_layer = find_latent_layer (m);
  m->params = calloc (m->nparams ? m->nparams : 1, sizeof (float));
  m->revision = 1;
  m->stats = calloc (m->nstats ? m->nstats : 1, sizeof (float));
  if (!m->params || !m->stats) {
    ae_fail (err, AE_E_NOMEM, "out of memory for %zu parameters", m->nparams);
    goto fail;
  }
  return m;
fail:
  ae_model_free (m);
  return NULL;
}

static size_t
fan_in (const ae_layer *l)
{
  size_t k2 = (size_t) l->k * l->k;
  switch (l->kind) {
  case LAYER_DENSE:
    return shape_numel (l->in);
  case LAYER_CONV:
    return (size_t) l->in[0] * k2;
  default: /* deconv: inputs that reach one output pixel */
    return (size_t) l->in[0] * k2 / ((size_t) l->s * l->s) + 1;
  }
}

void
ae_model_params_changed (ae_model *m)
{
  m->revision++;
}

/* He initialisation scaled for the activation that follows (the layer's
 * own, or that of a BN/act/noise layer right after it); biases zero, BN
 * identity, noise layers without effect. */
void
ae_model_init_weights (ae_model *m, uint64_t seed)
{
  ae_rng rng;
  ae_rng_seed (&rng, seed);
  memset (m->params, 0, m->nparams * sizeof (float));
  for (int i = 0; i < m->nlayers; i++) {
    ae_layer *l = &m->layers[i];
    if (l->kind == LAYER_BN) {
      for (size_t j = 0; j < l->w_n; j++)
        m->params[l->w_off + j] = 1.0f;
      for (int c = 0; c < l->in[0]; c++)
        m->stats[l->stat_off + l->in[0] + c] = 1.0f;
      continue;
    }
    if (!l->w_n || l->kind == LAYER_NOISE) /* noise gain and offset start at 0 */
      continue;
    ae_act act = l->act;
    float alpha = l->alpha;
    if (act == AE_ACT_LINEAR && i + 1 < m->nlayers
        && (m->layers[i + 1].kind == LAYER_BN || m->layers[i + 1].kind == LAYER_ACT
            || m->layers[i + 1].kind == LAYER_NOISE)) {
      act = m->layers[i + 1].act;
      alpha = m->layers[i + 1].alpha;
    }
    double gain = act == AE_ACT_RELU ? 2.0 : act == AE_ACT_LRELU ? 2.0 / (1.0 + alpha * alpha) : 1.0;
    double sd = sqrt (gain / (double) fan_in (l));
    for (size_t j = 0; j < l->w_n; j++)
      m->params[l->w_off + j] = (float) (sd * ae_rng_normal (&rng));
  }
  ae_model_params_changed (m);
}

ae_model *
ae_model_new (const char *spec, int channels, int height, int width, uint64_t seed,
              ae_error *err)
{
  ae_model *m = ae_model_build (spec, channels, height, width, err);
  if (m)
    ae_model_init_weights (m, seed);
  return m;
}

void
ae_model_free (ae_model *m)
{
  if (!m)
    return;
  free (m->spec);
  free (m->layers);
  free (m->params);
  free (m->stats);
  ae_latent_clear (m);
  ae_map_mean_clear (m);
  ae_meta_free (&m->meta);
  free (m);
}

/* ---- Accessors ---------------------------------------------------------------- */

const char *
ae_model_spec (const ae_model *m)
{
  return m->spec;
}

void
ae_model_input_shape (const ae_model *m, int *c, int *h, int *w)
{
  if (c)
    *c = m->in_c;
  if (h)
    *h = m->in_h;
  if (w)
    *w = m->in_w;
}

int
ae_model_is_fully_convolutional (const ae_model *m)
{
  return m->fully_conv;
}

int
ae_model_is_vae (const ae_model *m)
{
  return m->vae;
}

int
ae_model_is_noise_conditioned (const ae_model *m)
{
  return m->noise_conditioned;
}

int
ae_model_size_multiple (const ae_model *m)
{
  int mult = 1;
  for (int i = 0; i < m->nlayers; i++)
    if (m->layers[i].kind == LAYER_CONV && m->layers[i].s > 1)
      mult *= m->layers[i].s;
  return mult;
}

size_t
ae_model_latent_size (const ae_model *m, int height, int width)
{
  int shape[3] = { m->in_c, height, width };
  const int net_in[3] = { m->in_c, height, width };
  for (int i = 0; i <= m->latent_layer; i++) {
    int out[3];
    if (ae_layer_out_shape (&m->layers[i], shape, net_in, out, NULL) != AE_OK)
      return 0;
    memcpy (shape, out, sizeof out);
  }
  return shape_numel (shape);
}

size_t
ae_model_param_count (const ae_model *m)
{
  return m->nparams;
}

int
ae_model_layer_count (const ae_model *m)
{
  return m->nlayers;
}

int
ae_model_latent_layer (const ae_model *m)
{
  return m->latent_layer;
}

ae_status
ae_model_layer_info (const ae_model *m, int index, ae_layer_info *out)
{
  if (index < 0 || index >= m->nlayers)
    return AE_E_ARG;
  const ae_layer *l = &m->layers[index];
  memset (out, 0, sizeof *out);
  out->type = ae_layer_kind_name (l->kind);
  out->act = l->act;
  out->out_channels = l->out[0];
  out->kernel = l->k;
  out->stride = l->s;
  out->pad = l->p;
  memcpy (out->in_shape, l->in, sizeof l->in);
  memcpy (out->out_shape, l->out, sizeof l->out);
  out->params = l->w_n + l->b_n;
  return AE_OK;
}

/* ---- Metadata ----------------------------------------------------------------- */

static ae_status
check_user_key (const char *key)
{
  return key && strncmp (key, ARCH_PREFIX, strlen (ARCH_PREFIX)) ? AE_OK : AE_E_ARG;
}

ae_status
ae_model_set_int (ae_model *m, const char *key, int64_t value)
{
  return check_user_key (key) ? AE_E_ARG : ae_meta_set_int (&m->meta, key, value);
}

ae_status
ae_model_set_float (ae_model *m, const char *key, double value)
{
  return check_user_key (key) ? AE_E_ARG : ae_meta_set_float (&m->meta, key, value);
}

ae_status
ae_model_set_str (ae_model *m, const char *key, const char *value)
{
  return check_user_key (key) || !value ? AE_E_ARG : ae_meta_set_str (&m->meta, key, value);
}

int
ae_model_get_int (const ae_model *m, const char *key, int64_t *out)
{
  const ae_meta_entry *e = ae_meta_find (&m->meta, key);
  if (!e || e->type != AE_META_INT)
    return 0;
  *out = e->i;
  return 1;
}

int
ae_model_get_float (const ae_model *m, const char *key, double *out)
{
  const ae_meta_entry *e = ae_meta_find (&m->meta, key);
  if (!e || e->type != AE_META_FLOAT)
    return 0;
  *out = e->f;
  return 1;
}

const char *
ae_model_get_str (const ae_model *m, const char *key)
{
  const ae_meta_entry *e = ae_meta_find (&m->meta, key);
  return e && e->type == AE_META_STR ? e->s : NULL;
}

size_t
ae_model_meta_count (const ae_model *m)
{
  return m->meta.n;
}

ae_status
ae_model_meta_at (const ae_model *m, size_t i, const char **key, ae_meta_type *type,
                  int64_t *ival, double *fval, const char **sval)
{
  if (i >= m->meta.n)
    return AE_E_ARG;
  const ae_meta_entry *e = &m->meta.v[i];
  if (key)
    *key = e->key;
  if (type)
    *type = e->type;
  if (ival)
    *ival = e->i;
  if (fval)
    *fval = e->f;
  if (sval)
    *sval = e->s;
  return AE_OK;
}

/* ---- Saving and loading ------------------------------------------------------- */

/* Every parameter and statistic tensor of the model, in layer order, with
 * the shapes a reader would expect (PyTorch's conventions). */
static size_t
model_tensors (const ae_model *m, aem_tensor *t)
{
  size_t n = 0;
  for (int i = 0; i < m->nlayers; i++) {
    const ae_layer *l = &m->layers[i];
    aem_tensor *w = &t[n], *b = &t[n + 1];
    if (!l->w_n)
      continue;
    memset (w, 0, 2 * sizeof *w);
    w->data = m->params + l->w_off;
    b->data = m->params + l->b_off;
    b->ndim = 1;
    b->shape[0] = (int64_t) l->b_n;
    snprintf (b->name, sizeof b->name, "layer%d.%s", i, l->kind == LAYER_BN ? "beta" : "bias");
    snprintf (w->name, sizeof w->name, "layer%d.%s", i,
              l->kind == LAYER_BN ? "gamma" : l->kind == LAYER_NOISE ? "gain" : "weight");
    if (l->kind == LAYER_DENSE) {
      w->ndim = 2;
      w->shape[0] = l->out_c;
      w->shape[1] = (int64_t) shape_numel (l->in);
    } else if (l->kind == LAYER_BN || l->kind == LAYER_NOISE) {
      w->ndim = 1;
      w->shape[0] = l->in[0];
    } else {
      w->ndim = 4;
      w->shape[0] = l->kind == LAYER_CONV ? l->out_c : l->in[0];
      w->shape[1] = l->kind == LAYER_CONV ? l->in[0] : l->out_c;
      w->shape[2] = w->shape[3] = l->k;
    }
    n += 2;
    if (l->kind == LAYER_BN) {
      aem_tensor *mean = &t[n], *var = &t[n + 1];
      memset (mean, 0, 2 * sizeof *mean);
      mean->ndim = var->ndim = 1;
      mean->shape[0] = var->shape[0] = l->in[0];
      mean->data = m->stats + l->stat_off;
      var->data = m->stats + l->stat_off + l->in[0];
      snprintf (mean->name, sizeof mean->name, "layer%d.running_mean", i);
      snprintf (var->name, sizeof var->name, "layer%d.running_var", i);
      n += 2;
    }
  }
  return n;
}

/* The latent Gaussian's two tensors, after the architecture's. */
static size_t
latent_tensors (const ae_model *m, aem_tensor *t)
{
  if (!m->latent_k)
    return 0;
  memset (t, 0, 2 * sizeof *t);
  snprintf (t[0].name, sizeof t[0].name, "%s", AE_LATENT_MEAN_TENSOR);
  snprintf (t[1].name, sizeof t[1].name, "%s", AE_LATENT_WHITEN_TENSOR);
  t[0].ndim = 1;
  t[1].ndim = 2;
  t[0].shape[0] = t[1].shape[0] = t[1].shape[1] = m->latent_k;
  t[0].data = m->latent_mean;
  t[1].data = m->latent_whiten;
  return 2;
}

/* The mean map's tensor, after those. */
static size_t
map_mean_tensor (const ae_model *m, aem_tensor *t)
{
  if (!m->map_mean)
    return 0;
  memset (t, 0, sizeof *t);
  snprintf (t->name, sizeof t->name, "%s", AE_MAP_MEAN_TENSOR);
  t->ndim = 2;
  t->shape[0] = m->in_h;
  t->shape[1] = m->in_w;
  t->data = m->map_mean;
  return 1;
}

static size_t
max_tensors (const ae_model *m)
{
  return 4 * (size_t) m->nlayers + 3;
}

ae_status
ae_model_save (const ae_model *m, const char *path, ae_error *err)
{
  if (!m || !path)
    return ae_fail (err, AE_E_ARG, "no model or path to save");
  /* Never write a file the loader would refuse. */
  ae_frame_scoring fs;
  ae_error why = { AE_OK, "" };
  if (ae_model_frame_scoring (m, &fs, &why) != AE_OK)
    return ae_fail (err, AE_E_ARG, "not saving %s: %s", path, why.message);
  ae_meta meta;
  ae_meta_init (&meta);
  aem_tensor *t = calloc (max_tensors (m) + 1, sizeof *t);
  ae_status st = t ? AE_OK : AE_E_NOMEM;
  if (st == AE_OK)
    st = ae_meta_set_str (&meta, ARCH_PREFIX "spec", m->spec);
  if (st == AE_OK)
    st = ae_meta_set_int (&meta, ARCH_PREFIX "channels", m->in_c);
  if (st == AE_OK)
    st = ae_meta_set_int (&meta, ARCH_PREFIX "height", m->in_h);
  if (st == AE_OK)
    st = ae_meta_set_int (&meta, ARCH_PREFIX "width", m->in_w);
  for (size_t i = 0; st == AE_OK && i < m->meta.n; i++) {
    const ae_meta_entry *e = &m->meta.v[i];
    st = e->type == AE_META_INT ? ae_meta_set_int (&meta, e->key, e->i)
       : e->type == AE_META_FLOAT ? ae_meta_set_float (&meta, e->key, e->f)
       : ae_meta_set_str (&meta, e->key, e->s);
  }
  if (st != AE_OK)
    st = ae_fail (err, st, "cannot prepare metadata for %s", path);
  else {
    size_t n = model_tensors (m, t);
    n += latent_tensors (m, t + n);
    n += map_mean_tensor (m, t + n);
    st = aem_write (path, &meta, t, n, err);
  }
  free (t);
  ae_meta_free (&meta);
  return st;
}

static ae_status
meta_dim (const ae_meta *meta, const char *key, int *out, ae_error *err)
{
  const ae_meta_entry *e = ae_meta_find (meta, key);
  if (!e || e->type != AE_META_INT || e->i <= 0 || e->i > 65536)
    return ae_fail (err, AE_E_FORMAT, "model file lacks a valid '%s'", key);
  *out = (int) e->i;
  return AE_OK;
}

/* After the architecture's tensors: optionally the latent Gaussian's two,
 * then optionally the mean map; nothing else. */
static ae_status
adopt_extra_tensors (ae_model *m, const aem_tensor *extra, size_t n, ae_error *err)
{
  size_t used = 0;
  ae_status st = AE_OK;
  if (n >= 2 && strcmp (extra[0].name, AE_MAP_MEAN_TENSOR) != 0) {
    st = ae_latent_adopt (m, &extra[0], &extra[1], err);
    used = 2;
  } else if (n == 1 && strncmp (extra[0].name, "latent.", 7) == 0) {
    return ae_fail (err, AE_E_FORMAT, "tensor '%s' alone: a latent Gaussian needs '%s' and '%s'",
                    extra[0].name, AE_LATENT_MEAN_TENSOR, AE_LATENT_WHITEN_TENSOR);
  }
  if (st == AE_OK && used < n) {
    st = ae_map_mean_adopt (m, &extra[used], err);
    used++;
  }
  if (st == AE_OK && used < n)
    st = ae_fail (err, AE_E_FORMAT, "model file has %zu tensors more than its architecture "
                  "needs; at most the latent Gaussian's 2 and the mean map", n);
  return st;
}

/* The file's tensors must be exactly the architecture's, same order,
 * optionally followed by the latent Gaussian's two and the mean map. */
static ae_status
adopt_tensors (ae_model *m, const aem_tensor *got, size_t ngot, ae_error *err)
{
  aem_tensor *want = calloc (max_tensors (m) + 1, sizeof *want);
  if (!want)
    return ae_fail (err, AE_E_NOMEM, "out of memory");
  size_t nwant = model_tensors (m, want);
  ae_status st = AE_OK;
  if (ngot < nwant || ngot > nwant + 3)
    st = ae_fail (err, AE_E_FORMAT, "model file has %zu tensors, its architecture needs %zu "
                  "(and 2 for a latent Gaussian, 1 for a mean map)", ngot, nwant);
  for (size_t i = 0; st == AE_OK && i < nwant; i++) {
    const aem_tensor *a = &want[i], *b = &got[i];
    int same = strcmp (a->name, b->name) == 0 && a->ndim == b->ndim;
    for (int d = 0; same && d < a->ndim; d++)
      same = a->shape[d] == b->shape[d];
    if (!same) {
      st = ae_fail (err, AE_E_FORMAT, "tensor %zu is '%s', the architecture expects '%s' of "
                    "another shape", i, b->name, a->name);
      break;
    }
    size_t n = aem_tensor_numel (a);
    for (size_t j = 0; j < n; j++)
      if (!isfinite (b->data[j])) {
        st = ae_fail (err, AE_E_FORMAT, "tensor '%s' holds a non-finite value", b->name);
        break;
      }
    if (st == AE_OK)
      memcpy (a->data, b->data, n * sizeof (float));
  }
  if (st == AE_OK && ngot > nwant)
    st = adopt_extra_tensors (m, got + nwant, ngot - nwant, err);
  free (want);
  return st;
}

static ae_model *
model_from_parsed (ae_meta *meta, const aem_tensor *t, size_t nt, ae_error *err)
{
  int c = 0, h = 0, w = 0;
  const ae_meta_entry *spec = ae_meta_find (meta, ARCH_PREFIX "spec");
  if (!spec || spec->type != AE_META_STR) {
    ae_fail (err, AE_E_FORMAT, "model file lacks its architecture ('arch.spec')");
    return NULL;
  }
  if (meta_dim (meta, ARCH_PREFIX "channels", &c, err) || meta_dim (meta, ARCH_PREFIX "height", &h, err)
      || meta_dim (meta, ARCH_PREFIX "width", &w, err))
    return NULL;
  ae_model *m = ae_model_build (spec->s, c, h, w, err);
  if (!m) {
    if (err)
      err->status = AE_E_FORMAT;
    return NULL;
  }
  ae_status st = adopt_tensors (m, t, nt, err);
  for (size_t i = 0; st == AE_OK && i < meta->n; i++) {
    const ae_meta_entry *e = &meta->v[i];
    if (check_user_key (e->key) != AE_OK)
      continue;
    st = e->type == AE_META_INT ? ae_meta_set_int (&m->meta, e->key, e->i)
       : e->type == AE_META_FLOAT ? ae_meta_set_float (&m->meta, e->key, e->f)
       : ae_meta_set_str (&m->meta, e->key, e->s);
    if (st != AE_OK)
      ae_fail (err, st, "out of memory copying metadata");
  }
  ae_frame_scoring fs;
  if (st == AE_OK)
    st = ae_model_frame_scoring (m, &fs, err);
  if (st != AE_OK) {
    ae_model_free (m);
    return NULL;
  }
  return m;
}

ae_model *
ae_model_load_memory (const void *data, size_t len, ae_error *err)
{
  ae_meta meta;
  aem_tensor *t = NULL;
  size_t nt = 0;
  if (!data) {
    ae_fail (err, AE_E_ARG, "no model data");
    return NULL;
  }
  ae_meta_init (&meta);
  if (aem_parse (data, len, &meta, &t, &nt, err) != AE_OK)
    return NULL;
  ae_model *m = model_from_parsed (&meta, t, nt, err);
  aem_tensors_free (t, nt);
  ae_meta_free (&meta);
  return m;
}

ae_model *
ae_model_load (const char *path, ae_error *err)
{
  void *buf = NULL;
  size_t len = 0;
  if (!path) {
    ae_fail (err, AE_E_ARG, "no model path");
    return NULL;
  }
  if (aem_read_file (path, &buf, &len, err) != AE_OK)
    return NULL;
  ae_model *m = ae_model_load_memory (buf, len, err);
  if (!m && err) {
    /* Prefix the path; a long message is cut, never overflowed. */
    char msg[2 * sizeof err->message];
    snprintf (msg, sizeof msg, "%s: %s", path, err->message);
    msg[sizeof err->message - 1] = '\0';
    memcpy (err->message, msg, sizeof err->message);
  }
  free (buf);
  return m;
}
