/* Training behaviour: a small AE overfits a small set, PCA is the best
 * linear reconstruction, equal seeds give equal models, early stopping
 * keeps the best epoch, denoising training removes noise, synthetic defects
 * and turned inputs teach repair and turning upright. */
#include "nn.h"
#include "check.h"

#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* Smooth random blobs: structured enough for a small AE to learn. */
static float *
make_blobs (size_t count, int h, int w, uint64_t seed)
{
  ae_rng rng;
  ae_rng_seed (&rng, seed);
  float *x = malloc (count * (size_t) h * w * sizeof *x);
  for (size_t i = 0; i < count; i++) {
    double cx = ae_rng_uniform (&rng) * w, cy = ae_rng_uniform (&rng) * h;
    double r = 1.5 + ae_rng_uniform (&rng) * w / 4.0, a = 0.3 + 0.6 * ae_rng_uniform (&rng);
    for (int y = 0; y < h; y++)
      for (int xx = 0; xx < w; xx++) {
        double d2 = (xx - cx) * (xx - cx) + (y - cy) * (y - cy);
        x[(i * h + y) * w + xx] = (float) (0.05 + a * exp (-d2 / (2 * r * r)));
      }
  }
  return x;
}

static double
reconstruction_mse (const ae_model *m, const float *x, size_t count, int c, int h, int w)
{
  ae_session *s = ae_session_new (m, (int) count, h, w, NULL);
  const float *y = ae_session_forward (s, x);
  double e = 0.0;
  size_t n = count * (size_t) c * h * w;
  for (size_t i = 0; i < n; i++)
    e += (double) (y[i] - x[i]) * (y[i] - x[i]);
  ae_session_free (s);
  return e / (double) n;
}

static int
record_first_loss (const ae_epoch_report *r, void *user)
{
  double *first = user;
  if (r->epoch == 1)
    *first = r->train_loss;
  return 0;
}

static void
test_overfit (const char *name, const char *spec, int epochs, float kl_beta)
{
  const int h = 8, w = 8;
  float *x = make_blobs (32, h, w, 11);
  ae_dataset d = { x, NULL, 32, 1, h, w };
  ae_error err;
  ae_model *m = ae_model_new (spec, 1, h, w, 5, &err);
  CHECK (m != NULL, "%s: build (%s)", name, m ? "ok" : err.message);
  if (!m) {
    free (x);
    return;
  }
  double before = reconstruction_mse (m, x, 32, 1, h, w), first = 0;
  ae_train_opts o;
  ae_train_opts_init (&o);
  o.epochs = epochs;
  o.batch = 8;
  o.val_split = 0.0f;
  o.lr = 3e-3f;
  o.kl_beta = kl_beta;
  o.on_epoch = record_first_loss;
  o.user = &first;
  ae_train_result r;
  ae_status st = ae_train (m, &d, &o, &r, &err);
  double after = reconstruction_mse (m, x, 32, 1, h, w);
  CHECK (st == AE_OK && r.epochs_run == epochs, "%s: trains (%s)", name,
         st == AE_OK ? "ok" : err.message);
  CHECK (before / after >= 10.0, "%s: reconstruction MSE falls %.4g -> %.4g (%.0fx)", name,
         before, after, before / after);
  CHECK (first / r.final_train_loss >= 10.0, "%s: training loss falls %.4g -> %.4g", name, first,
         r.final_train_loss);
  ae_model_free (m);
  free (x);
}

/* Rank-3 data plus a little noise in 20 dimensions. */
static void
test_pca (void)
{
  const size_t n = 300;
  const int d = 20, k = 3;
  ae_rng rng;
  ae_rng_seed (&rng, 17);
  float basis[3][20], *x = malloc (n * d * sizeof *x);
  for (int j = 0; j < k; j++)
    for (int i = 0; i < d; i++)
      basis[j][i] = (float) ae_rng_normal (&rng);
  for (size_t s = 0; s < n; s++) {
    double a[3] = { 2 * ae_rng_normal (&rng), ae_rng_normal (&rng), 0.5 * ae_rng_normal (&rng) };
    for (int i = 0; i < d; i++)
      x[s * d + i] = (float) (0.5 + a[0] * basis[0][i] + a[1] * basis[1][i] + a[2] * basis[2][i]
                              + 0.01 * ae_rng_normal (&rng));
  }
  ae_dataset data = { x, NULL, n, 1, 4, 5 };
  ae_error err;
  ae_model *pca = ae_pca_fit (&data, k, &err);
  CHECK (pca != NULL, "pca: fit (%s)", pca ? "ok" : err.message);
  double pca_mse = reconstruction_mse (pca, x, n, 1, 4, 5);
  CHECK (pca_mse < 2e-4 && pca_mse > 2e-5, "pca: rank-3 reconstruction error %.3g is the noise "
         "variance (1e-4 x 17/20)", pca_mse);
  double ev = 0;
  CHECK (ae_model_get_float (pca, "pca.explained_variance", &ev) && ev > 0.999,
         "pca: explained variance %.5f", ev);

  /* A linear AE trained by gradient descent approaches PCA but cannot beat it. */
  ae_model *lin = ae_model_new ("dense:3,dense:20:linear:1x4x5", 1, 4, 5, 3, &err);
  ae_train_opts o;
  ae_train_opts_init (&o);
  o.epochs = 400;
  o.batch = 32;
  o.lr = 1e-2f;
  o.val_split = 0.0f;
  ae_train (lin, &data, &o, NULL, &err);
  double lin_mse = reconstruction_mse (lin, x, n, 1, 4, 5);
  CHECK (lin_mse >= pca_mse * 0.999, "pca: linear AE (%.4g) does not beat PCA (%.4g)", lin_mse,
         pca_mse);
  CHECK (lin_mse <= pca_mse * 3.0, "pca: linear AE (%.4g) gets near PCA (%.4g)", lin_mse,
         pca_mse);

  CHECK (ae_pca_fit (&data, 25, &err) == NULL && err.status == AE_E_ARG,
         "pca: too many components rejected: %s", err.message);
  ae_model_free (pca);
  ae_model_free (lin);
  free (x);
}

