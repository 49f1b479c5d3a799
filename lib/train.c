/* Mini-batch training: seeded split and shuffling, input noise and flips
 * for denoising, Adam or SGD with momentum, weight decay, gradient
 * clipping, early stopping that restores the best weights. */
#include "nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void
ae_train_opts_init (ae_train_opts *o)
{
  memset (o, 0, sizeof *o);
  o->epochs = 20;
  o->batch = 64;
  o->lr = 1e-3f;
  o->optimizer = AE_OPT_ADAM;
  o->momentum = 0.9f;
  o->beta1 = 0.9f;
  o->beta2 = 0.999f;
  o->loss = AE_LOSS_MSE;
  o->ssim_window = 7;
  o->kl_beta = 1.0f;
  o->val_split = 0.1f;
  o->repeat = 1;
  o->seed = 1;
}

static double
now_s (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (double) ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The split is the tail of one seeded permutation, so callers can find
 * the held-out samples again (ae-train calibrates on them). */
static size_t
validation_count (size_t count, float val_split)
{
  if (!(val_split > 0.0f) || count < 2)
    return 0;
  size_t v = (size_t) floor ((double) val_split * (double) count + 0.5);
  if (v < 1)
    v = 1;
  return v < count ? v : count - 1;
}

static void
split_permutation (size_t count, uint64_t seed, size_t *perm)
{
  ae_rng rng;
  ae_rng_seed (&rng, seed ^ 0x73706c6974ULL);
  for (size_t i = 0; i < count; i++)
    perm[i] = i;
  ae_rng_shuffle (&rng, perm, count);
}

size_t
ae_validation_indices (size_t count, float val_split, uint64_t seed, size_t *out)
{
  size_t v = validation_count (count, val_split);
  size_t *perm = malloc ((count ? count : 1) * sizeof *perm);
  if (!perm)
    return 0;
  split_permutation (count, seed, perm);
  memcpy (out, perm + count - v, v * sizeof *perm);
  free (perm);
  return v;
}

/* ---- Trainer state ---------------------------------------------------------------- */

typedef struct trainer {
  ae_model *m;
  const ae_dataset *data;
  const ae_train_opts *o;
  ae_shards *shards;
  ae_session *eval;
  int batch;
  size_t *perm, ntrain, nval;
  float *grads, *mom1, *mom2;
  float *best_params, *best_stats;
  float *target, *gout, *loss_scratch;
  ae_rng rng;
  long step;
  float lr; /* this epoch's learning rate */
  int h, w; /* sample size seen by the network: the crop, or the frame */
} trainer;

static void
trainer_free (trainer *t)
{
  ae_shards_free (t->shards);
  ae_session_free (t->eval);
  free (t->perm);
  free (t->grads);
  free (t->mom1);
  free (t->mom2);
  free (t->best_params);
  free (t->best_stats);
  free (t->target);
  free (t->loss_scratch);
}

static ae_status
check_inputs (const ae_model *m, const ae_dataset *d, const ae_train_opts *o, ae_error *err)
{
  if (!m || !d || !o || !d->x)
    return ae_fail (err, AE_E_ARG, "no model, data or options");
  if (d->count == 0)
    return ae_fail (err, AE_E_ARG, "no training samples");
  if (d->channels != m->in_c)
    return ae_fail (err, AE_E_SHAPE, "data has %d channels, the model %d", d->channels, m->in_c);
  if (o->epochs <= 0 || o->batch <= 0 || !(o->lr > 0.0f) || !(o->val_split >= 0.0f)
      || (unsigned) o->lr_schedule > AE_LR_COSINE
      || o->val_split >= 1.0f || o->noise_min < 0.0f || o->noise_max < o->noise_min
      || !(o->synthetic_defects >= 0.0f && o->synthetic_defects <= 1.0f)
      || o->weight_decay < 0.0f || o->clip_norm < 0.0f || o->patience < 0 || o->repeat < 1
      || o->threads < 0 || o->threads > 256 || o->rotate_inputs < 0 || o->rotate_inputs > 1
      || o->translate_inputs < 0)
    return ae_fail (err, AE_E_ARG, "training options out of range");
  if (o->loss == AE_LOSS_SSIM && o->ssim_window < 1)
    return ae_fail (err, AE_E_ARG, "SSIM window must be at least 1");
  if (o->crop_width < 0 || o->crop_height < 0 || o->crop_width > d->width
      || o->crop_height > d->height || (!o->crop_width != !o->crop_height))
    return ae_fail (err, AE_E_ARG, "crop %dx%d does not fit %dx%d frames", o->crop_width,
                    o->crop_height, d->width, d->height);
  int h = o->crop_height ? o->crop_height : d->height, w = o->crop_width ? o->crop_width : d->width;
  if (o->rotate_inputs && h != w)
    return ae_fail (err, AE_E_ARG, "rotated inputs need square samples, not %dx%d (crop to a "
                    "square)", w, h);
  if (o->translate_inputs > ((h < w ? h : w) - 1) / 2) /* 2 N >= side, without overflow */
    return ae_fail (err, AE_E_ARG, "inputs moved by up to %d pixels need samples over twice that "
                    "size, not %dx%d", o->translate_inputs, w, h);
  return AE_OK;
}

static ae_status
trainer_init (trainer *t, ae_model *m, const ae_dataset *d, const ae_train_opts *o,
              ae_error *err)
{
  memset (t, 0, sizeof *t);
  t->m = m;
  t->data = d;
  t->o = o;
  ae_status st = check_inputs (m, d, o, err);
  if (st != AE_OK)
    return st;
  t->h = o->crop_height ? o->crop_height : d->height;
  t->w = o->crop_width ? o->crop_width : d->width;
  t->nval = validation_count (d->count, o->val_split);
  t->ntrain = d->count - t->nval;
  int batch = (size_t) o->batch < t->ntrain ? o->batch : (int) t->ntrain;
  t->batch = batch;
  t->shards = ae_shards_new (m, o->threads > 0 ? o->threads : 1, batch, t->h, t->w, o->loss,
                             o->ssim_window, o->seed, err);
  if (!t->shards)
    return err ? err->status : AE_E_SHAPE;
  if (t->nval) {
    t->eval = ae_session_new_mode (m, batch, t->h, t->w, 0, err);
    if (!t->eval)
      return err ? err->status : AE_E_SHAPE;
  }
  size_t sample = (size_t) d->channels * t->h * t->w, np = m->nparams ? m->nparams : 1;
  t->perm = malloc (d->count * sizeof *t->perm);
  t->grads = calloc (np, sizeof (float));
  t->mom1 = calloc (np, sizeof (float));
  t->mom2 = calloc (np, sizeof (float));
  t->best_params = malloc (np * sizeof (float));
  t->best_stats = malloc ((m->nstats ? m->nstats : 1) * sizeof (float));
  t->target = malloc ((size_t) batch * sample * sizeof (float));
  t->loss_scratch = malloc (ae_loss_scratch_floats (o->loss, t->h, t->w) * sizeof (float));
  if (!t->perm || !t->grads || !t->mom1 || !t->mom2 || !t->best_params || !t->best_stats
      || !t->target || !t->loss_scratch)
    return ae_fail (err, AE_E_NOMEM, "out of memory for training");
  split_permutation (d->count, o->seed, t->perm);
  ae_rng_seed (&t->rng, o->seed);
  return AE_OK;
}

/* ---- Batches -------------------------------------------------------------------------- */

/* Copies the h x w window at (x0, y0) of a plane `stride` floats wide. */
static void
copy_window (const float *src, int stride, int x0, int y0, float *dst, int h, int w, int flip)
{
  for (int y = 0; y < h; y++) {
    const float *row = src + (size_t) (y0 + y) * stride + x0;
    float *out = dst + (size_t) y * w;
    if (!flip)
      memcpy (out, row, (size_t) w * sizeof (float));
    else
      for (int x = 0; x < w; x++)
        out[x] = row[w - 1 - x];
  }
}

static int
clamp_int (int v, int lo, int hi)
{
  return v < lo ? lo : v > hi ? hi : v;
}

/* How a training input differs from its target's window: mirrored (both
 * share it), moved by (dx, dy) pixels, then turned by `turns` quarter turns
 * anticlockwise (the turn needs a square window). */
typedef struct window_move {
  int flip, turns, dx, dy;
} window_move;

/* Copies the h x w window at (x0, y0) of a frame_w x frame_h plane as the
 * input `mv` describes. A move reads beyond the window: frame content where
 * there is some (crops), the frame's edge repeated where there is none. */
static void
copy_window_moved (const float *src, int frame_w, int frame_h, int x0, int y0, float *dst, int h,
                   int w, const window_move *mv)
{
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      int u = y, v = x; /* the moved window's position that lands at (y, x) */
      switch (mv->turns) {
      case 1: u = x; v = w - 1 - y; break;
      case 2: u = h - 1 - y; v = w - 1 - x; break;
      case 3: u = h - 1 - x; v = y; break;
      default: break;
      }
      u -= mv->dy;
      v -= mv->dx;
      if (mv->flip)
        v = w - 1 - v;
      int fy = clamp_int (y0 + u, 0, frame_h - 1), fx = clamp_int (x0 + v, 0, frame_w - 1);
      dst[(size_t) y * w + x] = src[(size_t) fy * frame_w + fx];
    }
}

