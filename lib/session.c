/* Sessions: the buffers for running a model on one batch size and frame
 * size. Everything is sized in ae_session_reshape, so forward and backward
 * never allocate. */
#include "nn.h"

#include <stdlib.h>
#include <string.h>

static size_t
numel3 (const int s[3])
{
  return (size_t) s[0] * s[1] * s[2];
}

static void
free_packs (weight_pack *p, int nlayers)
{
  if (p)
    for (int i = 0; i < nlayers; i++)
      free (p[i].w);
  free (p);
}

static void
free_buffers (ae_session *s)
{
  int nl = s->model->nlayers;
  if (s->act)
    for (int i = 0; i <= nl; i++)
      if (i > 0 || s->act[0] != s->input)
        free (s->act[i]);
  if (s->bn)
    for (int i = 0; i < nl; i++) {
      free (s->bn[i].xhat);
      free (s->bn[i].invstd);
    }
  free (s->act);
  free (s->bn);
  free (s->shape);
  free (s->numel);
  free (s->ping);
  free (s->pong);
  free (s->input);
  free (s->output);
  free (s->latent);
  free (s->noise);
  free (s->col);
  free (s->tmp_a);
  free (s->tmp_b);
  free_packs (s->narrow_fwd, nl);
  free_packs (s->narrow_back, nl);
  free_packs (s->wino, nl);
  free (s->eps);
  free (s->grad_a);
  free (s->grad_b);
  s->act = NULL;
  s->bn = NULL;
  s->shape = NULL;
  s->numel = NULL;
  s->ping = s->pong = s->input = s->output = s->latent = s->noise = s->col = NULL;
  s->tmp_a = s->tmp_b = s->eps = s->grad_a = s->grad_b = NULL;
  s->narrow_fwd = s->narrow_back = s->wino = NULL;
}

/* Shapes of every activation for this frame size; fails if the model
 * cannot take it (dense layers fix the size; strides must divide it). */
static ae_status
infer_shapes (const ae_model *m, int h, int w, int (*shape)[3], ae_error *err)
{
  shape[0][0] = m->in_c;
  shape[0][1] = h;
  shape[0][2] = w;
  for (int i = 0; i < m->nlayers; i++) {
    const ae_layer *l = &m->layers[i];
    if (l->kind == LAYER_DENSE && memcmp (shape[i], l->in, sizeof l->in) != 0)
      return ae_fail (err, AE_E_SHAPE, "this model takes only %dx%d frames (dense layer %d), "
                      "got %dx%d", m->in_w, m->in_h, i, w, h);
    ae_error why;
    if (ae_layer_out_shape (l, shape[i], shape[0], shape[i + 1], &why) != AE_OK)
      return ae_fail (err, AE_E_SHAPE, "%dx%d frames do not fit layer %d: %s", w, h, i,
                      why.message);
  }
  if (memcmp (shape[m->nlayers], shape[0], sizeof shape[0]) != 0)
    return ae_fail (err, AE_E_SHAPE, "a %dx%d frame comes out %dx%d; use sizes that are "
                    "multiples of %d", w, h, shape[m->nlayers][2], shape[m->nlayers][1],
                    ae_model_size_multiple (m));
  return AE_OK;
}

typedef struct work_sizes {
  size_t act_max, col, tmp, eps;
} work_sizes;

