/* Latent-space scores (lib/latent_score.c): the Gaussian fit against a
 * reference computed here, the frame scoring, save -> load, and a loader
 * that rejects wrong or corrupt latent tensors and score settings cleanly
 * (run under AddressSanitizer by tools/run-tests.sh). */
#include "nn.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define D 4 /* toy latent size: the input itself */

/* A model whose latent is its 1x2x2 input: an identity encoder (the
 * wider middle layer keeps the first one the latent). */
static ae_model *
identity_model (void)
{
  ae_model *m = ae_model_new ("dense:4,dense:8:relu,dense:4:linear:1x2x2", 1, 2, 2, 1, NULL);
  if (!m || ae_model_latent_layer (m) != 0) {
    ae_model_free (m);
    return NULL;
  }
  const ae_layer *enc = &m->layers[0];
  memset (m->params + enc->w_off, 0, enc->w_n * sizeof (float));
  memset (m->params + enc->b_off, 0, enc->b_n * sizeof (float));
  for (int i = 0; i < D; i++)
    m->params[enc->w_off + (size_t) i * D + i] = 1.0f;
  return m;
}

/* n samples of mean + A g, g standard normal: covariance A A^T. */
static float *
gaussian_samples (size_t n, const double a[D][D], const double mean[D], uint64_t seed)
{
  ae_rng rng;
  ae_rng_seed (&rng, seed);
  float *x = malloc (n * D * sizeof *x);
  for (size_t k = 0; k < n; k++) {
    double g[D];
    for (int j = 0; j < D; j++)
      g[j] = ae_rng_normal (&rng);
    for (int i = 0; i < D; i++) {
      double v = mean[i];
      for (int j = 0; j < D; j++)
        v += a[i][j] * g[j];
      x[k * D + i] = (float) v;
    }
  }
  return x;
}

/* Inverse of a D x D matrix by Gauss-Jordan with partial pivoting. */
static int
invert (double m[D][D], double inv[D][D])
{
  for (int i = 0; i < D; i++)
    for (int j = 0; j < D; j++)
      inv[i][j] = i == j;
  for (int c = 0; c < D; c++) {
    int p = c;
    for (int r = c + 1; r < D; r++)
      if (fabs (m[r][c]) > fabs (m[p][c]))
        p = r;
    if (fabs (m[p][c]) < 1e-300)
      return 0;
    for (int j = 0; j < D; j++) {
      double t = m[c][j];
      m[c][j] = m[p][j], m[p][j] = t;
      t = inv[c][j];
      inv[c][j] = inv[p][j], inv[p][j] = t;
    }
    double d = m[c][c];
    for (int j = 0; j < D; j++)
      m[c][j] /= d, inv[c][j] /= d;
    for (int r = 0; r < D; r++) {
      if (r == c)
        continue;
      double f = m[r][c];
      for (int j = 0; j < D; j++)
        m[r][j] -= f * m[c][j], inv[r][j] -= f * inv[c][j];
    }
  }
  return 1;
}

static double
quad (const double p[D][D], const double mean[D], const float *z)
{
  double d[D], s = 0;
  for (int i = 0; i < D; i++)
    d[i] = z[i] - mean[i];
  for (int i = 0; i < D; i++)
    for (int j = 0; j < D; j++)
      s += d[i] * p[i][j] * d[j];
  return s;
}

static const double A[D][D] = { { 2.0, 0, 0, 0 }, { 1.0, 0.5, 0, 0 }, { 0, 0.3, 0.1, 0 },
                                { -1.0, 0, 0.2, 3.0 } };
static const double MU[D] = { 0.5, -2.0, 10.0, 3.0 };
#define NS 20000

/* The sample mean and covariance computed here, shrunk as documented. */
static void
reference (const float *x, size_t n, double shrink, double mean[D], double prec[D][D])
{
  double cov[D][D] = { { 0 } }, tr = 0;
  for (int i = 0; i < D; i++) {
    mean[i] = 0;
    for (size_t k = 0; k < n; k++)
      mean[i] += x[k * D + i];
    mean[i] /= (double) n;
  }
  for (size_t k = 0; k < n; k++)
    for (int i = 0; i < D; i++)
      for (int j = 0; j < D; j++)
        cov[i][j] += (x[k * D + i] - mean[i]) * (x[k * D + j] - mean[j]) / (double) n;
  for (int i = 0; i < D; i++)
    tr += cov[i][i];
  for (int i = 0; i < D; i++)
    for (int j = 0; j < D; j++)
      cov[i][j] = (1 - shrink) * cov[i][j] + (i == j ? shrink * tr / D : 0);
  invert (cov, prec);
}