static void
add_noise (float *v, size_t n, float sigma, ae_rng *rng)
{
  if (sigma <= 0.0f)
    return;
  for (size_t i = 0; i < n; i++) {
    float x = v[i] + sigma * (float) ae_rng_normal (rng);
    v[i] = x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x;
  }
}

/* Gathers samples idx[0..n) into CNHW input and target buffers: a random
 * crop (training) or the centre crop (validation), maybe flipped, maybe
 * moved, turned and given a synthetic defect (training), with Gaussian
 * noise of a random sigma; the move, the turn, the defect and the noise on
 * the input only, the sigma in noise[i] (what noise layers are told). */
static void
fill_batch (trainer *t, const size_t *idx, int n, float *input, float *target, float *noise,
            ae_rng *rng, int augment)
{
  const ae_dataset *d = t->data;
  int c = d->channels, h = t->h, w = t->w;
  size_t src_plane = (size_t) d->height * d->width, sample = (size_t) c * src_plane;
  size_t plane = (size_t) h * w;
  for (int i = 0; i < n; i++) {
    const float *x = d->x + idx[i] * sample;
    const float *y = d->target ? d->target + idx[i] * sample : x;
    int x0 = (d->width - w) / 2, y0 = (d->height - h) / 2;
    if (augment) {
      x0 = (int) ae_rng_below (rng, (size_t) (d->width - w + 1));
      y0 = (int) ae_rng_below (rng, (size_t) (d->height - h + 1));
    }
    int flip = augment && t->o->augment_flip && ae_rng_uniform (rng) < 0.5;
    float sigma = t->o->noise_min + (float) ae_rng_uniform (rng) * (t->o->noise_max - t->o->noise_min);
    noise[i] = sigma;
    window_move mv = { flip, 0, 0, 0 };
    if (augment && t->o->rotate_inputs)
      mv.turns = (int) ae_rng_below (rng, 4);
    if (augment && t->o->translate_inputs) {
      int span = 2 * t->o->translate_inputs + 1;
      mv.dx = (int) ae_rng_below (rng, (size_t) span) - t->o->translate_inputs;
      mv.dy = (int) ae_rng_below (rng, (size_t) span) - t->o->translate_inputs;
    }
    for (int ch = 0; ch < c; ch++) {
      float *in = input + ((size_t) ch * n + i) * plane;
      if (mv.turns || mv.dx || mv.dy)
        copy_window_moved (x + ch * src_plane, d->width, d->height, x0, y0, in, h, w, &mv);
      else
        copy_window (x + ch * src_plane, d->width, x0, y0, in, h, w, flip);
      copy_window (y + ch * src_plane, d->width, x0, y0, target + ((size_t) ch * n + i) * plane,
                   h, w, flip);
    }
    if (augment && t->o->synthetic_defects > 0.0f
        && ae_rng_uniform (rng) < t->o->synthetic_defects)
      ae_add_synthetic_defect (input + (size_t) i * plane, c, (size_t) n * plane, h, w, rng);
    for (int ch = 0; ch < c; ch++)
      add_noise (input + ((size_t) ch * n + i) * plane, plane, sigma, rng);
  }
}