static work_sizes
measure_work (const ae_model *m, int n, int (*shape)[3], int training)
{
  work_sizes ws = { 0, 1, 1, 1 };
  for (int i = 0; i <= m->nlayers; i++) {
    size_t e = (size_t) n * numel3 (shape[i]);
    if (e > ws.act_max)
      ws.act_max = e;
  }
  for (int i = 0; i < m->nlayers; i++) {
    const ae_layer *l = &m->layers[i];
    const int *in = shape[i], *out = shape[i + 1];
    size_t rows = 0, total = 0;
    wino_geom wg;
    if (layer_wino_geom (l, in, out, &wg) && ae_wino_scratch (&wg) > ws.col)
      ws.col = ae_wino_scratch (&wg);
    for (int back = 0; back <= training; back++) { /* input gradients: training only */
      narrow_geom ng;
      if (layer_narrow_geom (l, in, out, back, &ng) && ae_narrow_scratch (&ng) > ws.col)
        ws.col = ae_narrow_scratch (&ng);
    }
    if (l->kind == LAYER_CONV) {
      rows = (size_t) in[0] * l->k * l->k;
      total = (size_t) n * out[1] * out[2];
      conv_geom g = { in[0], in[1], in[2], l->k, l->s, l->p, out[1], out[2], n };
      if (ae_direct_conv_fits (&g) && ae_direct_conv_scratch (&g) > ws.col)
        ws.col = ae_direct_conv_scratch (&g);
    } else if (l->kind == LAYER_DECONV) {
      rows = (size_t) out[0] * l->k * l->k;
      total = (size_t) n * in[1] * in[2];
    } else if (l->kind == LAYER_DENSE) {
      size_t t = (size_t) n * (numel3 (in) > numel3 (out) ? numel3 (in) : numel3 (out));
      if (t > ws.tmp)
        ws.tmp = t;
    } else if (l->kind == LAYER_SAMPLE) {
      ws.eps = (size_t) n * numel3 (out);
    }
    if (rows && rows * ae_col_chunk (rows, total, AE_COL_BUDGET) > ws.col)
      ws.col = rows * ae_col_chunk (rows, total, AE_COL_BUDGET);
  }
  return ws;
}

static float *
alloc_floats (size_t n, int *failed)
{
  float *p = malloc ((n ? n : 1) * sizeof (float));
  if (!p)
    *failed = 1;
  return p;
}

enum pack_kind { PACK_NARROW_FWD, PACK_NARROW_BACK, PACK_WINO };

/* Floats of layer i's weights packed for `kind`, 0 where it does not run
 * there (winograd.c takes a layer's forward pass before narrow.c). */
static size_t
pack_floats (const ae_session *s, int i, enum pack_kind kind)
{
  const ae_layer *l = &s->model->layers[i];
  const int *in = s->shape[i], *out = s->shape[i + 1];
  wino_geom wg;
  narrow_geom ng;
  int wino = layer_wino_geom (l, in, out, &wg);
  if (kind == PACK_WINO)
    return wino ? ae_wino_packed_floats (&wg) : 0;
  if (kind == PACK_NARROW_FWD && wino)
    return 0;
  return layer_narrow_geom (l, in, out, kind == PACK_NARROW_BACK, &ng) ? ae_narrow_packed_floats (&ng)
                                                                        : 0;
}

/* Room for every layer's weights packed for one kernel and direction;
 * packed at first use (rev = 0). */
static weight_pack *
allocate_packs (ae_session *s, enum pack_kind kind, int *failed)
{
  const ae_model *m = s->model;
  weight_pack *p = calloc ((size_t) m->nlayers, sizeof *p);
  if (!p) {
    *failed = 1;
    return NULL;
  }
  for (int i = 0; i < m->nlayers; i++) {
    size_t floats = pack_floats (s, i, kind);
    if (floats)
      p[i].w = alloc_floats (floats, failed);
  }
  return p;
}

