/* Closed-form PCA as a two-layer linear autoencoder. By Eckart-Young its
 * rank-k reconstruction is the best any linear autoencoder with a k-wide
 * bottleneck can reach, which makes it the baseline for the others. */
#include "nn.h"

#include <cblas.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Centred data in double precision (n x d) and the mean (d). */
static void
centre (const ae_dataset *data, size_t d, double *x, double *mean)
{
  size_t n = data->count;
  memset (mean, 0, d * sizeof *mean);
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < d; j++)
      mean[j] += data->x[i * d + j];
  for (size_t j = 0; j < d; j++)
    mean[j] /= (double) n;
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < d; j++)
      x[i * d + j] = data->x[i * d + j] - mean[j];
}

/* Eigen-decomposition of the symmetric m x m matrix a (overwritten by the
 * eigenvectors, columns, ascending eigenvalues in w). */
static ae_status
symmetric_eigen (double *a, size_t m, double *w, ae_error *err)
{
  lapack_int info = LAPACKE_dsyevd (LAPACK_ROW_MAJOR, 'V', 'U', (lapack_int) m, a,
                                    (lapack_int) m, w);
  if (info != 0)
    return ae_fail (err, AE_E_NUMERIC, "eigen-decomposition failed (LAPACK info %d)", (int) info);
  return AE_OK;
}

/* Top-k principal directions as rows of u (k x d), and their variances. With
 * fewer samples than dimensions the n x n Gram matrix is decomposed instead
 * of the d x d covariance (same non-zero spectrum). */
static ae_status
principal_axes (const double *x, size_t n, size_t d, int k, double *u, double *var,
                double *total_var, ae_error *err)
{
  int gram = n < d;
  size_t m = gram ? n : d;
  double *a = malloc (m * m * sizeof *a), *w = malloc (m * sizeof *w);
  ae_status st = AE_OK;
  if (!a || !w) {
    st = ae_fail (err, AE_E_NOMEM, "out of memory for a %zux%zu PCA matrix", m, m);
    goto out;
  }
  if (gram)
    cblas_dgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) n, (int) n, (int) d, 1.0, x,
                 (int) d, x, (int) d, 0.0, a, (int) n);
  else
    cblas_dgemm (CblasRowMajor, CblasTrans, CblasNoTrans, (int) d, (int) d, (int) n, 1.0, x,
                 (int) d, x, (int) d, 0.0, a, (int) d);
  st = symmetric_eigen (a, m, w, err);
  if (st != AE_OK)
    goto out;
  *total_var = 0.0;
  for (size_t i = 0; i < m; i++)
    *total_var += w[i] > 0 ? w[i] / (double) n : 0.0;
  for (int j = 0; j < k; j++) {
    size_t col = m - 1 - (size_t) j;
    var[j] = w[col] > 0 ? w[col] / (double) n : 0.0;
    double *row = u + (size_t) j * d;
    if (!gram) {
      for (size_t i = 0; i < d; i++)
        row[i] = a[i * m + col];
      continue;
    }
    /* u_j = X^T v_j, normalised */
    double norm = 0.0;
    for (size_t i = 0; i < d; i++) {
      double s = 0.0;
      for (size_t r = 0; r < n; r++)
        s += x[r * d + i] * a[r * m + col];
      row[i] = s;
      norm += s * s;
    }
    norm = sqrt (norm);
    for (size_t i = 0; i < d; i++)
      row[i] = norm > 0 ? row[i] / norm : 0.0;
  }
out:
  free (a);
  free (w);
  return st;
}

static void
set_weights (ae_model *m, const double *u, const double *mean, size_t d, int k)
{
  const ae_layer *enc = &m->layers[0], *dec = &m->layers[1];
  float *we = m->params + enc->w_off, *be = m->params + enc->b_off;
  float *wd = m->params + dec->w_off, *bd = m->params + dec->b_off;
  for (int j = 0; j < k; j++) {
    double bias = 0.0;
    for (size_t i = 0; i < d; i++) {
      we[(size_t) j * d + i] = (float) u[(size_t) j * d + i];
      wd[i * (size_t) k + j] = (float) u[(size_t) j * d + i];
      bias -= u[(size_t) j * d + i] * mean[i];
    }
    be[j] = (float) bias;
  }
  for (size_t i = 0; i < d; i++)
    bd[i] = (float) mean[i];
}

ae_model *
ae_pca_fit (const ae_dataset *data, int k, ae_error *err)
{
  if (!data || !data->x || data->count < 2 || data->channels <= 0 || data->height <= 0
      || data->width <= 0) {
    ae_fail (err, AE_E_ARG, "PCA needs at least two samples");
    return NULL;
  }
  size_t n = data->count, d = (size_t) data->channels * data->height * data->width;
  size_t rank = n - 1 < d ? n - 1 : d;
  if (k <= 0 || (size_t) k > rank) {
    ae_fail (err, AE_E_ARG, "PCA with %zu samples of %zu values has at most %zu components, "
             "asked for %d", n, d, rank, k);
    return NULL;
  }
  char spec[128];
  snprintf (spec, sizeof spec, "dense:%d,dense:%zu:linear:%dx%dx%d", k, d, data->channels,
            data->height, data->width);
  ae_model *m = ae_model_build (spec, data->channels, data->height, data->width, err);
  double *x = malloc (n * d * sizeof *x), *mean = malloc (d * sizeof *mean);
  double *u = malloc ((size_t) k * d * sizeof *u), *var = malloc ((size_t) k * sizeof *var);
  double total = 0.0;
  ae_status st = m ? AE_OK : AE_E_ARG;
  if (st == AE_OK && (!x || !mean || !u || !var))
    st = ae_fail (err, AE_E_NOMEM, "out of memory for PCA of %zu x %zu", n, d);
  if (st == AE_OK) {
    centre (data, d, x, mean);
    st = principal_axes (x, n, d, k, u, var, &total, err);
  }
  if (st == AE_OK) {
    set_weights (m, u, mean, d, k);
    ae_model_params_changed (m);
    double kept = 0.0;
    for (int j = 0; j < k; j++)
      kept += var[j];
    ae_model_set_float (m, "pca.explained_variance", total > 0 ? kept / total : 1.0);
  }
  free (x);
  free (mean);
  free (u);
  free (var);
  if (st != AE_OK) {
    ae_model_free (m);
    return NULL;
  }
  return m;
}