static void
test_fit (void)
{
  ae_model *m = identity_model ();
  float *x = gaussian_samples (NS, A, MU, 7), scratch[D];
  ae_dataset d = { x, NULL, NS, 1, 2, 2 };
  ae_error err;
  CHECK (ae_model_latent_gaussian (m) == 0, "no Gaussian before fitting");
  CHECK (ae_latent_mahalanobis (m, x, scratch) < 0, "no distance without a Gaussian");
  for (int pass = 0; pass < 2; pass++) {
    double shrink = pass ? 0.3 : 0.0, mean[D], prec[D][D];
    CHECK (ae_latent_fit (m, &d, NULL, NS, shrink, &err) == AE_OK, "fit, shrinkage %g", shrink);
    CHECK (ae_model_latent_gaussian (m) == D, "latent Gaussian of %d values", D);
    reference (x, NS, shrink, mean, prec);
    double worst = 0;
    for (size_t k = 0; k < 200; k++) {
      double got = ae_latent_mahalanobis (m, x + k * D, scratch), want = quad (prec, mean, x + k * D);
      worst = fmax (worst, fabs (got - want) / fmax (want, 1e-3));
    }
    CHECK (worst < 1e-3, "shrinkage %g: distances match the reference (worst relative %.2g)",
           shrink, worst);
  }
  /* Against the true Gaussian: a sample of 20000 gets the covariance
   * within a few per cent, and a normal point's squared distance is about D. */
  ae_latent_fit (m, &d, NULL, NS, 0.0, &err);
  double cov[D][D], prec[D][D], sum = 0, worst = 0;
  for (int i = 0; i < D; i++)
    for (int j = 0; j < D; j++) {
      cov[i][j] = 0;
      for (int l = 0; l < D; l++)
        cov[i][j] += A[i][l] * A[j][l];
    }
  invert (cov, prec);
  for (size_t k = 0; k < NS; k++)
    sum += ae_latent_mahalanobis (m, x + k * D, scratch);
  for (size_t k = 0; k < 500; k++) {
    double got = ae_latent_mahalanobis (m, x + k * D, scratch), want = quad (prec, MU, x + k * D);
    worst = fmax (worst, fabs (got - want) / (want + 1.0));
  }
  CHECK (fabs (sum / NS - D) < 1e-6 * D + 1e-3, "mean squared distance on the fit set is %d "
         "(%.6f)", D, sum / NS);
  CHECK (worst < 0.1, "close to the true Gaussian's distance (worst %.3f)", worst);
  /* A subset by index, and argument errors. */
  size_t idx[3] = { 5, 1, 9 };
  CHECK (ae_latent_fit (m, &d, idx, 3, 0.0, &err) == AE_OK, "fit on three listed frames");
  idx[1] = NS;
  CHECK (ae_latent_fit (m, &d, idx, 3, 0.0, &err) == AE_E_ARG, "index out of range: %s",
         err.message);
  CHECK (ae_latent_fit (m, &d, NULL, 1, 0.0, &err) == AE_E_ARG, "one frame: %s", err.message);
  CHECK (ae_latent_fit (m, &d, NULL, NS, 1.5, &err) == AE_E_ARG, "shrinkage 1.5: %s",
         err.message);
  ae_dataset wrong = { x, NULL, NS / 2, 1, 1, 4 };
  CHECK (ae_latent_fit (m, &wrong, NULL, 10, 0.0, &err) == AE_E_SHAPE, "wrong frame shape: %s",
         err.message);
  float *same = calloc (D * 10, sizeof *same);
  ae_dataset flat = { same, NULL, 10, 1, 2, 2 };
  CHECK (ae_latent_fit (m, &flat, NULL, 10, 0.0, &err) == AE_E_NUMERIC,
         "identical frames: %s", err.message);
  CHECK (ae_model_latent_gaussian (m) == D, "a failed fit keeps the previous Gaussian");
  /* Collinear latents: shrinkage keeps the whitening finite. */
  for (size_t k = 0; k < 10; k++)
    for (int i = 0; i < D; i++)
      same[k * D + i] = (float) k;
  CHECK (ae_latent_fit (m, &flat, NULL, 10, 0.01, &err) == AE_OK
         && isfinite (ae_latent_mahalanobis (m, x, scratch)), "collinear latents, shrinkage 0.01");
  free (same);
  free (x);
  ae_model_free (m);
}

static void
test_scoring (void)
{
  ae_model *m = identity_model ();
  ae_frame_scoring fs, got;
  ae_error err;
  ae_score_kind k;
  CHECK (ae_score_kind_from_name ("combined", &k) && k == AE_SCORE_COMBINED
         && !ae_score_kind_from_name ("pca", &k)
         && strcmp (ae_score_kind_name (AE_SCORE_MAHALANOBIS), "mahalanobis") == 0,
         "score names");
  CHECK (ae_model_frame_scoring (m, &got, &err) == AE_OK && got.kind == AE_SCORE_RECON,
         "no settings: recon");
  fs = (ae_frame_scoring) { .kind = AE_SCORE_MAHALANOBIS };
  CHECK (ae_model_set_frame_scoring (m, &fs, &err) == AE_E_ARG, "latent score needs a fit: %s",
         err.message);
  float *x = gaussian_samples (100, A, MU, 3);
  ae_dataset d = { x, NULL, 100, 1, 2, 2 };
  ae_latent_fit (m, &d, NULL, 100, 0.01, &err);
  fs = (ae_frame_scoring) { .kind = AE_SCORE_COMBINED, .recon_mean = 0.5, .recon_std = 0.0, .mahal_mean = 4.0, .mahal_std = 2.0 };
  CHECK (ae_model_set_frame_scoring (m, &fs, &err) == AE_E_ARG, "zero std refused: %s",
         err.message);
  fs.recon_std = 0.25;
  CHECK (ae_model_set_frame_scoring (m, &fs, &err) == AE_OK
         && ae_model_frame_scoring (m, &got, &err) == AE_OK && got.kind == AE_SCORE_COMBINED
         && got.recon_mean == 0.5 && got.recon_std == 0.25 && got.mahal_mean == 4.0
         && got.mahal_std == 2.0, "combined settings stored and read back");
  CHECK (fabs (ae_frame_score (&got, 1.0, 8.0) - (2.0 + 2.0)) < 1e-12, "combined = z + z");
  got.kind = AE_SCORE_MAHALANOBIS;
  CHECK (ae_frame_score (&got, 1.0, 8.0) == 8.0, "mahalanobis ignores the map");
  got.kind = AE_SCORE_RECON;
  CHECK (ae_frame_score (&got, 1.0, 8.0) == 1.0, "recon ignores the latent");
  free (x);
  ae_model_free (m);
}

/* ---- The elbo score (lib/elbo.c) ----------------------------------------------------- */

/* A linear VAE on 1x2x2 frames: the encoder's weights are zero, so mu and
 * the log-variance are its biases whatever the frame; the decoder is
 * y = W z + b. Its expected error has a closed form. */
static const float VAE_MU[2] = { 0.5f, -1.0f };
static const float VAE_W[D][2] = { { 1.0f, 0.0f }, { 0.5f, -2.0f }, { 0.0f, 0.3f }, { -1.0f, 1.0f } };
static const float VAE_B[D] = { 0.1f, 0.2f, -0.3f, 0.4f };
static const float VAE_X[D] = { 0.9f, 0.0f, 0.2f, -1.0f };

static ae_model *
linear_vae (float logvar0, float logvar1)
{
  ae_model *m = ae_model_new ("dense:4,sample,dense:4:linear:1x2x2", 1, 2, 2, 1, NULL);
  if (!m)
    return NULL;
  const ae_layer *enc = &m->layers[0], *dec = &m->layers[2];
  float *b = m->params + enc->b_off;
  memset (m->params + enc->w_off, 0, enc->w_n * sizeof (float));
  b[0] = VAE_MU[0], b[1] = VAE_MU[1], b[2] = logvar0, b[3] = logvar1;
  memcpy (m->params + dec->w_off, VAE_W, sizeof VAE_W);
  memcpy (m->params + dec->b_off, VAE_B, sizeof VAE_B);
  return m;
}

