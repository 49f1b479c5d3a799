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
  fs = (ae_frame_scoring) { AE_SCORE_MAHALANOBIS, 0, 0, 0, 0 };
  CHECK (ae_model_set_frame_scoring (m, &fs, &err) == AE_E_ARG, "latent score needs a fit: %s",
         err.message);
  float *x = gaussian_samples (100, A, MU, 3);
  ae_dataset d = { x, NULL, 100, 1, 2, 2 };
  ae_latent_fit (m, &d, NULL, 100, 0.01, &err);
  fs = (ae_frame_scoring) { AE_SCORE_COMBINED, 0.5, 0.0, 4.0, 2.0 };
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

/* ---- Files --------------------------------------------------------------------- */

/* A trained conv model with a combined score, as ae-train writes it. */
static ae_model *
scored_model (void)
{
  ae_model *m = ae_model_new ("conv:4:3:2:1,bn:lrelu,dense:6,dense:64:lrelu:4x4x4,"
                              "deconv:1:4:2:1:sigmoid", 1, 8, 8, 1, NULL);
  ae_rng rng;
  ae_rng_seed (&rng, 4);
  float *x = malloc (200 * 64 * sizeof *x);
  for (size_t i = 0; i < 200 * 64; i++)
    x[i] = (float) ae_rng_uniform (&rng);
  ae_dataset d = { x, NULL, 200, 1, 8, 8 };
  ae_train_opts o;
  ae_train_opts_init (&o);
  o.epochs = 1;
  ae_train (m, &d, &o, NULL, NULL);
  ae_latent_fit (m, &d, NULL, 200, 0.01, NULL);
  ae_frame_scoring fs = { AE_SCORE_COMBINED, 0.05, 0.01, 6.0, 3.0 };
  ae_model_set_frame_scoring (m, &fs, NULL);
  free (x);
  return m;
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
  char copy[700];
  snprintf (copy, sizeof copy, "%s.copy", path);
  size_t n1 = 0, n2 = 0;
  ae_model_save (l, copy, &err);
  void *a = read_all (path, &n1), *b = read_all (copy, &n2);
  CHECK (a && b && n1 == n2 && memcmp (a, b, n1) == 0, "written back byte for byte");
  free (a);
  free (b);
  unlink (copy);
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

static void
score_as_int (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) t, (void) n;
  ae_meta m2;
  ae_meta_init (&m2);
  for (size_t i = 0; i < meta->n; i++) {
    const ae_meta_entry *e = &meta->v[i];
    if (strcmp (e->key, "anomaly.frame_score") == 0)
      ae_meta_set_int (&m2, e->key, 2);
    else if (e->type == AE_META_INT)
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
zero_std (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) t, (void) n;
  ae_meta_set_float (meta, "anomaly.combined.mahalanobis_std", 0.0);
}

static void
nan_mean (ae_meta *meta, aem_tensor *t, size_t *n)
{
  (void) t, (void) n;
  ae_meta_set_float (meta, "anomaly.combined.recon_mean", NAN);
}

static void
test_rejections (const char *path, const char *out)
{
  static const struct {
    edit_fn fn;
    const char *what;
  } cases[] = {
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
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    expect_rejected (path, out, cases[i].fn, cases[i].what);
}

/* Random byte changes with the CRC fixed, so the structural and model
 * checks must catch them; whatever loads must have a usable Gaussian. */
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
      float z[6] = { 0 }, s[6];
      ae_frame_scoring fs;
      loaded++;
      if (ae_model_frame_scoring (m, &fs, &err) != AE_OK
          || (fs.kind != AE_SCORE_RECON && !isfinite (ae_latent_mahalanobis (m, z, s))))
        unclean++;
    } else if (err.status != AE_E_FORMAT || !err.message[0]) {
      unclean++;
    }
    ae_model_free (m);
    free (p);
  }
  CHECK (img && unclean == 0, "%d corruptions of a scored model: clean rejections, %d loaded "
         "and usable", rounds, loaded);
  free (img);
}

int
main (void)
{
  char dir[] = "/tmp/ae-test-latent-XXXXXX";
  if (!mkdtemp (dir))
    return 2;
  char path[600], out[600];
  snprintf (path, sizeof path, "%s/scored.aem", dir);
  snprintf (out, sizeof out, "%s/edited.aem", dir);
  test_fit ();
  test_scoring ();
  test_round_trip (path);
  test_rejections (path, out);
  const char *env = getenv ("AE_TEST_CORRUPTIONS");
  test_corruption (path, env ? atoi (env) : 3000);
  unlink (path);
  rmdir (dir);
  return CHECK_DONE ();
}