static ae_model *
train_conv_threads (uint64_t seed, const float *x, size_t n, ae_train_result *r, int threads,
                    const char *spec)
{
  ae_dataset d = { x, NULL, n, 1, 8, 8 };
  ae_model *m = ae_model_new (spec, 1, 8, 8, seed, NULL);
  ae_train_opts o;
  ae_train_opts_init (&o);
  o.epochs = 3;
  o.batch = 16;
  o.seed = seed;
  o.noise_max = 0.1f;
  o.augment_flip = 1;
  o.threads = threads;
  ae_train (m, &d, &o, r, NULL);
  return m;
}

#define BN_SPEC "conv:4:3:2:1,bn:lrelu,conv:4:3:2:1:lrelu,deconv:4:4:2:1,bn:lrelu,deconv:1:4:2:1:sigmoid"

static ae_model *
train_conv (uint64_t seed, const float *x, size_t n, ae_train_result *r)
{
  return train_conv_threads (seed, x, n, r, 1, BN_SPEC);
}

static double
max_param_diff (const ae_model *a, const ae_model *b)
{
  double d = 0;
  for (size_t i = 0; i < a->nparams; i++)
    d = fmax (d, fabs (a->params[i] - b->params[i]));
  return d;
}

/* Worker threads split each batch; the result must not depend on thread
 * scheduling, and without batch norm it is the one-thread result up to
 * summation order. */
static void
test_worker_threads (void)
{
  float *x = make_blobs (100, 8, 8, 3);
  const char *plain = "conv:4:3:2:1:lrelu,conv:4:3:2:1:lrelu,deconv:4:4:2:1:lrelu,"
                      "deconv:1:4:2:1:sigmoid";
  ae_model *a = train_conv_threads (42, x, 100, NULL, 3, BN_SPEC);
  ae_model *b = train_conv_threads (42, x, 100, NULL, 3, BN_SPEC);
  CHECK (memcmp (a->params, b->params, a->nparams * sizeof (float)) == 0
         && memcmp (a->stats, b->stats, a->nstats * sizeof (float)) == 0,
         "3 worker threads: same seed, same model");
  ae_model *one = train_conv_threads (42, x, 100, NULL, 1, plain);
  ae_model *two = train_conv_threads (42, x, 100, NULL, 2, plain);
  double diff = max_param_diff (one, two);
  CHECK (diff < 1e-3, "2 workers match 1 worker without batch norm (max diff %.2g)", diff);
  ae_model_free (a);
  ae_model_free (b);
  ae_model_free (one);
  ae_model_free (two);
  free (x);
}

static void
test_determinism (void)
{
  float *x = make_blobs (100, 8, 8, 3);
  ae_train_result r1, r2;
  ae_model *a = train_conv (42, x, 100, &r1), *b = train_conv (42, x, 100, &r2);
  ae_model *c = train_conv (43, x, 100, NULL);
  CHECK (memcmp (a->params, b->params, a->nparams * sizeof (float)) == 0
         && memcmp (a->stats, b->stats, a->nstats * sizeof (float)) == 0
         && r1.final_val_loss == r2.final_val_loss, "same seed, same model (val loss %.6g)",
         r1.final_val_loss);
  CHECK (memcmp (a->params, c->params, a->nparams * sizeof (float)) != 0,
         "another seed, another model");
  CHECK (r1.train_count == 90 && r1.val_count == 10, "validation split 90/10 (%zu/%zu)",
         r1.train_count, r1.val_count);
  size_t idx[100];
  size_t nv = ae_validation_indices (100, 0.1f, 42, idx);
  int distinct = nv == 10;
  for (size_t i = 0; i < nv; i++)
    for (size_t j = i + 1; j < nv; j++)
      distinct &= idx[i] != idx[j] && idx[i] < 100;
  CHECK (distinct, "validation indices: %zu distinct", nv);
  ae_model_free (a);
  ae_model_free (b);
  ae_model_free (c);
  free (x);
}