/* The decoder's error at pixel p for the latent mu + sd * eps. */
static double
linear_vae_error (int p, const double sd[2], const double eps[2])
{
  double y = VAE_B[p];
  for (int j = 0; j < 2; j++)
    y += VAE_W[p][j] * (VAE_MU[j] + sd[j] * eps[j]);
  return (VAE_X[p] - y) * (VAE_X[p] - y);
}

static void
test_elbo_linear (void)
{
  const float lv[2] = { logf (0.25f), 0.3f };
  ae_model *m = linear_vae (lv[0], lv[1]);
  float map[D];
  ae_elbo *e = ae_elbo_new (m, 4, 11, NULL);
  double kl = ae_elbo_map (e, AE_LOSS_MSE, 0, VAE_X, map);
  /* By hand: 1/2 (ln 4 - 1/2) + 1/2 (e^0.3 - 0.3) = 0.443147 + 0.524929. */
  CHECK (fabs (kl - 0.968077) < 1e-5, "KL of mu (0.5, -1), variances (1/4, e^0.3): 0.968077 (%.6f)",
         kl);
  /* The map is the mean over the 4 samples of the seeded eps (drawn
   * sample by sample, as ae_elbo_new does). */
  ae_rng rng;
  ae_rng_seed (&rng, 11);
  double want[D] = { 0 }, sd[2] = { exp (0.5 * lv[0]), exp (0.5 * lv[1]) }, worst = 0;
  for (int k = 0; k < 4; k++) {
    double eps[2] = { (float) ae_rng_normal (&rng), 0 };
    eps[1] = (float) ae_rng_normal (&rng);
    for (int p = 0; p < D; p++)
      want[p] += linear_vae_error (p, sd, eps) / 4;
  }
  for (int p = 0; p < D; p++)
    worst = fmax (worst, fabs (map[p] - want[p]) / (want[p] + 1e-3));
  CHECK (worst < 1e-5, "4-sample map = the mean of the 4 decodes' errors (worst relative %.2g)",
         worst);
  ae_elbo_free (e);
  /* Many samples approach the closed form E|x - W z - b|^2 = |x - W mu - b|^2
   * + sum_j W_pj^2 sigma_j^2: 40 seeds of 64 samples each. */
  double mean[D] = { 0 }, closed[D];
  const double zero[2] = { 0, 0 };
  for (uint64_t seed = 1; seed <= 40; seed++) {
    e = ae_elbo_new (m, AE_ELBO_SAMPLES_MAX, seed, NULL);
    ae_elbo_map (e, AE_LOSS_MSE, 0, VAE_X, map);
    for (int p = 0; p < D; p++)
      mean[p] += map[p] / 40;
    ae_elbo_free (e);
  }
  worst = 0;
  for (int p = 0; p < D; p++) {
    closed[p] = linear_vae_error (p, sd, zero);
    for (int j = 0; j < 2; j++)
      closed[p] += VAE_W[p][j] * VAE_W[p][j] * sd[j] * sd[j];
    worst = fmax (worst, fabs (mean[p] - closed[p]) / closed[p]);
  }
  CHECK (worst < 0.06, "2560 posterior samples match the closed-form expected error (worst "
         "relative %.3f)", worst);
  ae_model_free (m);
  /* sigma -> 0: one sample is the deterministic reconstruction, KL its closed form. */
  m = linear_vae (-40.0f, -40.0f);
  e = ae_elbo_new (m, 1, 3, NULL);
  kl = ae_elbo_map (e, AE_LOSS_MSE, 0, VAE_X, map);
  worst = 0;
  for (int p = 0; p < D; p++)
    worst = fmax (worst, fabs (map[p] - linear_vae_error (p, zero, zero)));
  double kl_want = 0.5 * (VAE_MU[0] * VAE_MU[0] + VAE_MU[1] * VAE_MU[1]) + 2 * 0.5 * (40 - 1);
  CHECK (worst < 1e-6 && fabs (kl - kl_want) < 1e-4, "L = 1 with sigma ~ 0: the map is |x - W mu "
         "- b|^2 (worst %.2g), KL %.4f = %.4f", worst, kl, kl_want);
  ae_elbo_free (e);
  ae_model_free (m);
}

/* The VAE preset on 3x8x8 with the log-variance forced to -40: every
 * sample decodes mu, so the averaged map is the forward pass's (the
 * batch decode, its layout and the channel transpose agree with it). */
static void
test_elbo_preset (void)
{
  char spec[1024];
  ae_arch_preset ("vae", 3, 8, 8, 4, spec, sizeof spec, NULL);
  ae_model *m = ae_model_new (spec, 3, 8, 8, 5, NULL);
  const ae_layer *l = &m->layers[ae_model_latent_layer (m) - 1];
  size_t k = (size_t) l->out_c / 2, in = l->w_n / (size_t) l->out_c;
  memset (m->params + l->w_off + k * in, 0, k * in * sizeof (float));
  for (size_t i = k; i < 2 * k; i++)
    m->params[l->b_off + i] = -40.0f;
  ae_rng rng;
  ae_rng_seed (&rng, 8);
  float x[3 * 64], map[64], want[64], scratch[8 * 64];
  for (int i = 0; i < 3 * 64; i++)
    x[i] = (float) ae_rng_uniform (&rng);
  ae_session *s = ae_session_new (m, 1, 8, 8, NULL);
  ae_error_map (AE_LOSS_MSE, x, ae_session_forward (s, x), 3, 8, 8, 0, want, scratch);
  ae_elbo *e = ae_elbo_new (m, 5, 1, NULL);
  double kl = ae_elbo_map (e, AE_LOSS_MSE, 0, x, map), worst = 0;
  for (int i = 0; i < 64; i++)
    worst = fmax (worst, fabs (map[i] - want[i]) / (want[i] + 1e-6));
  CHECK (worst < 1e-4 && kl > 0, "RGB VAE preset, 5 samples at sigma ~ 0: the forward pass's map "
         "(worst relative %.2g), KL %.1f", worst, kl);
  ae_elbo_free (e);
  ae_session_free (s);
  ae_model_free (m);
}

