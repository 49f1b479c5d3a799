/* Latent-space anomaly scores: a Gaussian fitted to the latent vectors of
 * normal frames (mean and whitening matrix of a shrunk covariance), the
 * squared Mahalanobis distance under it, and the frame score settings that
 * combine it with the reconstruction error, or for VAEs make the negative
 * ELBO (lib/elbo.c) of it (docs/model-format.md). */
#include "nn.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KEY_FRAME_SCORE "anomaly.frame_score"
#define KEY_RECON_MEAN "anomaly.combined.recon_mean"
#define KEY_RECON_STD "anomaly.combined.recon_std"
#define KEY_MAHAL_MEAN "anomaly.combined.mahalanobis_mean"
#define KEY_MAHAL_STD "anomaly.combined.mahalanobis_std"
#define KEY_ELBO_SAMPLES "anomaly.elbo.samples"
#define KEY_ELBO_SEED "anomaly.elbo.seed"
#define KEY_ELBO_BETA "anomaly.elbo.beta"
#define KEY_LATENT_VECTOR "anomaly.latent_vector"

/* Latents encoded per GEMM-friendly batch while fitting. */
#define FIT_BATCH 64

void
ae_latent_clear (ae_model *m)
{
  free (m->latent_mean);
  free (m->latent_whiten);
  m->latent_mean = m->latent_whiten = NULL;
  m->latent_k = 0;
}

int
ae_model_latent_gaussian (const ae_model *m)
{
  return m ? m->latent_k : 0;
}

/* ---- The vectors the Gaussian describes ----------------------------------------- */

static const char *const vector_names[] = { "code", "shift" };

const char *
ae_latent_vector_name (ae_latent_vector v)
{
  return (unsigned) v < 2 ? vector_names[v] : "?";
}

int
ae_latent_vector_from_name (const char *name, ae_latent_vector *out)
{
  for (int i = 0; name && i < 2; i++)
    if (strcmp (name, vector_names[i]) == 0) {
      *out = (ae_latent_vector) i;
      return 1;
    }
  return 0;
}

ae_latent_vector
ae_model_latent_vector (const ae_model *m)
{
  const ae_meta_entry *e = m && m->latent_k ? ae_meta_find (&m->meta, KEY_LATENT_VECTOR) : NULL;
  return e && e->type == AE_META_STR && strcmp (e->s, "shift") == 0 ? AE_LATENT_SHIFT
                                                                    : AE_LATENT_CODE;
}

static const float *
vectors_of (ae_latent_vector v, ae_session *s, const float *input, const float *recon,
            float *out)
{
  const float *z = ae_session_encode (s, input);
  if (v == AE_LATENT_CODE)
    return z;
  size_t n = (size_t) s->batch * ae_session_latent_size (s);
  memcpy (out, z, n * sizeof *out);
  const float *back = ae_session_encode (s, recon);
  for (size_t i = 0; i < n; i++)
    out[i] -= back[i];
  return out;
}

const float *
ae_latent_vectors (const ae_model *m, ae_session *s, const float *input, const float *recon,
                   float *out)
{
  return vectors_of (ae_model_latent_vector (m), s, input, recon, out);
}

/* ---- Fitting ------------------------------------------------------------------ */

/* Sum of (z - origin) and of its outer products over the frames, in
 * double: measuring from the first vector keeps the covariance free of
 * cancellation. */
typedef struct {
  size_t k, n;
  double *origin, *sum, *outer; /* k, k, k x k (upper triangle) */
  double *batch;               /* FIT_BATCH x k */
} moments;

/* One batch of inputs' vectors; the reconstructions, when the vector needs
 * them, go through `recon` (FIT_BATCH frames), out of the session's reach. */
static const float *
batch_vectors (ae_latent_vector v, ae_session *s, const float *in, size_t per, float *recon,
               float *out)
{
  if (v == AE_LATENT_SHIFT)
    memcpy (recon, ae_session_forward (s, in), FIT_BATCH * per * sizeof *recon);
  return vectors_of (v, s, in, recon, out);
}