typedef struct epoch_log {
  double val[64];
  int n;
} epoch_log;

static int
log_epoch (const ae_epoch_report *r, void *user)
{
  epoch_log *l = user;
  if (l->n < 64)
    l->val[l->n++] = r->val_loss;
  return 0;
}

/* A learning rate far too high makes validation loss wander; the model
 * returned must be the best epoch's, and patience must stop the run. */
static void
test_early_stopping (void)
{
  /* Few samples and a wide model: it overfits, so validation loss turns up. */
  float *x = make_blobs (24, 8, 8, 9);
  ae_dataset d = { x, NULL, 24, 1, 8, 8 };
  ae_model *m = ae_model_new ("dense:256:tanh,dense:64:sigmoid:1x8x8", 1, 8, 8, 1, NULL);
  epoch_log log = { { 0 }, 0 };
  ae_train_opts o;
  ae_train_opts_init (&o);
  o.epochs = 60;
  o.batch = 8;
  o.lr = 1e-2f;
  o.val_split = 0.25f;
  o.patience = 4;
  o.on_epoch = log_epoch;
  o.user = &log;
  ae_train_result r;
  ae_error err;
  ae_status st = ae_train (m, &d, &o, &r, &err);
  CHECK (st == AE_OK, "early stopping: trains (%s)", st ? err.message : "ok");
  double best = 1e9;
  int best_epoch = 0;
  for (int i = 0; i < log.n; i++)
    if (log.val[i] < best) {
      best = log.val[i];
      best_epoch = i + 1;
    }
  CHECK (r.best_epoch == best_epoch && r.best_val_loss == best,
         "early stopping: best epoch %d (val %.5g) reported", best_epoch, best);
  CHECK (r.epochs_run < 60 && r.epochs_run - r.best_epoch == 4,
         "early stopping: stopped at epoch %d, 4 after the best", r.epochs_run);
  /* The restored weights reproduce the best validation loss. */
  size_t idx[24];
  size_t nv = ae_validation_indices (24, 0.25f, 1, idx);
  float *val = malloc (nv * 64 * sizeof *val);
  for (size_t i = 0; i < nv; i++)
    memcpy (val + i * 64, x + idx[i] * 64, 64 * sizeof (float));
  double mse = reconstruction_mse (m, val, nv, 1, 8, 8);
  CHECK (fabs (mse - best) <= 1e-5 * fmax (1.0, best), "early stopping: weights restored "
         "(val MSE %.6g vs best %.6g)", mse, best);
  free (val);
  ae_model_free (m);
  free (x);
}

static int
stop_now (const ae_epoch_report *r, void *user)
{
  (void) r;
  (void) user;
  return 1;
}

static void
test_options_and_cancel (void)
{
  float *x = make_blobs (16, 8, 8, 2);
  ae_dataset d = { x, NULL, 16, 1, 8, 8 };
  ae_model *m = ae_model_new ("dense:4,dense:64:sigmoid:1x8x8", 1, 8, 8, 1, NULL);
  ae_train_opts o;
  ae_error err;
  ae_train_result r;
  ae_train_opts_init (&o);
  o.epochs = 0;
  CHECK (ae_train (m, &d, &o, NULL, &err) == AE_E_ARG, "epochs 0 rejected: %s", err.message);
  ae_train_opts_init (&o);
  d.count = 0;
  CHECK (ae_train (m, &d, &o, NULL, &err) == AE_E_ARG, "no samples rejected: %s", err.message);
  d.count = 16;
  d.channels = 3;
  CHECK (ae_train (m, &d, &o, NULL, &err) == AE_E_SHAPE, "wrong channels rejected: %s",
         err.message);
  d.channels = 1;
  o.on_epoch = stop_now;
  CHECK (ae_train (m, &d, &o, &r, &err) == AE_OK && r.epochs_run == 1,
         "callback stops after epoch 1");
  o.on_epoch = NULL;
  o.crop_width = 9;
  o.crop_height = 4;
  CHECK (ae_train (m, &d, &o, &r, &err) == AE_E_ARG, "crop wider than frames: %s", err.message);
  ae_model *fc = ae_model_new ("conv:4:3:2:1:lrelu,deconv:1:4:2:1:sigmoid", 1, 4, 6, 1, NULL);
  o.crop_width = 6;
  o.crop_height = 4;
  o.epochs = 2;
  CHECK (ae_train (fc, &d, &o, &r, &err) == AE_OK, "trains on 6x4 crops of 8x8 frames");
  o.repeat = 0;
  CHECK (ae_train (fc, &d, &o, &r, &err) == AE_E_ARG, "repeat 0 rejected: %s", err.message);
  ae_model_free (fc);
  volatile int cancel = 1;
  ae_train_opts_init (&o);
  o.cancel = &cancel;
  CHECK (ae_train (m, &d, &o, &r, &err) == AE_E_CANCELLED, "cancel flag: %s", err.message);
  ae_train_opts_init (&o);
  o.lr = 1e6f;
  o.optimizer = AE_OPT_SGD;
  o.epochs = 50;
  ae_status st = ae_train (m, &d, &o, &r, &err);
  CHECK (st == AE_E_NUMERIC || st == AE_OK, "huge learning rate: %s",
         st ? err.message : "survived");
  ae_model_free (m);
  free (x);
}