/* ---- Optimisation ------------------------------------------------------------------- */

static void
add_weight_decay (const ae_model *m, float *grads, float wd)
{
  for (int i = 0; i < m->nlayers; i++) {
    const ae_layer *l = &m->layers[i];
    if (l->kind == LAYER_BN || !l->w_n)
      continue;
    for (size_t j = 0; j < l->w_n; j++)
      grads[l->w_off + j] += wd * m->params[l->w_off + j];
  }
}

static void
clip_gradients (float *g, size_t n, float max_norm)
{
  double ss = 0.0;
  for (size_t i = 0; i < n; i++)
    ss += (double) g[i] * g[i];
  double norm = sqrt (ss);
  if (norm > max_norm) {
    float k = (float) (max_norm / norm);
    for (size_t i = 0; i < n; i++)
      g[i] *= k;
  }
}

static void
optimizer_step (trainer *t)
{
  const ae_train_opts *o = t->o;
  float *p = t->m->params, *g = t->grads;
  size_t n = t->m->nparams;
  if (o->weight_decay > 0.0f)
    add_weight_decay (t->m, g, o->weight_decay);
  if (o->clip_norm > 0.0f)
    clip_gradients (g, n, o->clip_norm);
  t->step++;
  ae_model_params_changed (t->m);
  if (o->optimizer == AE_OPT_SGD) {
    for (size_t i = 0; i < n; i++) {
      t->mom1[i] = o->momentum * t->mom1[i] + g[i];
      p[i] -= t->lr * t->mom1[i];
    }
    return;
  }
  float b1 = o->beta1, b2 = o->beta2;
  float c1 = 1.0f - powf (b1, (float) t->step), c2 = 1.0f - powf (b2, (float) t->step);
  float step = t->lr * sqrtf (c2) / c1;
  for (size_t i = 0; i < n; i++) {
    t->mom1[i] = b1 * t->mom1[i] + (1.0f - b1) * g[i];
    t->mom2[i] = b2 * t->mom2[i] + (1.0f - b2) * g[i] * g[i];
    p[i] -= step * t->mom1[i] / (sqrtf (t->mom2[i]) + 1e-8f);
  }
}