static ae_status
encode_moments (const ae_model *m, ae_latent_vector v, const ae_dataset *d, const size_t *idx,
                size_t n, moments *mo, ae_error *err)
{
  size_t per = (size_t) d->channels * d->height * d->width, k = mo->k;
  ae_session *s = ae_session_new (m, FIT_BATCH, d->height, d->width, err);
  if (!s)
    return err ? err->status : AE_E_NOMEM;
  int shift = v == AE_LATENT_SHIFT;
  float *in = malloc (FIT_BATCH * per * sizeof *in);
  float *recon = shift ? malloc (FIT_BATCH * per * sizeof *recon) : NULL;
  float *vec = shift ? malloc (FIT_BATCH * k * sizeof *vec) : NULL;
  ae_status st = in && (!shift || (recon && vec)) ? AE_OK
               : ae_fail (err, AE_E_NOMEM, "out of memory for latent fitting");
  for (size_t b0 = 0; st == AE_OK && b0 < n; b0 += FIT_BATCH) {
    size_t nb = n - b0 < FIT_BATCH ? n - b0 : FIT_BATCH;
    for (size_t j = 0; j < FIT_BATCH; j++) { /* a short last batch repeats its first frame */
      size_t f = b0 + (j < nb ? j : 0);
      memcpy (in + j * per, d->x + (idx ? idx[f] : f) * per, per * sizeof *in);
    }
    const float *z = batch_vectors (v, s, in, per, recon, vec);
    if (b0 == 0)
      for (size_t i = 0; i < k; i++)
        mo->origin[i] = z[i];
    for (size_t j = 0; j < nb; j++)
      for (size_t i = 0; i < k; i++) {
        double x = (double) z[j * k + i] - mo->origin[i];
        mo->batch[j * k + i] = x;
        mo->sum[i] += x;
      }
    cblas_dsyrk (CblasRowMajor, CblasUpper, CblasTrans, (int) k, (int) nb, 1.0, mo->batch,
                 (int) k, 1.0, mo->outer, (int) k);
    mo->n += nb;
  }
  free (vec);
  free (recon);
  free (in);
  ae_session_free (s);
  return st;
}

/* Covariance from the moments, shrunk towards (tr S / k) I, in mo->outer
 * (full symmetric); the mean in mo->sum. */
static ae_status
shrunk_covariance (moments *mo, double shrinkage, ae_error *err)
{
  size_t k = mo->k;
  double n = (double) mo->n, trace = 0.0;
  for (size_t i = 0; i < k; i++)
    mo->sum[i] /= n;
  for (size_t i = 0; i < k; i++)
    for (size_t j = i; j < k; j++) {
      double c = mo->outer[i * k + j] / n - mo->sum[i] * mo->sum[j];
      mo->outer[i * k + j] = mo->outer[j * k + i] = c;
    }
  for (size_t i = 0; i < k; i++)
    trace += mo->outer[i * k + i];
  double target = trace / (double) k;
  if (!(target > 0.0) || !isfinite (target))
    return ae_fail (err, AE_E_NUMERIC, "the latent vectors of the %zu frames do not vary",
                    mo->n);
  for (size_t i = 0; i < k; i++) {
    for (size_t j = 0; j < k; j++)
      mo->outer[i * k + j] *= 1.0 - shrinkage;
    mo->outer[i * k + i] += shrinkage * target;
  }
  for (size_t i = 0; i < k; i++)
    mo->sum[i] += mo->origin[i];
  return AE_OK;
}

/* W = L^-1/2 V^T from the eigen-decomposition of the k x k covariance c
 * (overwritten). Eigenvalues are floored at 1e-9 of the mean variance, so
 * a direction without variance cannot make W infinite. */