typedef void (*damage_fn) (float *frame, size_t plane, int h, int w, ae_rng *rng);

static void
add_noise_01 (float *frame, size_t plane, int h, int w, ae_rng *rng)
{
  (void) h, (void) w;
  for (size_t j = 0; j < plane; j++) {
    float v = frame[j] + 0.1f * (float) ae_rng_normal (rng);
    frame[j] = v < 0 ? 0 : v > 1 ? 1 : v;
  }
}

static void
add_defect (float *frame, size_t plane, int h, int w, ae_rng *rng)
{
  ae_add_synthetic_defect (frame, 1, plane, h, w, rng);
}

/* Mean squared error against the clean images of the model's output on
 * damaged copies (fixed seed); *input_err gets the damaged input's. */
static double
damaged_error (const ae_model *m, const float *x, size_t count, int h, int w, damage_fn damage,
               double *input_err)
{
  size_t plane = (size_t) h * w;
  float *damaged = malloc (plane * sizeof *damaged);
  ae_session *s = ae_session_new (m, 1, h, w, NULL);
  ae_rng rng;
  ae_rng_seed (&rng, 5);
  double in_err = 0, out_err = 0;
  for (size_t i = 0; i < count; i++) {
    const float *clean = x + i * plane;
    memcpy (damaged, clean, plane * sizeof *damaged);
    damage (damaged, plane, h, w, &rng);
    const float *y = ae_session_forward (s, damaged);
    for (size_t j = 0; j < plane; j++) {
      in_err += (damaged[j] - clean[j]) * (damaged[j] - clean[j]);
      out_err += (y[j] - clean[j]) * (y[j] - clean[j]);
    }
  }
  ae_session_free (s);
  free (damaged);
  if (input_err)
    *input_err = in_err / (double) (count * plane);
  return out_err / (double) (count * plane);
}

static ae_model *
train_denoiser (const ae_dataset *d, const char *spec, float sigma, float lr)
{
  ae_model *m = ae_model_new (spec, 1, d->height, d->width, 1, NULL);
  ae_train_opts o;
  ae_train_opts_init (&o);
  o.epochs = 25;
  o.batch = 16;
  o.noise_min = o.noise_max = sigma;
  o.lr = lr;
  o.val_split = 0.0f;
  ae_train (m, d, &o, NULL, NULL);
  return m;
}

/* Trained on noisy inputs with clean targets, the model removes noise; and
 * a one-weight model shows the noise really reaches the input: trained clean
 * it learns the identity, trained noisy it shrinks towards the mean as a
 * Wiener filter does (weight var / (var + sigma^2)). */
static void
test_denoising (void)
{
  const int h = 16, w = 16;
  size_t n = 256;
  float *x = make_blobs (n, h, w, 21), *test = make_blobs (32, h, w, 22);
  ae_dataset d = { x, NULL, n, 1, h, w };
  ae_model *m = train_denoiser (&d, "conv:16:3:1:1:lrelu,conv:16:3:1:1:lrelu,conv:1:3:1:1:sigmoid",
                                0.1f, 1e-3f);
  double in_err, err = damaged_error (m, test, 32, h, w, add_noise_01, &in_err);
  CHECK (err < in_err / 3, "denoising: MSE %.3g of the noisy input -> %.3g", in_err, err);
  ae_model *noisy = train_denoiser (&d, "conv:1:1:1:0", 0.1f, 0.02f);
  ae_model *clean = train_denoiser (&d, "conv:1:1:1:0", 0.0f, 0.02f);
  float wn = noisy->params[0], wc = clean->params[0];
  CHECK (fabsf (wc - 1.0f) < 0.02f && wn < 0.9f, "denoising: pointwise weight %.3f clean, "
         "%.3f noisy", wc, wn);
  ae_model_free (m);
  ae_model_free (noisy);
  ae_model_free (clean);
  free (x);
  free (test);
}

/* Each sample's injected sigma reaches the noise layers, on every worker:
 * trained on sigma 0-0.3, a one-weight model's noise gain moves off 0 (its
 * gradient is sigma times the output's); trained clean it stays 0. */