/* The schedule's rate for epoch e (1-based): the half cosine sampled at
 * the start of each epoch, so the last epoch still has a small rate. */
static float
epoch_lr (const ae_train_opts *o, int e)
{
  if (o->lr_schedule != AE_LR_COSINE)
    return o->lr;
  return (float) (o->lr * 0.5 * (1.0 + cos (M_PI * (e - 1) / o->epochs)));
}

/* KL weight per unit of KL sum: the reconstruction losses are means over
 * every output value, so the KL sum is divided by the batch's output size. */
static float
kl_scale (const trainer *t, int n)
{
  return t->m->vae ? t->o->kl_beta / ((float) n * t->data->channels * t->h * t->w) : 0.0f;
}

/* One optimisation step on samples idx[0..n): the shards are filled in
 * order from the one generator, so results do not depend on the number of
 * workers' scheduling. */
static double
train_batch (trainer *t, const size_t *idx, int n, ae_error *err)
{
  int shards = ae_shards_split (t->shards, n, err);
  if (shards < 0)
    return NAN;
  for (int k = 0, off = 0; k < shards; k++) {
    int nk;
    float *input, *target, *noise;
    ae_shards_buffers (t->shards, k, &nk, &input, &target, &noise);
    fill_batch (t, idx + off, nk, input, target, noise, &t->rng, 1);
    off += nk;
  }
  double loss = ae_shards_step (t->shards, kl_scale (t, n), t->grads);
  optimizer_step (t);
  return loss;
}

/* Reconstruction loss on the held-out samples, in inference mode, with
 * noise drawn from the same seed every epoch so epochs compare fairly. */
static double
validation_loss (trainer *t)
{
  ae_session *s = t->eval;
  const ae_dataset *d = t->data;
  const size_t *val = t->perm + t->ntrain;
  ae_rng rng;
  ae_rng_seed (&rng, t->o->seed ^ 0x76616c6964ULL);
  double sum = 0.0;
  for (size_t i = 0; i < t->nval; i += (size_t) s->allocated_for[0]) {
    int n = (int) (t->nval - i < s->allocated_for[0] ? t->nval - i : s->allocated_for[0]);
    ae_session_reshape (s, n, t->h, t->w, NULL);
    fill_batch (t, val + i, n, s->input, t->target, s->noise, &rng, 0);
    const float *y = ae_session_run_cnhw (s, s->input, -1);
    sum += n * ae_loss_eval (t->o->loss, y, t->target, (size_t) n * d->channels, t->h, t->w,
                             t->o->ssim_window, NULL, t->loss_scratch);
  }
  return sum / (double) t->nval;
}