static ae_status
whitening (double *c, size_t k, float *w, ae_error *err)
{
  double *lambda = malloc (k * sizeof *lambda), trace = 0.0;
  if (!lambda)
    return ae_fail (err, AE_E_NOMEM, "out of memory");
  for (size_t i = 0; i < k; i++)
    trace += c[i * k + i];
  lapack_int info = LAPACKE_dsyevd (LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int) k, c,
                                    (lapack_int) k, lambda);
  ae_status st = AE_OK;
  if (info != 0)
    st = ae_fail (err, AE_E_NUMERIC, "latent covariance eigen-decomposition failed (LAPACK "
                  "info %d)", (int) info);
  double floor = 1e-9 * trace / (double) k;
  for (size_t j = 0; st == AE_OK && j < k; j++) {
    double scale = 1.0 / sqrt (lambda[j] > floor ? lambda[j] : floor);
    for (size_t i = 0; i < k; i++)
      w[j * k + i] = (float) (c[i * k + j] * scale);
  }
  for (size_t i = 0; st == AE_OK && i < k * k; i++)
    if (!isfinite (w[i]))
      st = ae_fail (err, AE_E_NUMERIC, "the latent whitening matrix is not finite");
  free (lambda);
  return st;
}

static ae_status
check_fit_args (const ae_model *m, const ae_dataset *d, size_t n, double shrinkage, size_t k,
                ae_error *err)
{
  if (!d || !d->x || d->channels != m->in_c || d->height != m->in_h || d->width != m->in_w)
    return ae_fail (err, AE_E_SHAPE, "the latent Gaussian is fitted on frames of the model's "
                    "build size %dx%dx%d", m->in_c, m->in_h, m->in_w);
  if (n < 2)
    return ae_fail (err, AE_E_ARG, "the latent Gaussian needs at least two frames, got %zu", n);
  if (!(shrinkage >= 0.0 && shrinkage <= 1.0))
    return ae_fail (err, AE_E_ARG, "latent shrinkage must be in [0, 1], got %g", shrinkage);
  if (k == 0 || k > AE_LATENT_MAX)
    return ae_fail (err, AE_E_ARG, "a latent of %zu values cannot carry a Gaussian (at most %d)",
                    k, AE_LATENT_MAX);
  return AE_OK;
}

ae_status
ae_latent_fit (ae_model *m, const ae_dataset *d, const size_t *idx, size_t n, double shrinkage,
               ae_error *err)
{
  return ae_latent_fit_vector (m, AE_LATENT_CODE, d, idx, n, shrinkage, err);
}

ae_status
ae_latent_fit_vector (ae_model *m, ae_latent_vector v, const ae_dataset *d, const size_t *idx,
                      size_t n, double shrinkage, ae_error *err)
{
  if (!m || (unsigned) v > AE_LATENT_SHIFT)
    return ae_fail (err, AE_E_ARG, m ? "unknown latent vector %d" : "no model", (int) v);
  size_t k = ae_model_latent_size (m, m->in_h, m->in_w);
  if (!idx && d && n > d->count)
    return ae_fail (err, AE_E_ARG, "%zu frames asked of a set of %zu", n, d->count);
  ae_status st = check_fit_args (m, d, n, shrinkage, k, err);
  if (st != AE_OK)
    return st;
  for (size_t j = 0; idx && j < n; j++)
    if (idx[j] >= d->count)
      return ae_fail (err, AE_E_ARG, "frame index %zu outside a set of %zu", idx[j], d->count);
  moments mo = { k, 0, calloc (k, sizeof (double)), calloc (k, sizeof (double)),
                 calloc (k * k, sizeof (double)), malloc (FIT_BATCH * k * sizeof (double)) };
  float *mean = malloc (k * sizeof *mean), *w = malloc (k * k * sizeof *w);
  if (!mo.origin || !mo.sum || !mo.outer || !mo.batch || !mean || !w)
    st = ae_fail (err, AE_E_NOMEM, "out of memory for a %zu-value latent Gaussian", k);
  if (st == AE_OK)
    st = encode_moments (m, v, d, idx, n, &mo, err);
  if (st == AE_OK)
    st = shrunk_covariance (&mo, shrinkage, err);
  if (st == AE_OK)
    st = whitening (mo.outer, k, w, err);
  if (st == AE_OK && ae_meta_set_str (&m->meta, KEY_LATENT_VECTOR, vector_names[v]) != AE_OK)
    st = ae_fail (err, AE_E_NOMEM, "out of memory");
  if (st == AE_OK) {
    for (size_t i = 0; i < k; i++)
      mean[i] = (float) mo.sum[i];
    ae_latent_clear (m);
    m->latent_k = (int) k;
    m->latent_mean = mean;
    m->latent_whiten = w;
    mean = w = NULL;
  }
  free (mo.origin);
  free (mo.sum);
  free (mo.outer);
  free (mo.batch);
  free (mean);
  free (w);
  return st;
}