static void
test_noise_conditioning (void)
{
  const int h = 16, w = 16;
  size_t n = 128;
  float *x = make_blobs (n, h, w, 23);
  float gain[2];
  for (int noisy = 0; noisy < 2; noisy++) {
    ae_model *m = ae_model_new ("conv:1:1:1:0,noise", 1, h, w, 1, NULL);
    ae_train_opts o;
    ae_train_opts_init (&o);
    o.epochs = 10;
    o.batch = 16;
    o.noise_max = noisy ? 0.3f : 0.0f;
    o.lr = 0.02f;
    o.val_split = 0.0f;
    o.threads = 2;
    ae_status st = ae_train (m, &(ae_dataset) { x, NULL, n, 1, h, w }, &o, NULL, NULL);
    gain[noisy] = st == AE_OK ? m->params[m->layers[1].w_off] : NAN;
    ae_model_free (m);
  }
  CHECK (gain[0] == 0.0f && fabsf (gain[1]) > 0.01f, "noise gain %.4f trained clean, %.4f on "
         "sigma 0-0.3", gain[0], gain[1]);
  free (x);
}

static double
weight_norm (const ae_model *m)
{
  double s = 0;
  for (int i = 0; i < m->nlayers; i++)
    for (size_t j = 0; j < m->layers[i].w_n; j++)
      s += (double) m->params[m->layers[i].w_off + j] * m->params[m->layers[i].w_off + j];
  return sqrt (s);
}

/* Weight decay shrinks weights; a clipped SGD step moves the parameters by
 * at most lr * clip_norm. */
static void
test_regularisation (void)
{
  float *x = make_blobs (64, 8, 8, 4);
  ae_dataset d = { x, NULL, 64, 1, 8, 8 };
  const char *spec = "dense:16:tanh,dense:64:sigmoid:1x8x8";
  ae_train_opts o;
  ae_train_opts_init (&o);
  o.epochs = 30;
  o.batch = 16;
  o.optimizer = AE_OPT_SGD;
  o.lr = 0.1f;
  o.val_split = 0.0f;
  ae_model *plain = ae_model_new (spec, 1, 8, 8, 1, NULL), *decayed = ae_model_new (spec, 1, 8, 8, 1, NULL);
  ae_train (plain, &d, &o, NULL, NULL);
  o.weight_decay = 0.5f;
  ae_train (decayed, &d, &o, NULL, NULL);
  CHECK (weight_norm (decayed) < 0.7 * weight_norm (plain), "weight decay: |W| %.3f vs %.3f",
         weight_norm (decayed), weight_norm (plain));

  ae_model *m = ae_model_new (spec, 1, 8, 8, 1, NULL);
  float *before = malloc (m->nparams * sizeof *before);
  memcpy (before, m->params, m->nparams * sizeof *before);
  ae_train_opts_init (&o);
  o.epochs = 1;
  o.batch = 64;
  o.val_split = 0.0f;
  o.optimizer = AE_OPT_SGD;
  o.lr = 1.0f;
  o.clip_norm = 1e-3f;
  ae_train (m, &d, &o, NULL, NULL);
  double moved = 0;
  for (size_t i = 0; i < m->nparams; i++)
    moved += (double) (m->params[i] - before[i]) * (m->params[i] - before[i]);
  moved = sqrt (moved);
  CHECK (moved > 0 && moved <= 1e-3 * 1.0001, "clipped SGD step moves %.3g <= 1e-3", moved);
  free (before);
  ae_model_free (m);
  ae_model_free (plain);
  ae_model_free (decayed);
  free (x);
}

/* The cosine schedule: with plain SGD and a tiny clip norm every step
 * moves exactly lr(epoch) * clip, so each epoch's movement reads the rate. */
typedef struct {
  ae_model *m;
  float *prev;
  double moved[4];
} lr_probe;

static int
record_movement (const ae_epoch_report *rep, void *user)
{
  lr_probe *p = user;
  double d = 0;
  for (size_t i = 0; i < p->m->nparams; i++) {
    d += (double) (p->m->params[i] - p->prev[i]) * (p->m->params[i] - p->prev[i]);
    p->prev[i] = p->m->params[i];
  }
  p->moved[rep->epoch] = sqrt (d);
  return 0;
}

static void
test_cosine_schedule (void)
{
  float *x = make_blobs (16, 8, 8, 4);
  ae_dataset d = { x, NULL, 16, 1, 8, 8 };
  ae_model *m = ae_model_new ("dense:8:tanh,dense:64:sigmoid:1x8x8", 1, 8, 8, 1, NULL);
  lr_probe probe = { m, malloc (m->nparams * sizeof (float)), { 0 } };
  memcpy (probe.prev, m->params, m->nparams * sizeof (float));
  ae_train_opts o;
  ae_train_opts_init (&o);
  o.epochs = 3;
  o.batch = 16;
  o.val_split = 0.0f;
  o.optimizer = AE_OPT_SGD;
  o.momentum = 0.0f;
  o.lr = 1.0f;
  o.clip_norm = 1e-4f;
  o.lr_schedule = AE_LR_COSINE;
  o.on_epoch = record_movement;
  o.user = &probe;
  CHECK (ae_train (m, &d, &o, NULL, NULL) == AE_OK, "cosine schedule trains");
  static const double rate[4] = { 0, 1.0, 0.75, 0.25 };
  for (int e = 1; e <= 3; e++)
    CHECK (fabs (probe.moved[e] - rate[e] * 1e-4) < 1e-7, "epoch %d moves %.4g (rate %.2f)", e,
           probe.moved[e] / 1e-4, rate[e]);
  o.lr_schedule = (ae_lr_schedule) 7;
  ae_error err;
  CHECK (ae_train (m, &d, &o, NULL, &err) == AE_E_ARG, "unknown schedule rejected: %s",
         err.message);
  free (probe.prev);
  ae_model_free (m);
  free (x);
}

