/* libae side of the training/inference benchmark (run-train-bench.sh):
 * the reference conv AE on 28x28 gray frames. Prints one
 * "key value" line per figure. `--sgemm-peak THREADS` prints only the
 * cblas_sgemm 1024^3 rate, the anchor for achieved GFLOP/s elsewhere. */
#include "nn.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SPEC "conv:16:3:2:1:lrelu=0.2,conv:32:3:2:1:lrelu=0.2,dense:32,dense:1568:lrelu:32x7x7," \
             "deconv:16:4:2:1:lrelu,deconv:1:4:2:1:sigmoid"

static double
now (void)
{
  struct timespec t;
  clock_gettime (CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

static float *
read_frames (const char *path, size_t n)
{
  FILE *f = fopen (path, "rb");
  unsigned char *raw = malloc (n * 784);
  float *x = malloc (n * 784 * sizeof *x);
  if (!f || fread (raw, 784, n, f) != n) {
    fprintf (stderr, "bench_train: cannot read %zu frames from %s\n", n, path);
    exit (1);
  }
  fclose (f);
  for (size_t i = 0; i < n * 784; i++)
    x[i] = raw[i] / 255.0f;
  free (raw);
  return x;
}

static double
sgemm_gflops (int n)
{
  float *a = calloc ((size_t) n * n, 4), *b = calloc ((size_t) n * n, 4), *c = calloc ((size_t) n * n, 4);
  cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
  int reps = 10;
  double t0 = now ();
  for (int i = 0; i < reps; i++)
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
  double t = now () - t0;
  free (a);
  free (b);
  free (c);
  return 2.0 * n * n * (double) n * reps / t / 1e9;
}

static double
layer_flops (const ae_layer *l, const int *in, const int *out, int n)
{
  double k2 = (double) l->k * l->k;
  switch (l->kind) {
  case LAYER_CONV:
    return 2.0 * n * out[0] * out[1] * out[2] * in[0] * k2;
  case LAYER_DECONV:
    return 2.0 * n * in[0] * in[1] * in[2] * out[0] * k2;
  case LAYER_DENSE:
    return 2.0 * n * (double) in[0] * in[1] * in[2] * l->out_c;
  default:
    return 0;
  }
}

/* Forward time of every layer at this batch size: GFLOP/s for the weighted
 * layers (the training batch), microseconds per sample for all (batch 1,
 * where the copies and activations around the GEMMs show). */
static void
per_layer (const ae_model *m, const float *x, int batch)
{
  ae_session *s = ae_session_new_mode (m, batch, 28, 28, 1, NULL);
  s->stats = m->stats;
  memcpy (s->act[0], x, (size_t) batch * 784 * sizeof (float));
  ae_session_run_cnhw (s, s->act[0], -1);
  for (int i = 0; i < m->nlayers; i++) {
    layer_ctx c = { m, &m->layers[i], batch, s->shape[i], s->shape[i + 1], s, i };
    double f = layer_flops (c.l, c.in, c.out, batch);
    int reps = batch == 1 ? 20000 : 200;
    double t0 = now ();
    for (int r = 0; r < reps; r++)
      layer_forward (&c, s->act[i], s->act[i + 1]);
    double t = (now () - t0) / reps;
    if (batch == 1)
      printf ("layer%d_%s_b1_us %.2f\n", i, ae_layer_kind_name (c.l->kind), t * 1e6);
    else if (f > 0)
      printf ("layer%d_%s_gflops %.1f\n", i, ae_layer_kind_name (c.l->kind), f / t / 1e9);
  }
  ae_session_free (s);
}

static double
train_rate (ae_model *m, const ae_dataset *d, const ae_train_opts *o, int epochs)
{
  double t0 = now ();
  if (ae_train (m, d, o, NULL, NULL) != AE_OK)
    return 0;
  return (double) d->count * epochs / (now () - t0);
}

static double
infer_b1 (const ae_model *m, const float *x, size_t n)
{
  ae_session *s = ae_session_new (m, 1, 28, 28, NULL);
  size_t reps = 20000;
  for (size_t i = 0; i < 200; i++)
    ae_session_forward (s, x + (i % n) * 784);
  double t0 = now ();
  for (size_t i = 0; i < reps; i++)
    ae_session_forward (s, x + (i % n) * 784);
  double rate = reps / (now () - t0);
  ae_session_free (s);
  return rate;
}

int
main (int argc, char **argv)
{
  /* The peak alone, as an anchor for other benchmarks (run-denoise-bench.sh). */
  if (argc == 3 && strcmp (argv[1], "--sgemm-peak") == 0) {
    ae_set_blas_threads (atoi (argv[2]));
    printf ("sgemm_1024_gflops %.1f\n", sgemm_gflops (1024));
    return 0;
  }
  if (argc < 4) {
    fprintf (stderr, "usage: bench_train FRAMES.u8 COUNT THREADS [EPOCHS]\n"
                     "       bench_train --sgemm-peak THREADS\n");
    return 2;
  }
  size_t n = (size_t) atol (argv[2]);
  int threads = atoi (argv[3]), epochs = argc > 4 ? atoi (argv[4]) : 3;
  ae_set_blas_threads (threads);
  float *x = read_frames (argv[1], n);
  ae_error err;
  ae_model *m = ae_model_new (SPEC, 1, 28, 28, 1, &err);
  ae_dataset d = { x, NULL, n, 1, 28, 28 };
  ae_train_opts o;
  ae_train_opts_init (&o);
  o.epochs = epochs;
  o.batch = 64;
  o.lr = 1e-3f;
  o.val_split = 0.0f;
  ae_train_result r;
  /* Two ways to use the threads: OpenBLAS splitting every GEMM, or
   * libae's workers each training a shard of the batch. */
  o.threads = 1;
  double rate_blas = train_rate (m, &d, &o, epochs);
  ae_model_free (m);
  m = ae_model_new (SPEC, 1, 28, 28, 1, &err);
  ae_set_blas_threads (1);
  o.threads = threads;
  double t0 = now ();
  if (ae_train (m, &d, &o, &r, &err) != AE_OK) {
    fprintf (stderr, "bench_train: %s\n", err.message);
    return 1;
  }
  double t = now () - t0;
  ae_set_blas_threads (threads);
  printf ("train_samples_per_s %.0f\n", (double) n * epochs / t);
  printf ("train_blas_threads_samples_per_s %.0f\n", rate_blas);
  printf ("final_train_loss %.5f\n", r.final_train_loss);

  printf ("infer_b1_samples_per_s %.0f\n", infer_b1 (m, x, n));
  /* Batch-1 GEMMs are too small to gain from a second BLAS thread; show
   * what one thread does (both within the 2-core budget). */
  ae_set_blas_threads (1);
  printf ("infer_b1_1thread_samples_per_s %.0f\n", infer_b1 (m, x, n));
  ae_set_blas_threads (threads);

  per_layer (m, x, 64);
  ae_set_blas_threads (1);
  per_layer (m, x, 1);
  ae_set_blas_threads (threads);
  printf ("sgemm_1024_gflops %.1f\n", sgemm_gflops (1024));
  ae_model_free (m);
  free (x);
  return 0;
}