/* Smooth 8x8 frames: a random linear ramp. */
static void
ramp (float *x, ae_rng *rng)
{
  double a = ae_rng_uniform (rng) - 0.5, b = ae_rng_uniform (rng) - 0.5, c = ae_rng_uniform (rng);
  for (int y = 0; y < 8; y++)
    for (int i = 0; i < 8; i++)
      x[y * 8 + i] = (float) fmin (1.0, fmax (0.0, 0.25 + 0.5 * c + (a * i + b * y) / 14.0));
}

static double
elbo_score (ae_elbo *e, const ae_frame_scoring *fs, const float *x)
{
  float map[64], scratch[64];
  double kl = ae_elbo_map (e, AE_LOSS_MSE, 0, x, map);
  return ae_frame_score (fs, ae_map_score (map, map, 64, 1.0f, scratch), kl);
}

static void
test_elbo_trained (void)
{
  ae_model *m = ae_model_new ("dense:32:lrelu,dense:8,sample,dense:32:lrelu,dense:64:sigmoid:1x8x8",
                              1, 8, 8, 2, NULL);
  enum { N = 600, T = 20 };
  float *x = malloc (N * 64 * sizeof *x), far[T][64];
  ae_rng rng;
  ae_rng_seed (&rng, 21);
  for (int k = 0; k < N; k++)
    ramp (x + k * 64, &rng);
  ae_dataset d = { x, NULL, N, 1, 8, 8 };
  ae_train_opts o;
  ae_train_opts_init (&o);
  o.epochs = 30;
  o.batch = 32;
  o.threads = 1;
  CHECK (ae_train (m, &d, &o, NULL, NULL) == AE_OK, "a small dense VAE trains on ramps");
  ae_frame_scoring fs = { .kind = AE_SCORE_ELBO, .elbo_samples = 8, .elbo_seed = 5,
                          .elbo_beta = o.kl_beta }, got;
  ae_error err;
  CHECK (ae_model_set_frame_scoring (m, &fs, &err) == AE_OK
         && ae_model_frame_scoring (m, &got, &err) == AE_OK && got.kind == AE_SCORE_ELBO
         && got.elbo_samples == 8 && got.elbo_seed == 5 && got.elbo_beta == o.kl_beta
         && fabs (got.kl_weight - o.kl_beta / 64.0) < 1e-15,
         "elbo settings stored and read back, KL weight beta / 64");
  CHECK (fabs (ae_frame_score (&got, 0.25, 3.2) - (0.25 + 3.2 * got.kl_weight)) < 1e-15,
         "elbo = map score + KL weight x KL");
  ae_elbo *e = ae_elbo_new_for (m, &got, &err), *twin = ae_elbo_new_for (m, &got, &err);
  double normal_max = 0, far_min = INFINITY;
  for (int k = 0; k < T; k++) {
    ramp (far[k], &rng); /* fresh normal frames */
    normal_max = fmax (normal_max, elbo_score (e, &got, far[k]));
    for (int i = 0; i < 64; i++)
      far[k][i] = (float) ae_rng_uniform (&rng);
    far_min = fmin (far_min, elbo_score (e, &got, far[k]));
  }
  CHECK (far_min > normal_max, "noise frames score above unseen ramps (lowest %.4f > highest "
         "%.4f)", far_min, normal_max);
  /* Determinism: a twin scorer, and the same frame after others, give the
   * same bits; another seed other samples. */
  float a[64], b[64], c[64];
  double kla = ae_elbo_map (e, AE_LOSS_MSE, 0, x, a);
  ae_elbo_map (e, AE_LOSS_MSE, 0, x + 64, c);
  double klb = ae_elbo_map (twin, AE_LOSS_MSE, 0, x, b);
  double klc = ae_elbo_map (e, AE_LOSS_MSE, 0, x, c);
  CHECK (kla == klb && klb == klc && memcmp (a, b, sizeof a) == 0 && memcmp (a, c, sizeof a) == 0,
         "same seed, same frame: the same map and KL, whatever was scored in between");
  ae_elbo_free (twin);
  twin = ae_elbo_new (m, 8, 6, NULL);
  ae_elbo_map (twin, AE_LOSS_MSE, 0, x, b);
  CHECK (memcmp (a, b, sizeof a) != 0, "another seed: other samples, another map");
  ae_elbo_free (twin);
  ae_elbo_free (e);
  free (x);
  ae_model_free (m);
}

static void
test_elbo_refusals (void)
{
  ae_model *plain = identity_model (), *vae = linear_vae (0.0f, 0.0f);
  ae_error err = { AE_OK, "" };
  CHECK (!ae_elbo_new (plain, 8, 1, &err) && err.status == AE_E_ARG, "no sample layer: %s",
         err.message);
  CHECK (!ae_elbo_new (vae, 0, 1, &err) && err.status == AE_E_ARG
         && !ae_elbo_new (vae, AE_ELBO_SAMPLES_MAX + 1, 1, &err), "samples outside 1..%d: %s",
         AE_ELBO_SAMPLES_MAX, err.message);
  ae_model *res = ae_model_new ("dense:8,sample,dense:4:linear:1x2x2,residual", 1, 2, 2, 1, NULL);
  CHECK (res && !ae_elbo_new (res, 8, 1, &err) && err.status == AE_E_ARG,
         "a residual layer after the sample layer: %s", err.message);
  ae_model_free (res);
  ae_frame_scoring fs = { .kind = AE_SCORE_ELBO, .elbo_samples = 8, .elbo_beta = 1.0 };
  CHECK (ae_model_set_frame_scoring (plain, &fs, &err) == AE_E_ARG, "elbo settings refused for "
         "a model without a sample layer: %s", err.message);
  fs.elbo_beta = -1.0;
  CHECK (ae_model_set_frame_scoring (vae, &fs, &err) == AE_E_ARG, "negative beta: %s",
         err.message);
  fs.elbo_beta = NAN;
  CHECK (ae_model_set_frame_scoring (vae, &fs, &err) == AE_E_ARG, "NaN beta: %s", err.message);
  fs.elbo_beta = 1.0;
  fs.elbo_samples = 0;
  CHECK (ae_model_set_frame_scoring (vae, &fs, &err) == AE_E_ARG, "zero samples: %s",
         err.message);
  fs.elbo_samples = 8;
  fs.elbo_seed = UINT64_MAX;
  CHECK (ae_model_set_frame_scoring (vae, &fs, &err) == AE_E_ARG, "seed of 2^64 - 1: %s",
         err.message);
  ae_model_free (vae);
  ae_model_free (plain);
}

/* ---- Per-pixel standardised maps (lib/map_norm.c) -------------------------------------- */