static void
remember_best (trainer *t)
{
  memcpy (t->best_params, t->m->params, t->m->nparams * sizeof (float));
  memcpy (t->best_stats, t->m->stats, t->m->nstats * sizeof (float));
}

static void
restore_best (trainer *t)
{
  memcpy (t->m->params, t->best_params, t->m->nparams * sizeof (float));
  ae_model_params_changed (t->m);
  memcpy (t->m->stats, t->best_stats, t->m->nstats * sizeof (float));
}

static int
cancelled (const ae_train_opts *o)
{
  return o->cancel && *o->cancel;
}

/* One pass over the training samples in a new order, adding loss * n to *sum. */
static ae_status
train_pass (trainer *t, size_t *order, int batch, double *sum, ae_error *err)
{
  ae_rng_shuffle (&t->rng, order, t->ntrain);
  for (size_t i = 0; i < t->ntrain; i += (size_t) batch) {
    if (cancelled (t->o))
      return ae_fail (err, AE_E_CANCELLED, "training cancelled");
    int n = (int) (t->ntrain - i < (size_t) batch ? t->ntrain - i : (size_t) batch);
    double loss = train_batch (t, order + i, n, err);
    if (!isfinite (loss))
      return ae_fail (err, AE_E_NUMERIC, "training diverged (loss %g); try a lower learning rate",
                      loss);
    *sum += loss * n;
  }
  return AE_OK;
}

/* `repeat` passes over the shuffled training samples; returns the mean loss. */
static ae_status
train_epoch (trainer *t, double *mean_loss, ae_error *err)
{
  size_t *order = t->perm; /* the first ntrain entries are the training set */
  int batch = t->batch;
  double sum = 0.0;
  for (int pass = 0; pass < t->o->repeat; pass++) {
    ae_status st = train_pass (t, order, batch, &sum, err);
    if (st != AE_OK)
      return st;
  }
  *mean_loss = sum / ((double) t->ntrain * t->o->repeat);
  return AE_OK;
}

ae_status
ae_train (ae_model *m, const ae_dataset *d, const ae_train_opts *o, ae_train_result *res,
          ae_error *err)
{
  trainer t;
  ae_train_result r = { 0 };
  ae_status st = trainer_init (&t, m, d, o, err);
  double start = now_s (), best = INFINITY;
  int since_best = 0;
  r.train_count = t.ntrain;
  r.val_count = t.nval;
  r.final_val_loss = r.best_val_loss = -1.0;
  if (st == AE_OK)
    remember_best (&t);
  for (int e = 1; st == AE_OK && e <= o->epochs; e++) {
    double t0 = now_s (), train_loss = 0.0, val = -1.0;
    t.lr = epoch_lr (o, e);
    st = train_epoch (&t, &train_loss, err);
    if (st != AE_OK)
      break;
    if (t.nval) {
      val = validation_loss (&t);
      if (val < best) {
        best = val;
        r.best_epoch = e;
        since_best = 0;
        remember_best (&t);
      } else {
        since_best++;
      }
    } else {
      r.best_epoch = e;
      remember_best (&t);
    }
    r.epochs_run = e;
    r.final_train_loss = train_loss;
    r.final_val_loss = val;
    ae_epoch_report rep = { e, o->epochs, train_loss, val,
                            (double) t.ntrain * o->repeat / (now_s () - t0),
                            now_s () - start, r.best_epoch };
    if ((o->on_epoch && o->on_epoch (&rep, o->user)) || (o->patience && since_best >= o->patience))
      break;
  }
  if (r.epochs_run > 0 || st == AE_E_CANCELLED || st == AE_E_NUMERIC)
    restore_best (&t);
  r.best_val_loss = t.nval && isfinite (best) ? best : -1.0;
  r.seconds = now_s () - start;
  if (res)
    *res = r;
  trainer_free (&t);
  return st;
}