static ae_status
allocate (ae_session *s, int n, int h, int w, ae_error *err)
{
  const ae_model *m = s->model;
  int nl = m->nlayers, failed = 0;
  s->shape = malloc ((size_t) (nl + 1) * sizeof *s->shape);
  s->numel = malloc ((size_t) (nl + 1) * sizeof *s->numel);
  s->act = calloc ((size_t) nl + 1, sizeof *s->act);
  if (!s->shape || !s->numel || !s->act)
    return ae_fail (err, AE_E_NOMEM, "out of memory");
  ae_status st = infer_shapes (m, h, w, s->shape, err);
  if (st != AE_OK)
    return st;
  for (int i = 0; i <= nl; i++)
    s->numel[i] = (size_t) n * numel3 (s->shape[i]);
  work_sizes ws = measure_work (m, n, s->shape, s->training);
  s->col = alloc_floats (ws.col, &failed);
  s->tmp_a = alloc_floats (ws.tmp, &failed);
  s->tmp_b = alloc_floats (ws.tmp, &failed);
  s->input = alloc_floats (s->numel[0], &failed);
  s->output = alloc_floats (s->numel[nl], &failed);
  s->latent = alloc_floats (s->numel[m->latent_layer + 1], &failed);
  s->noise = calloc ((size_t) n, sizeof *s->noise);
  failed |= !s->noise;
  s->wino = allocate_packs (s, PACK_WINO, &failed);
  s->narrow_fwd = allocate_packs (s, PACK_NARROW_FWD, &failed);
  if (s->training)
    s->narrow_back = allocate_packs (s, PACK_NARROW_BACK, &failed);
  if (s->training) {
    s->act[0] = s->input;
    for (int i = 1; i <= nl; i++)
      s->act[i] = alloc_floats (s->numel[i], &failed);
    s->bn = calloc ((size_t) nl, sizeof *s->bn);
    failed |= !s->bn;
    for (int i = 0; !failed && i < nl; i++)
      if (m->layers[i].kind == LAYER_BN) {
        s->bn[i].xhat = alloc_floats (s->numel[i], &failed);
        s->bn[i].invstd = alloc_floats ((size_t) s->shape[i][0], &failed);
      }
    s->eps = alloc_floats (ws.eps, &failed);
    s->grad_a = alloc_floats (ws.act_max, &failed);
    s->grad_b = alloc_floats (ws.act_max, &failed);
  } else {
    s->ping = alloc_floats (ws.act_max, &failed);
    s->pong = alloc_floats (ws.act_max, &failed);
  }
  if (failed)
    return ae_fail (err, AE_E_NOMEM, "out of memory for a %dx%d session of batch %d", w, h, n);
  s->batch = n;
  s->h = h;
  s->w = w;
  return AE_OK;
}

ae_status
ae_session_reshape (ae_session *s, int batch, int height, int width, ae_error *err)
{
  if (!s || batch <= 0 || height <= 0 || width <= 0)
    return ae_fail (err, AE_E_ARG, "bad session shape %d x %dx%d", batch, width, height);
  if (s->act && batch == s->batch && height == s->h && width == s->w)
    return AE_OK;
  if (s->act && batch <= (int) s->allocated_for[0] && height == (int) s->allocated_for[1]
      && width == (int) s->allocated_for[2]) {
    /* A smaller batch (the last one of an epoch) fits the same buffers. */
    s->batch = batch;
    for (int i = 0; i <= s->model->nlayers; i++)
      s->numel[i] = (size_t) batch * numel3 (s->shape[i]);
    ae_session_set_noise (s, NULL);
    return AE_OK;
  }
  free_buffers (s);
  ae_status st = allocate (s, batch, height, width, err);
  if (st != AE_OK) {
    free_buffers (s);
    return st;
  }
  s->allocated_for[0] = (size_t) batch;
  s->allocated_for[1] = (size_t) height;
  s->allocated_for[2] = (size_t) width;
  return AE_OK;
}

ae_session *
ae_session_new_mode (const ae_model *m, int batch, int h, int w, int training, ae_error *err)
{
  if (!m) {
    ae_fail (err, AE_E_ARG, "no model");
    return NULL;
  }
  ae_session *s = calloc (1, sizeof *s);
  if (!s) {
    ae_fail (err, AE_E_NOMEM, "out of memory");
    return NULL;
  }
  s->model = m;
  s->training = training;
  s->col_budget = AE_COL_BUDGET;
  if (ae_session_reshape (s, batch, h, w, err) != AE_OK) {
    ae_session_free (s);
    return NULL;
  }
  return s;
}