/* A 2-channel checkerboard, so flattening a patch changes it. */
static void
checkerboard (float *planes, int h, int w)
{
  for (int c = 0; c < 2; c++)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        planes[((size_t) c * h + y) * w + x] = (x / 2 + y / 2) % 2 ? 0.3f : 0.7f;
}

/* Every synthetic defect changes the frame, stays in [0, 1], hits every
 * channel alike and follows the seed. */
static void
test_synthetic_defect_shapes (void)
{
  enum { H = 24, W = 32, DRAWS = 60 };
  static float a[2 * H * W], b[2 * H * W], clean[2 * H * W];
  checkerboard (clean, H, W);
  ae_rng r1, r2;
  ae_rng_seed (&r1, 3);
  ae_rng_seed (&r2, 3);
  int changed = 0, in_range = 1, channels_alike = 1, brighter = 0, darker = 0;
  for (int i = 0; i < DRAWS; i++) {
    memcpy (a, clean, sizeof a);
    ae_add_synthetic_defect (a, 2, (size_t) H * W, H, W, &r1);
    double delta = 0;
    int any = 0;
    for (int j = 0; j < H * W; j++) {
      any |= a[j] != clean[j];
      in_range &= a[j] >= 0.0f && a[j] <= 1.0f;
      channels_alike &= a[j] - clean[j] == a[H * W + j] - clean[H * W + j];
      delta += a[j] - clean[j];
    }
    changed += any;
    brighter += delta > 0.5, darker += delta < -0.5;
  }
  CHECK (changed == DRAWS, "synthetic defects: %d of %d change the frame", changed, DRAWS);
  CHECK (in_range && channels_alike, "synthetic defects: in [0, 1] and the same on both channels");
  CHECK (brighter > 0 && darker > 0, "synthetic defects of both signs (%d brighter, %d darker)",
         brighter, darker);
  memcpy (a, clean, sizeof a);
  memcpy (b, clean, sizeof b);
  ae_rng_seed (&r1, 9);
  ae_rng_seed (&r2, 9);
  ae_add_synthetic_defect (a, 2, (size_t) H * W, H, W, &r1);
  ae_add_synthetic_defect (b, 2, (size_t) H * W, H, W, &r2);
  CHECK (memcmp (a, b, sizeof a) == 0, "synthetic defects: the same seed, the same defect");
}

/* Random stripes: a texture that bumps, flat patches and lines are foreign to. */
static float *
make_stripes (size_t count, int h, int w, uint64_t seed)
{
  ae_rng rng;
  ae_rng_seed (&rng, seed);
  float *x = malloc (count * (size_t) h * w * sizeof *x);
  for (size_t i = 0; i < count; i++) {
    double angle = ae_rng_uniform (&rng) * 3.14159, period = 4.0 + 2.0 * ae_rng_uniform (&rng);
    double phase = ae_rng_uniform (&rng) * 6.28318, ca = cos (angle), sa = sin (angle);
    for (int y = 0; y < h; y++)
      for (int xx = 0; xx < w; xx++)
        x[(i * h + y) * w + xx] =
            (float) (0.5 + 0.3 * sin (6.28318 * (xx * ca + y * sa) / period + phase));
  }
  return x;
}

/* The options of the input-corruption tests (synthetic defects, turns),
 * which train the same model with the corruption and without. */
static ae_train_opts
corruption_opts (int epochs)
{
  ae_train_opts o;
  ae_train_opts_init (&o);
  o.epochs = epochs;
  o.batch = 16;
  o.lr = 3e-3f;
  o.val_split = 0.0f;
  return o;
}

static ae_model *
train_checked (const char *spec, const ae_dataset *d, const ae_train_opts *o, const char *what,
               int with)
{
  ae_model *m = ae_model_new (spec, 1, d->height, d->width, 1, NULL);
  ae_error e;
  CHECK (ae_train (m, d, o, NULL, &e) == AE_OK, "%s: trains (%s)", what,
         with ? "with" : "without");
  return m;
}

/* Trained with synthetic defects on the input and clean targets, a model
 * repairs defects that a model trained on the frames alone copies. */