static void
test_map_mean (void)
{
  ae_model *m = identity_model ();
  ae_error err = { AE_OK, "" };
  float mean[D] = { 0.5f, 0.25f, 0.0f, 0.25f }, map[D] = { 1.0f, 1.0f, 1.0f, 1.0f };
  CHECK (!ae_model_has_map_mean (m) && ae_map_normalise (m, map, 2, 2) == AE_E_ARG,
         "no mean map: nothing to divide by");
  CHECK (ae_model_set_map_mean (m, mean, 1, 4, &err) == AE_E_SHAPE, "another size: %s",
         err.message);
  float bad[D] = { 0.5f, -0.1f, 0.0f, 0.2f };
  CHECK (ae_model_set_map_mean (m, bad, 2, 2, &err) == AE_E_ARG, "a negative value: %s",
         err.message);
  bad[1] = NAN;
  CHECK (ae_model_set_map_mean (m, bad, 2, 2, &err) == AE_E_ARG, "NaN: %s", err.message);
  float zero[D] = { 0 };
  CHECK (ae_model_set_map_mean (m, zero, 2, 2, &err) == AE_E_ARG, "all zero: %s", err.message);
  CHECK (ae_model_set_map_mean (m, mean, 2, 2, &err) == AE_OK && ae_model_has_map_mean (m),
         "mean map set");
  /* The zero pixel is raised to 1e-3 of the mean value 0.25. */
  CHECK (ae_map_normalise (m, map, 2, 2) == AE_OK && map[0] == 2.0f && map[1] == 4.0f
         && fabsf (map[2] - 4000.0f) < 0.01f && map[3] == 4.0f,
         "map / mean map, the zero pixel floored at 1e-3 of the mean (%g %g %g %g)", map[0],
         map[1], map[2], map[3]);
  CHECK (ae_map_normalise (m, map, 4, 1) == AE_E_SHAPE, "normalising another size: refused");
  ae_model_free (m);
}

/* ---- Files --------------------------------------------------------------------- */

#define FRAMES 200 /* of 8x8 uniform noise, the conv models' training set */

/* A conv model (latent 6) trained for an epoch on d's frames. */
static ae_model *
trained_conv_model (float **x, ae_dataset *d)
{
  ae_model *m = ae_model_new ("conv:4:3:2:1,bn:lrelu,dense:6,dense:64:lrelu:4x4x4,"
                              "deconv:1:4:2:1:sigmoid", 1, 8, 8, 1, NULL);
  ae_rng rng;
  ae_rng_seed (&rng, 4);
  *x = malloc (FRAMES * 64 * sizeof **x);
  for (size_t i = 0; i < FRAMES * 64; i++)
    (*x)[i] = (float) ae_rng_uniform (&rng);
  *d = (ae_dataset) { *x, NULL, FRAMES, 1, 8, 8 };
  ae_train_opts o;
  ae_train_opts_init (&o);
  o.epochs = 1;
  ae_train (m, d, &o, NULL, NULL);
  return m;
}

/* A trained conv model with a combined score, as ae-train writes it. */
static ae_model *
scored_model (void)
{
  float *x;
  ae_dataset d;
  ae_model *m = trained_conv_model (&x, &d);
  ae_latent_fit (m, &d, NULL, FRAMES, 0.01, NULL);
  ae_frame_scoring fs = { .kind = AE_SCORE_COMBINED, .recon_mean = 0.05, .recon_std = 0.01, .mahal_mean = 6.0, .mahal_std = 3.0 };
  ae_model_set_frame_scoring (m, &fs, NULL);
  free (x);
  return m;
}

/* z(x) - z(x^) from one session's own passes, into shift (6 floats). */
static void
shift_here (ae_session *s, const float *x, float *recon, float *shift)
{
  memcpy (recon, ae_session_forward (s, x), 64 * sizeof *recon);
  memcpy (shift, ae_session_encode (s, x), 6 * sizeof *shift);
  const float *back = ae_session_encode (s, recon);
  for (int i = 0; i < 6; i++)
    shift[i] -= back[i];
}

/* The Gaussian of the latent's shift: ae_latent_vectors against the shift
 * computed here, a fit whose distances average the latent size on its own
 * vectors (as they must for a Gaussian of the shifts; the codes' Gaussian
 * would put the shifts far away), the code again on a refit, and the
 * vector kept through a file. */
static void
test_shift (const char *path)
{
  float *x, recon[64], want[6], out[6], scratch[6];
  ae_dataset d;
  ae_error err = { AE_OK, "" };
  ae_latent_vector v;
  ae_model *m = trained_conv_model (&x, &d);
  CHECK (ae_latent_vector_from_name ("shift", &v) && v == AE_LATENT_SHIFT
         && !ae_latent_vector_from_name ("delta", &v)
         && strcmp (ae_latent_vector_name (AE_LATENT_CODE), "code") == 0, "vector names");
  CHECK (ae_latent_fit_vector (m, AE_LATENT_SHIFT, &d, NULL, FRAMES, 0.0, &err) == AE_OK
         && ae_model_latent_vector (m) == AE_LATENT_SHIFT
         && strcmp (ae_model_get_str (m, "anomaly.latent_vector"), "shift") == 0,
         "fit of the shift (%s)", err.message);
  ae_session *own = ae_session_new (m, 1, 8, 8, NULL), *enc = ae_session_new (m, 1, 8, 8, NULL);
  double worst = 0, sum = 0;
  for (size_t k = 0; k < FRAMES; k++) {
    shift_here (own, x + k * 64, recon, want);
    const float *got = ae_latent_vectors (m, enc, x + k * 64, recon, out);
    for (int i = 0; i < 6; i++)
      worst = fmax (worst, fabs (got[i] - want[i]));
    sum += ae_latent_mahalanobis (m, got, scratch);
  }
  CHECK (worst < 1e-6, "ae_latent_vectors gives z(x) - z(x^) (worst %.2g)", worst);
  CHECK (fabs (sum / FRAMES - 6) < 0.01, "the fit's own shifts average a distance of 6 (%.4f)",
         sum / FRAMES);
  CHECK (ae_model_save (m, path, &err) == AE_OK, "save (%s)", err.message);
  ae_model *l = ae_model_load (path, &err);
  CHECK (l && ae_model_latent_vector (l) == AE_LATENT_SHIFT
         && ae_latent_mahalanobis (l, want, scratch) == ae_latent_mahalanobis (m, want, out),
         "the shift's Gaussian survives a file (%s)", l ? "loaded" : err.message);
  CHECK (ae_latent_fit_vector (m, AE_LATENT_CODE, &d, NULL, FRAMES, 0.0, &err) == AE_OK
         && ae_model_latent_vector (m) == AE_LATENT_CODE
         && memcmp (ae_latent_vectors (m, enc, x, NULL, out), ae_session_encode (own, x),
                    6 * sizeof (float)) == 0, "a refit of the code: the vector is the latent");
  ae_model_set_str (m, "anomaly.latent_vector", "delta");
  CHECK (ae_model_save (m, path, &err) == AE_E_ARG, "an unknown vector is not saved: %s",
         err.message);
  ae_model_free (l);
  ae_session_free (enc);
  ae_session_free (own);
  ae_model_free (m);
  free (x);
  unlink (path);
}