/* ---- Loading ------------------------------------------------------------------ */

static ae_status
check_tensor (const aem_tensor *t, const char *name, int ndim, size_t k, ae_error *err)
{
  int ok = t && strcmp (t->name, name) == 0 && t->ndim == ndim;
  for (int d = 0; ok && d < ndim; d++)
    ok = t->shape[d] == (int64_t) k;
  if (!ok)
    return ae_fail (err, AE_E_FORMAT, "tensor '%s' should be '%s' of shape [%zu%s] for the "
                    "model's %zu-value latent", t ? t->name : "(none)", name, k,
                    ndim == 2 ? " x k" : "", k);
  size_t n = aem_tensor_numel (t);
  for (size_t i = 0; i < n; i++)
    if (!isfinite (t->data[i]))
      return ae_fail (err, AE_E_FORMAT, "tensor '%s' holds a non-finite value", name);
  return AE_OK;
}

ae_status
ae_latent_adopt (ae_model *m, const aem_tensor *mean, const aem_tensor *whiten, ae_error *err)
{
  size_t k = ae_model_latent_size (m, m->in_h, m->in_w);
  if (k == 0 || k > AE_LATENT_MAX)
    return ae_fail (err, AE_E_FORMAT, "model file has latent tensors but its %zu-value latent "
                    "cannot carry a Gaussian", k);
  ae_status st = check_tensor (mean, AE_LATENT_MEAN_TENSOR, 1, k, err);
  if (st == AE_OK)
    st = check_tensor (whiten, AE_LATENT_WHITEN_TENSOR, 2, k, err);
  if (st != AE_OK)
    return st;
  float *mu = malloc (k * sizeof *mu), *w = malloc (k * k * sizeof *w);
  if (!mu || !w) {
    free (mu);
    free (w);
    return ae_fail (err, AE_E_NOMEM, "out of memory");
  }
  memcpy (mu, mean->data, k * sizeof *mu);
  memcpy (w, whiten->data, k * k * sizeof *w);
  ae_latent_clear (m);
  m->latent_k = (int) k;
  m->latent_mean = mu;
  m->latent_whiten = w;
  return AE_OK;
}

/* ---- Scoring ------------------------------------------------------------------ */

double
ae_latent_mahalanobis (const ae_model *m, const float *z, float *scratch)
{
  if (!m || !m->latent_k || !z || !scratch)
    return -1.0;
  size_t k = (size_t) m->latent_k;
  for (size_t i = 0; i < k; i++)
    scratch[i] = z[i] - m->latent_mean[i];
  double d2 = 0.0;
  for (size_t j = 0; j < k; j++) {
    const float *row = m->latent_whiten + j * k;
    double s = 0.0;
    for (size_t i = 0; i < k; i++)
      s += (double) row[i] * scratch[i];
    d2 += s * s;
  }
  return d2;
}

static const char *const kind_names[] = { "recon", "mahalanobis", "combined", "elbo" };
#define KIND_COUNT ((int) (sizeof kind_names / sizeof kind_names[0]))

const char *
ae_score_kind_name (ae_score_kind kind)
{
  return (unsigned) kind < KIND_COUNT ? kind_names[kind] : "?";
}

int
ae_score_kind_uses_gaussian (ae_score_kind kind)
{
  return kind == AE_SCORE_MAHALANOBIS || kind == AE_SCORE_COMBINED;
}

int
ae_score_kind_from_name (const char *name, ae_score_kind *out)
{
  for (int i = 0; name && i < KIND_COUNT; i++)
    if (strcmp (name, kind_names[i]) == 0) {
      *out = (ae_score_kind) i;
      return 1;
    }
  return 0;
}