static void
test_synthetic_defect_training (void)
{
  const int h = 16, w = 16;
  size_t n = 128;
  float *x = make_stripes (n, h, w, 31), *test = make_stripes (32, h, w, 32);
  ae_dataset d = { x, NULL, n, 1, h, w };
  double err[2];
  for (int with = 0; with < 2; with++) {
    ae_train_opts o = corruption_opts (60);
    o.synthetic_defects = with ? 1.0f : 0.0f;
    ae_model *m = train_checked ("conv:16:3:1:1:lrelu,conv:16:3:2:1:lrelu,conv:16:3:1:1:lrelu,"
                                 "deconv:1:4:2:1:sigmoid", &d, &o, "synthetic defects", with);
    err[with] = damaged_error (m, test, 32, h, w, add_defect, NULL);
    ae_model_free (m);
  }
  /* measured 0.80: a small model only partly repairs; without the defects
   * reaching the input (or with them in the target) the two runs are equal */
  CHECK (err[1] < err[0] * 0.9, "synthetic defects: error to the clean frame %.3g without, "
         "%.3g with", err[0], err[1]);
  ae_model *m = ae_model_new ("conv:1:1:1:0", 1, h, w, 1, NULL);
  ae_train_opts o;
  ae_train_opts_init (&o);
  ae_error e;
  o.synthetic_defects = 1.5f;
  CHECK (ae_train (m, &d, &o, NULL, &e) == AE_E_ARG, "synthetic defects 1.5 rejected: %s",
         e.message);
  ae_model_free (m);
  free (x);
  free (test);
}

/* Blobs in the top-left quadrant only: every quarter turn moves them to
 * another quadrant, so an upright frame can be told from a turned one. */
static float *
make_corner_blobs (size_t count, int side, uint64_t seed)
{
  ae_rng rng;
  ae_rng_seed (&rng, seed);
  float *x = malloc (count * (size_t) side * side * sizeof *x);
  for (size_t i = 0; i < count; i++) {
    double cx = 0.5 + ae_rng_uniform (&rng) * (side / 2 - 1.0);
    double cy = 0.5 + ae_rng_uniform (&rng) * (side / 2 - 1.0);
    for (int y = 0; y < side; y++)
      for (int xx = 0; xx < side; xx++) {
        double d2 = (xx - cx) * (xx - cx) + (y - cy) * (y - cy);
        x[(i * side + y) * side + xx] = (float) (0.05 + 0.8 * exp (-d2 / 2.0));
      }
  }
  return x;
}

/* A frame turned a quarter anticlockwise. */
static void
turn_quarter (const float *x, float *out, int side)
{
  for (int y = 0; y < side; y++)
    for (int xx = 0; xx < side; xx++)
      out[(size_t) y * side + xx] = x[(size_t) xx * side + side - 1 - y];
}

/* A frame moved 2 pixels right and 1 down, its left and top edges repeated. */
static void
move_right_down (const float *x, float *out, int side)
{
  for (int y = 0; y < side; y++)
    for (int xx = 0; xx < side; xx++)
      out[(size_t) y * side + xx] = x[(size_t) (y < 1 ? 0 : y - 1) * side + (xx < 2 ? 0 : xx - 2)];
}

typedef void (*frame_change) (const float *x, float *out, int side);

/* Mean squared error between the model's output for each frame changed by
 * `change` and the frame itself. */
static double
error_to_original (const ae_model *m, const float *x, size_t count, int side, frame_change change)
{
  size_t plane = (size_t) side * side;
  float *changed = malloc (count * plane * sizeof *changed);
  for (size_t i = 0; i < count; i++)
    change (x + i * plane, changed + i * plane, side);
  ae_session *s = ae_session_new (m, (int) count, side, side, NULL);
  const float *out = ae_session_forward (s, changed);
  double e = 0.0;
  for (size_t i = 0; i < count * plane; i++)
    e += (double) (out[i] - x[i]) * (out[i] - x[i]);
  ae_session_free (s);
  free (changed);
  return e / (double) (count * plane);
}

/* error_to_original of 32 test frames for a small model trained on the
 * 8x8 frames of d without (err[0]) and with (err[1]) the int training
 * option at `option` (an offsetof in ae_train_opts) set to `value`. */
static void
errors_without_and_with (const ae_dataset *d, const float *test, size_t option, int value,
                         frame_change change, const char *what, double err[2])
{
  for (int with = 0; with < 2; with++) {
    ae_train_opts o = corruption_opts (150);
    *(int *) ((char *) &o + option) = with ? value : 0;
    ae_model *m = train_checked ("dense:32:relu,dense:8,dense:32:relu,dense:64:sigmoid:1x8x8", d,
                                 &o, what, with);
    err[with] = error_to_original (m, test, 32, d->width, change);
    ae_model_free (m);
  }
}

/* Trained on turned inputs with upright targets, a model turns a frame
 * back upright; trained on the frames alone it copies the turned frame. */