ae_session *
ae_session_new (const ae_model *m, int batch, int height, int width, ae_error *err)
{
  return ae_session_new_mode (m, batch, height, width, 0, err);
}

void
ae_session_free (ae_session *s)
{
  if (!s)
    return;
  free_buffers (s);
  free (s);
}

void
ae_session_set_noise (ae_session *s, const float *sigma)
{
  for (int i = 0; i < s->batch; i++)
    s->noise[i] = sigma ? sigma[i] : 0.0f;
}

size_t
ae_session_latent_size (const ae_session *s)
{
  return numel3 (s->shape[s->model->latent_layer + 1]);
}

static layer_ctx
context (ae_session *s, int i)
{
  layer_ctx c = { s->model, &s->model->layers[i], s->batch, s->shape[i], s->shape[i + 1], s, i };
  return c;
}

float *
ae_session_run_cnhw (ae_session *s, const float *x, int stop_after)
{
  s->net_in = x;
  return ae_session_run_layers (s, x, 0, stop_after < 0 ? s->model->nlayers - 1 : stop_after);
}

float *
ae_session_run_layers (ae_session *s, const float *x, int first, int last)
{
  const ae_model *m = s->model;
  const float *in = x;
  float *out = NULL;
  for (int i = first; i <= last; i++) {
    const ae_layer *l = &m->layers[i];
    layer_ctx c = context (s, i);
    out = s->training ? s->act[i + 1] : (in == s->ping ? s->pong : s->ping);
    if (i < last && m->layers[i + 1].kind == LAYER_NOISE
        && conv_noise_forward (&c, &m->layers[i + 1], in, out))
      i++; /* the noise layer is done too */
    else if (!layer_forward (&c, in, out))
      act_forward (l->act, l->alpha, out, s->numel[i + 1]);
    in = out;
  }
  return out;
}

/* NCHW in, CNHW for the network; a batch of one needs no copy. */
static const float *
to_network_layout (ae_session *s, const float *input)
{
  if (s->batch == 1 || s->model->in_c == 1)
    return input;
  ae_cnhw_from_nchw (input, s->input, s->batch, s->model->in_c, (size_t) s->h * s->w);
  return s->input;
}

static const float *
to_user_layout (ae_session *s, const float *y, int channels, size_t plane, float *dst)
{
  if (s->batch == 1 || channels == 1)
    return y;
  ae_nchw_from_cnhw (y, dst, s->batch, channels, plane);
  return dst;
}

const float *
ae_session_forward (ae_session *s, const float *input)
{
  float *y = ae_session_run_cnhw (s, to_network_layout (s, input), -1);
  const int *sh = s->shape[s->model->nlayers];
  return to_user_layout (s, y, sh[0], (size_t) sh[1] * sh[2], s->output);
}

const float *
ae_session_encode (ae_session *s, const float *input)
{
  int li = s->model->latent_layer;
  float *y = ae_session_run_cnhw (s, to_network_layout (s, input), li);
  const int *sh = s->shape[li + 1];
  return to_user_layout (s, y, sh[0], (size_t) sh[1] * sh[2], s->latent);
}

void
ae_session_backward (ae_session *s, float *gout, float *grads, float kl_scale)
{
  const ae_model *m = s->model;
  float *g = gout;
  s->kl_scale = kl_scale;
  for (int i = m->nlayers - 1; i >= 0; i--) {
    const ae_layer *l = &m->layers[i];
    layer_ctx c = context (s, i);
    act_backward (l->act, l->alpha, s->act[i + 1], g, s->numel[i + 1]);
    float *dx = i == 0 ? NULL : (g == s->grad_a ? s->grad_b : s->grad_a);
    layer_backward (&c, s->act[i], s->act[i + 1], g, dx, grads);
    g = dx;
  }
}