/* Saves the model loaded from path next to it and compares the bytes. */
static void
check_writes_back (const ae_model *l, const char *path)
{
  char copy[700];
  snprintf (copy, sizeof copy, "%s.copy", path);
  size_t n1 = 0, n2 = 0;
  ae_model_save (l, copy, NULL);
  void *a = read_all (path, &n1), *b = read_all (copy, &n2);
  CHECK (a && b && n1 == n2 && memcmp (a, b, n1) == 0, "written back byte for byte");
  free (a);
  free (b);
  unlink (copy);
}

static void
test_round_trip (const char *path)
{
  ae_error err;
  ae_model *m = scored_model ();
  CHECK (ae_model_latent_gaussian (m) == 6, "scored model has a 6-value Gaussian");
  CHECK (ae_model_save (m, path, &err) == AE_OK, "save");
  ae_model *bad = scored_model ();
  ae_model_set_str (bad, "anomaly.frame_score", "knn");
  CHECK (ae_model_save (bad, path, &err) == AE_E_ARG, "a model the loader would refuse is not "
         "saved: %s", err.message);
  ae_model_free (bad);
  ae_model *l = ae_model_load (path, &err);
  CHECK (l != NULL, "load (%s)", l ? "ok" : err.message);
  if (!l) {
    ae_model_free (m);
    return;
  }
  float z[6] = { 0.1f, -0.2f, 0.3f, 1.0f, 0.0f, 2.0f }, s1[6], s2[6];
  ae_frame_scoring fs;
  CHECK (ae_latent_mahalanobis (m, z, s1) == ae_latent_mahalanobis (l, z, s2),
         "same distance after loading (%g)", ae_latent_mahalanobis (l, z, s2));
  CHECK (ae_model_frame_scoring (l, &fs, &err) == AE_OK && fs.kind == AE_SCORE_COMBINED
         && fs.mahal_std == 3.0, "combined settings survive");
  check_writes_back (l, path);
  ae_model_free (l);
  ae_model_free (m);
}

/* Parses the file at path, lets `edit` change its tensors or metadata,
 * writes it to out and loads that: the load must fail with AE_E_FORMAT. */
typedef void (*edit_fn) (ae_meta *meta, aem_tensor *t, size_t *n);

static void
expect_rejected (const char *path, const char *out, edit_fn edit, const char *what)
{
  size_t len = 0, n = 0;
  void *img = read_all (path, &len);
  ae_meta meta;
  aem_tensor *t = NULL;
  ae_error err = { AE_OK, "" };
  ae_meta_init (&meta);
  if (!img || aem_parse (img, len, &meta, &t, &n, &err) != AE_OK) {
    CHECK (0, "%s: cannot parse the base file (%s)", what, err.message);
    free (img);
    return;
  }
  size_t keep = n;
  edit (&meta, t, &n);
  ae_status st = aem_write (out, &meta, t, n, &err);
  ae_model *m = st == AE_OK ? ae_model_load (out, &err) : NULL;
  CHECK (st == AE_OK && !m && err.status == AE_E_FORMAT, "%s rejected: %s", what, err.message);
  ae_model_free (m);
  aem_tensors_free (t, keep);
  ae_meta_free (&meta);
  free (img);
  unlink (out);
}

typedef struct {
  edit_fn fn;
  const char *what;
} edit_case;

static void
expect_all_rejected (const char *path, const char *out, const edit_case *cases, size_t n)
{
  for (size_t i = 0; i < n; i++)
    expect_rejected (path, out, cases[i].fn, cases[i].what);
}

static void
drop_whiten (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) meta, (void) t;
  *n -= 1;
}

static void
drop_both (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) meta, (void) t;
  *n -= 2;
}

static void
swap_order (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) meta;
  aem_tensor tmp = t[*n - 1];
  t[*n - 1] = t[*n - 2];
  t[*n - 2] = tmp;
}

static void
rename_mean (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) meta;
  snprintf (t[*n - 2].name, sizeof t[*n - 2].name, "latent.mu");
}

static void
shrink_whiten (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) meta;
  t[*n - 1].shape[0] = 4; /* 4 x 6: fewer values, still a valid container */
}

static void
flatten_whiten (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) meta;
  t[*n - 1].ndim = 1;
  t[*n - 1].shape[0] = 36;
}

static void
nan_whiten (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) meta;
  t[*n - 1].data[7] = NAN;
}

static void
inf_mean (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) meta;
  t[*n - 2].data[0] = INFINITY;
}

static void
unknown_score (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) t, (void) n;
  ae_meta_set_str (meta, "anomaly.frame_score", "knn");
}

/* The metadata with `key` dropped, or turned into the integer 2. */
static void
drop_or_retype (ae_meta *meta, const char *key, int drop)
{
  ae_meta m2;
  ae_meta_init (&m2);
  for (size_t i = 0; i < meta->n; i++) {
    const ae_meta_entry *e = &meta->v[i];
    if (strcmp (e->key, key) == 0) {
      if (!drop)
        ae_meta_set_int (&m2, e->key, 2);
    } else if (e->type == AE_META_INT)
      ae_meta_set_int (&m2, e->key, e->i);
    else if (e->type == AE_META_FLOAT)
      ae_meta_set_float (&m2, e->key, e->f);
    else
      ae_meta_set_str (&m2, e->key, e->s);
  }
  ae_meta_free (meta);
  *meta = m2;
}

static void
score_as_int (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) t, (void) n;
  drop_or_retype (meta, "anomaly.frame_score", 0);
}