static ae_status
combined_stat (const ae_model *m, const char *key, int positive, double *out, ae_error *err)
{
  if (!ae_model_get_float (m, key, out) || !isfinite (*out) || (positive && !(*out > 0.0)))
    return ae_fail (err, AE_E_FORMAT, "combined frame score without a valid '%s'%s", key,
                    positive ? " (finite, > 0)" : " (finite)");
  return AE_OK;
}

/* The elbo settings: what ae_elbo_new accepts, a finite beta >= 0 and a
 * seed that fits the metadata's signed integer. */
static ae_status
check_elbo (const ae_model *m, const ae_frame_scoring *fs, ae_status status, ae_error *err)
{
  ae_error why;
  if (ae_elbo_check_model (m, &why) != AE_OK)
    return ae_fail (err, status, "%s", why.message);
  if (fs->elbo_samples < 1 || fs->elbo_samples > AE_ELBO_SAMPLES_MAX)
    return ae_fail (err, status, "elbo frame score: '%s' must be 1 to %d", KEY_ELBO_SAMPLES,
                    AE_ELBO_SAMPLES_MAX);
  if (!(fs->elbo_beta >= 0.0 && isfinite (fs->elbo_beta)))
    return ae_fail (err, status, "elbo frame score: '%s' must be finite and >= 0", KEY_ELBO_BETA);
  if (fs->elbo_seed > (uint64_t) INT64_MAX)
    return ae_fail (err, status, "elbo frame score: '%s' must be below 2^63", KEY_ELBO_SEED);
  return AE_OK;
}

static ae_status
read_elbo (const ae_model *m, ae_frame_scoring *fs, ae_error *err)
{
  int64_t samples, seed;
  if (!ae_model_get_int (m, KEY_ELBO_SAMPLES, &samples) || !ae_model_get_int (m, KEY_ELBO_SEED,
                                                                              &seed)
      || !ae_model_get_float (m, KEY_ELBO_BETA, &fs->elbo_beta) || seed < 0)
    return ae_fail (err, AE_E_FORMAT, "elbo frame score needs the integers '%s', '%s' (>= 0) "
                    "and the float '%s'", KEY_ELBO_SAMPLES, KEY_ELBO_SEED, KEY_ELBO_BETA);
  fs->elbo_samples = samples >= 1 && samples <= AE_ELBO_SAMPLES_MAX ? (int) samples : 0;
  fs->elbo_seed = (uint64_t) seed;
  fs->kl_weight = fs->elbo_beta / ((double) m->in_c * m->in_h * m->in_w);
  return check_elbo (m, fs, AE_E_FORMAT, err);
}

/* anomaly.latent_vector, when present, names a vector and comes with the
 * Gaussian it describes. */
static ae_status
check_latent_vector (const ae_model *m, ae_error *err)
{
  const ae_meta_entry *e = ae_meta_find (&m->meta, KEY_LATENT_VECTOR);
  ae_latent_vector v;
  if (!e)
    return AE_OK;
  if (e->type != AE_META_STR || !ae_latent_vector_from_name (e->s, &v))
    return ae_fail (err, AE_E_FORMAT, "'%s' is not code or shift", KEY_LATENT_VECTOR);
  if (!m->latent_k)
    return ae_fail (err, AE_E_FORMAT, "'%s' without the tensors '%s' and '%s'",
                    KEY_LATENT_VECTOR, AE_LATENT_MEAN_TENSOR, AE_LATENT_WHITEN_TENSOR);
  return AE_OK;
}