static void
test_rotated_inputs (void)
{
  const int side = 8;
  size_t n = 128;
  float *x = make_corner_blobs (n, side, 41), *test = make_corner_blobs (32, side, 42);
  ae_dataset d = { x, NULL, n, 1, side, side };
  double err[2];
  errors_without_and_with (&d, test, offsetof (ae_train_opts, rotate_inputs), 1, turn_quarter,
                           "rotated inputs", err);
  CHECK (err[1] < err[0] * 0.3, "rotated inputs: a turned frame comes back upright (error %.3g "
         "with, %.3g without)", err[1], err[0]);
  ae_model *m = ae_model_new ("conv:1:1:1:0", 1, side, side, 1, NULL);
  ae_train_opts o;
  ae_train_opts_init (&o);
  o.rotate_inputs = 1;
  o.crop_width = 8;
  o.crop_height = 4;
  ae_error e;
  CHECK (ae_train (m, &d, &o, NULL, &e) == AE_E_ARG, "rotated inputs: an 8x4 crop rejected: %s",
         e.message);
  ae_model_free (m);
  free (x);
  free (test);
}

/* One blob near the middle of the frame, of random size and brightness:
 * where normal frames' content sits is the same in every frame. */
static float *
make_centred_blobs (size_t count, int side, uint64_t seed)
{
  ae_rng rng;
  ae_rng_seed (&rng, seed);
  float *x = malloc (count * (size_t) side * side * sizeof *x);
  double c = (side - 1) / 2.0;
  for (size_t i = 0; i < count; i++) {
    double r2 = 1.0 + 2.0 * ae_rng_uniform (&rng), peak = 0.5 + 0.4 * ae_rng_uniform (&rng);
    for (int y = 0; y < side; y++)
      for (int xx = 0; xx < side; xx++) {
        double d2 = (xx - c) * (xx - c) + (y - c) * (y - c);
        x[(i * side + y) * side + xx] = (float) (0.05 + peak * exp (-d2 / r2));
      }
  }
  return x;
}

/* Trained on moved inputs with targets in place, a model puts a moved frame
 * back; trained on the frames alone it copies the moved frame. Moves that
 * leave too little of the sample are refused. */
static void
test_translated_inputs (void)
{
  const int side = 8;
  size_t n = 128;
  float *x = make_centred_blobs (n, side, 43), *test = make_centred_blobs (32, side, 44);
  ae_dataset d = { x, NULL, n, 1, side, side };
  double err[2];
  errors_without_and_with (&d, test, offsetof (ae_train_opts, translate_inputs), 2,
                           move_right_down, "translated inputs", err);
  CHECK (err[1] < err[0] * 0.3, "translated inputs: a moved frame comes back in place (error "
         "%.3g with, %.3g without)", err[1], err[0]);
  ae_model *m = ae_model_new ("conv:1:1:1:0", 1, side, side, 1, NULL);
  ae_train_opts o = corruption_opts (1);
  ae_error e;
  o.translate_inputs = 3; /* 8 - 2 * 3 = 2 columns are the frame's own */
  CHECK (ae_train (m, &d, &o, NULL, &e) == AE_OK, "translated inputs: moves of 3 in 8x8 train");
  o.translate_inputs = 4;
  CHECK (ae_train (m, &d, &o, NULL, &e) == AE_E_ARG, "translated inputs: moves of 4 in 8x8 "
         "refused: %s", e.message);
  o.translate_inputs = INT_MAX;
  CHECK (ae_train (m, &d, &o, NULL, &e) == AE_E_ARG, "translated inputs: moves of INT_MAX "
         "refused: %s", e.message);
  o.translate_inputs = 2;
  o.crop_width = o.crop_height = 4;
  CHECK (ae_train (m, &d, &o, NULL, &e) == AE_E_ARG, "translated inputs: moves of 2 in 4x4 crops "
         "refused: %s", e.message);
  o.translate_inputs = -1;
  o.crop_width = o.crop_height = 0;
  CHECK (ae_train (m, &d, &o, NULL, &e) == AE_E_ARG, "translated inputs: a negative move refused");
  ae_model_free (m);
  free (x);
  free (test);
}

int
main (void)
{
  ae_set_blas_threads (1);
  test_overfit ("dense AE", "dense:32:relu,dense:8,dense:32:relu,dense:64:sigmoid:1x8x8", 300, 1);
  test_overfit ("conv AE", "conv:8:3:2:1,bn:lrelu,conv:16:3:2:1,bn:lrelu,dense:8,"
                "dense:64:lrelu:16x2x2,deconv:8:4:2:1,bn:lrelu,deconv:1:4:2:1:sigmoid", 300, 1);
  /* A small KL weight: with beta = 1 the prior, not the data, dominates a
   * 32-sample set. */
  test_overfit ("VAE", "dense:32:tanh,dense:16,sample,dense:32:tanh,dense:64:sigmoid:1x8x8", 300,
                0.01f);
  test_pca ();
  test_determinism ();
  test_worker_threads ();
  test_regularisation ();
  test_cosine_schedule ();
  test_early_stopping ();
  test_options_and_cancel ();
  test_denoising ();
  test_noise_conditioning ();
  test_synthetic_defect_shapes ();
  test_synthetic_defect_training ();
  test_rotated_inputs ();
  test_translated_inputs ();
  return CHECK_DONE ();
}