static void
zero_std (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) t, (void) n;
  ae_meta_set_float (meta, "anomaly.combined.mahalanobis_std", 0.0);
}

static void
unknown_vector (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) t, (void) n;
  ae_meta_set_str (meta, "anomaly.latent_vector", "delta");
}

/* The reconstruction score, and the key of a Gaussian the file lacks. */
static void
vector_without_gaussian (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) t;
  drop_or_retype (meta, "anomaly.frame_score", 1);
  ae_meta_set_str (meta, "anomaly.latent_vector", "shift");
  *n -= 2;
}

static void
nan_mean (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) t, (void) n;
  ae_meta_set_float (meta, "anomaly.combined.recon_mean", NAN);
}

static void
map_mean_zero (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) meta;
  t[*n - 1].data[5] = 0.0f;
}

static void
map_mean_negative (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) meta;
  t[*n - 1].data[0] = -0.01f;
}

static void
map_mean_nan (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) meta;
  t[*n - 1].data[63] = NAN;
}

static void
map_mean_transposed (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) meta;
  t[*n - 1].shape[0] = 4;
  t[*n - 1].shape[1] = 16;
}

static void
map_mean_renamed (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) meta;
  snprintf (t[*n - 1].name, sizeof t[*n - 1].name, "map.var");
}

/* Rotates the last three tensors: map.mean, latent.mean, latent.whiten. */
static void
map_mean_first (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) meta;
  aem_tensor last = t[*n - 1];
  t[*n - 1] = t[*n - 2];
  t[*n - 2] = t[*n - 3];
  t[*n - 3] = last;
}

/* Drops latent.whiten: latent.mean alone, then map.mean. */
static void
map_mean_twice (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) meta;
  aem_tensor whiten = t[*n - 2];
  t[*n - 2] = t[*n - 1];
  t[*n - 1] = whiten;
  *n -= 1;
}

static void
elbo_on_plain (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) t, (void) n;
  ae_meta_set_str (meta, "anomaly.frame_score", "elbo");
  ae_meta_set_int (meta, "anomaly.elbo.samples", 8);
  ae_meta_set_int (meta, "anomaly.elbo.seed", 1);
  ae_meta_set_float (meta, "anomaly.elbo.beta", 1.0);
}

static void
elbo_no_beta (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) t, (void) n;
  drop_or_retype (meta, "anomaly.elbo.beta", 1);
}

static void
elbo_beta_as_int (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) t, (void) n;
  drop_or_retype (meta, "anomaly.elbo.beta", 0);
}

static void
elbo_no_samples (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) t, (void) n;
  drop_or_retype (meta, "anomaly.elbo.samples", 1);
}

static void
elbo_zero_samples (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) t, (void) n;
  ae_meta_set_int (meta, "anomaly.elbo.samples", 0);
}

static void
elbo_many_samples (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) t, (void) n;
  ae_meta_set_int (meta, "anomaly.elbo.samples", AE_ELBO_SAMPLES_MAX + 1);
}

static void
elbo_negative_seed (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) t, (void) n;
  ae_meta_set_int (meta, "anomaly.elbo.seed", -1);
}

static void
elbo_negative_beta (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) t, (void) n;
  ae_meta_set_float (meta, "anomaly.elbo.beta", -0.5);
}

static void
elbo_inf_beta (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) t, (void) n;
  ae_meta_set_float (meta, "anomaly.elbo.beta", INFINITY);
}

/* The scored model plus a mean map of its build size, saved to path. */
static void
test_map_mean_file (const char *path, const char *out)
{
  ae_model *m = scored_model ();
  float mean[64];
  for (int i = 0; i < 64; i++)
    mean[i] = 0.01f + 0.001f * (float) i;
  ae_error err = { AE_OK, "" };
  CHECK (ae_model_set_map_mean (m, mean, 8, 8, &err) == AE_OK && ae_model_save (m, path, &err)
         == AE_OK, "model with a Gaussian and a mean map saved (%s)", err.message);
  ae_model *l = ae_model_load (path, &err);
  float a[64], b[64];
  for (int i = 0; i < 64; i++)
    a[i] = b[i] = 0.5f;
  CHECK (l && ae_model_has_map_mean (l) && ae_model_latent_gaussian (l) == 6
         && ae_map_normalise (m, a, 8, 8) == AE_OK && ae_map_normalise (l, b, 8, 8) == AE_OK
         && memcmp (a, b, sizeof a) == 0, "both survive save and load (%s)", l ? "" : err.message);
  if (l)
    check_writes_back (l, path);
  ae_model_free (l);
  ae_model_free (m);
  static const edit_case cases[] = {
    { map_mean_zero, "a zero in map.mean" },
    { map_mean_negative, "a negative value in map.mean" },
    { map_mean_nan, "NaN in map.mean" },
    { map_mean_transposed, "map.mean of shape [4, 16]" },
    { map_mean_renamed, "map.mean misnamed" },
    { map_mean_first, "map.mean before the latent tensors" },
    { map_mean_twice, "a tensor after map.mean" },
  };
  expect_all_rejected (path, out, cases, sizeof cases / sizeof cases[0]);
}

/* The linear VAE with elbo settings, saved to path; it loads back with them. */
static void
test_elbo_file (const char *path, const char *out)
{
  ae_model *m = linear_vae (-1.0f, 0.5f);
  ae_frame_scoring fs = { .kind = AE_SCORE_ELBO, .elbo_samples = 3, .elbo_seed = 9,
                          .elbo_beta = 0.5 }, got;
  ae_error err = { AE_OK, "" };
  CHECK (ae_model_set_frame_scoring (m, &fs, &err) == AE_OK && ae_model_save (m, path, &err)
         == AE_OK, "VAE with an elbo score saved (%s)", err.message);
  ae_model *l = ae_model_load (path, &err);
  CHECK (l && ae_model_frame_scoring (l, &got, &err) == AE_OK && got.kind == AE_SCORE_ELBO
         && got.elbo_samples == 3 && got.elbo_seed == 9 && got.elbo_beta == 0.5
         && got.kl_weight == 0.5 / 4, "elbo settings survive save and load");
  float a[D], b[D];
  ae_elbo *e1 = ae_elbo_new_for (m, &fs, NULL), *e2 = l ? ae_elbo_new_for (l, &got, NULL) : NULL;
  CHECK (e1 && e2 && ae_elbo_map (e1, AE_LOSS_MSE, 0, VAE_X, a)
         == ae_elbo_map (e2, AE_LOSS_MSE, 0, VAE_X, b) && memcmp (a, b, sizeof a) == 0,
         "the loaded model scores bit for bit as the saved one");
  ae_elbo_free (e1);
  ae_elbo_free (e2);
  ae_model_free (l);
  ae_model_free (m);
  static const edit_case cases[] = {
    { elbo_no_beta, "elbo without anomaly.elbo.beta" },
    { elbo_beta_as_int, "anomaly.elbo.beta an integer" },
    { elbo_no_samples, "elbo without anomaly.elbo.samples" },
    { elbo_zero_samples, "elbo with 0 samples" },
    { elbo_many_samples, "elbo with too many samples" },
    { elbo_negative_seed, "elbo with a negative seed" },
    { elbo_negative_beta, "elbo with a negative beta" },
    { elbo_inf_beta, "elbo with an infinite beta" },
  };
  expect_all_rejected (path, out, cases, sizeof cases / sizeof cases[0]);
}