static ae_status
read_frame_scoring (const ae_model *m, ae_frame_scoring *fs, ae_error *err)
{
  const ae_meta_entry *e = ae_meta_find (&m->meta, KEY_FRAME_SCORE);
  if (!e)
    return AE_OK;
  if (e->type != AE_META_STR || !ae_score_kind_from_name (e->s, &fs->kind))
    return ae_fail (err, AE_E_FORMAT, "'%s' is not recon, mahalanobis, combined or elbo",
                    KEY_FRAME_SCORE);
  if (ae_score_kind_uses_gaussian (fs->kind) && !m->latent_k)
    return ae_fail (err, AE_E_FORMAT, "frame score '%s' needs the tensors '%s' and '%s'",
                    e->s, AE_LATENT_MEAN_TENSOR, AE_LATENT_WHITEN_TENSOR);
  if (fs->kind == AE_SCORE_ELBO)
    return read_elbo (m, fs, err);
  if (fs->kind != AE_SCORE_COMBINED)
    return AE_OK;
  ae_status st = combined_stat (m, KEY_RECON_MEAN, 0, &fs->recon_mean, err);
  if (st == AE_OK)
    st = combined_stat (m, KEY_RECON_STD, 1, &fs->recon_std, err);
  if (st == AE_OK)
    st = combined_stat (m, KEY_MAHAL_MEAN, 0, &fs->mahal_mean, err);
  if (st == AE_OK)
    st = combined_stat (m, KEY_MAHAL_STD, 1, &fs->mahal_std, err);
  return st;
}

ae_status
ae_model_frame_scoring (const ae_model *m, ae_frame_scoring *fs, ae_error *err)
{
  memset (fs, 0, sizeof *fs);
  fs->kind = AE_SCORE_RECON;
  ae_status st = read_frame_scoring (m, fs, err);
  return st == AE_OK ? check_latent_vector (m, err) : st;
}

ae_status
ae_model_set_frame_scoring (ae_model *m, const ae_frame_scoring *fs, ae_error *err)
{
  if (!m || !fs || (unsigned) fs->kind >= KIND_COUNT)
    return ae_fail (err, AE_E_ARG, "bad frame scoring");
  if (fs->kind == AE_SCORE_ELBO && check_elbo (m, fs, AE_E_ARG, err) != AE_OK)
    return AE_E_ARG;
  if (ae_score_kind_uses_gaussian (fs->kind) && !m->latent_k)
    return ae_fail (err, AE_E_ARG, "frame score '%s' needs a latent Gaussian (ae_latent_fit)",
                    ae_score_kind_name (fs->kind));
  if (fs->kind == AE_SCORE_COMBINED
      && !(isfinite (fs->recon_mean) && isfinite (fs->mahal_mean) && fs->recon_std > 0.0
           && fs->mahal_std > 0.0 && isfinite (fs->recon_std) && isfinite (fs->mahal_std)))
    return ae_fail (err, AE_E_ARG, "combined frame score needs finite means and positive "
                    "standard deviations");
  ae_status st = ae_model_set_str (m, KEY_FRAME_SCORE, ae_score_kind_name (fs->kind));
  if (st == AE_OK && fs->kind == AE_SCORE_COMBINED) {
    st = ae_model_set_float (m, KEY_RECON_MEAN, fs->recon_mean);
    if (st == AE_OK)
      st = ae_model_set_float (m, KEY_RECON_STD, fs->recon_std);
    if (st == AE_OK)
      st = ae_model_set_float (m, KEY_MAHAL_MEAN, fs->mahal_mean);
    if (st == AE_OK)
      st = ae_model_set_float (m, KEY_MAHAL_STD, fs->mahal_std);
  }
  if (st == AE_OK && fs->kind == AE_SCORE_ELBO) {
    st = ae_model_set_int (m, KEY_ELBO_SAMPLES, fs->elbo_samples);
    if (st == AE_OK)
      st = ae_model_set_int (m, KEY_ELBO_SEED, (int64_t) fs->elbo_seed);
    if (st == AE_OK)
      st = ae_model_set_float (m, KEY_ELBO_BETA, fs->elbo_beta);
  }
  return st == AE_OK ? AE_OK : ae_fail (err, st, "cannot store the frame scoring");
}

double
ae_frame_score (const ae_frame_scoring *fs, double recon, double latent)
{
  switch (fs->kind) {
  case AE_SCORE_MAHALANOBIS:
    return latent;
  case AE_SCORE_COMBINED:
    return (recon - fs->recon_mean) / fs->recon_std + (latent - fs->mahal_mean) / fs->mahal_std;
  case AE_SCORE_ELBO:
    return recon + fs->kl_weight * latent;
  default:
    return recon;
  }
}