static void
test_rejections (const char *path, const char *out)
{
  static const edit_case cases[] = {
    { drop_whiten, "latent.whiten missing" },
    { drop_both, "combined score without its tensors" },
    { swap_order, "latent tensors in the wrong order" },
    { rename_mean, "misnamed latent.mean" },
    { shrink_whiten, "latent.whiten of shape [4, 6]" },
    { flatten_whiten, "latent.whiten of rank 1" },
    { nan_whiten, "NaN in latent.whiten" },
    { inf_mean, "infinite latent.mean" },
    { unknown_score, "unknown anomaly.frame_score" },
    { score_as_int, "anomaly.frame_score not a string" },
    { zero_std, "zero combined std" },
    { nan_mean, "NaN combined mean" },
    { elbo_on_plain, "elbo score on a model without a sample layer" },
    { unknown_vector, "unknown anomaly.latent_vector" },
    { vector_without_gaussian, "anomaly.latent_vector without latent tensors" },
  };
  expect_all_rejected (path, out, cases, sizeof cases / sizeof cases[0]);
}

/* A loaded model's frame score can be computed: a finite distance for a
 * Gaussian, an elbo scorer that maps a frame. */
static int
scores_cleanly (const ae_model *m)
{
  float z[6] = { 0 }, s[6];
  ae_frame_scoring fs;
  if (ae_model_frame_scoring (m, &fs, NULL) != AE_OK)
    return 0;
  int c, h, w;
  ae_model_input_shape (m, &c, &h, &w);
  float ones[64] = { 1.0f };
  if (ae_model_has_map_mean (m) && (h * w > 64 || ae_map_normalise (m, ones, h, w) != AE_OK))
    return 0;
  if (ae_score_kind_uses_gaussian (fs.kind))
    return ae_model_latent_gaussian (m) <= 6 && isfinite (ae_latent_mahalanobis (m, z, s));
  if (fs.kind != AE_SCORE_ELBO)
    return 1;
  ae_elbo *e = c * h * w == D ? ae_elbo_new_for (m, &fs, NULL) : NULL;
  float map[D];
  int ok = e && ae_elbo_map (e, AE_LOSS_MSE, 0, VAE_X, map) != -1.0;
  ae_elbo_free (e);
  return ok;
}

/* Random byte changes with the CRC fixed, so the structural and model
 * checks must catch them; whatever loads must score. */
static void
test_corruption (const char *path, int rounds)
{
  size_t len = 0;
  unsigned char *img = read_all (path, &len);
  ae_rng rng;
  ae_rng_seed (&rng, 99);
  int loaded = 0, unclean = 0;
  /* Aim at the end of the file, where the latent tensors are. */
  size_t tail = len > 1200 ? len - 1200 : 0;
  for (int r = 0; img && r < rounds; r++) {
    unsigned char *p = malloc (len);
    memcpy (p, img, len);
    int changes = 1 + (int) ae_rng_below (&rng, 4);
    for (int c = 0; c < changes; c++) {
      size_t at = ae_rng_below (&rng, 4) ? tail + ae_rng_below (&rng, len - 4 - tail)
                                         : ae_rng_below (&rng, len - 4);
      p[at] = ae_rng_below (&rng, 2) ? (unsigned char) ae_rng_next (&rng)
                                     : (unsigned char) (p[at] ^ (1u << ae_rng_below (&rng, 8)));
    }
    uint32_t crc = aem_crc32 (0, p, len - 4);
    for (int k = 0; k < 4; k++)
      p[len - 4 + (size_t) k] = (unsigned char) (crc >> (8 * k));
    ae_error err = { AE_OK, "" };
    ae_model *m = ae_model_load_memory (p, len, &err);
    if (m) {
      loaded++;
      unclean += !scores_cleanly (m);
    } else if (err.status != AE_E_FORMAT || !err.message[0]) {
      unclean++;
    }
    ae_model_free (m);
    free (p);
  }
  CHECK (img && unclean == 0, "%d corruptions of %s: clean rejections, %d loaded and usable",
         rounds, path, loaded);
  free (img);
}

int
main (void)
{
  char dir[] = "/tmp/ae-test-latent-XXXXXX";
  if (!mkdtemp (dir))
    return 2;
  char path[600], out[600], elbo[600], norm[600];
  snprintf (path, sizeof path, "%s/scored.aem", dir);
  snprintf (norm, sizeof norm, "%s/norm.aem", dir);
  snprintf (elbo, sizeof elbo, "%s/elbo.aem", dir);
  snprintf (out, sizeof out, "%s/edited.aem", dir);
  test_fit ();
  test_scoring ();
  test_round_trip (path);
  test_rejections (path, out);
  test_shift (out);
  test_elbo_linear ();
  test_elbo_preset ();
  test_elbo_trained ();
  test_elbo_refusals ();
  test_elbo_file (elbo, out);
  test_map_mean ();
  test_map_mean_file (norm, out);
  const char *env = getenv ("AE_TEST_CORRUPTIONS");
  test_corruption (path, env ? atoi (env) : 3000);
  test_corruption (elbo, env ? atoi (env) : 3000);
  test_corruption (norm, env ? atoi (env) : 3000);
  unlink (path);
  unlink (norm);
  unlink (elbo);
  rmdir (dir);
  return CHECK_DONE ();
}
