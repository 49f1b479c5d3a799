/* Models end to end: specification errors, shapes, sessions, presets,
 * save -> load -> forward, and a loader that survives any corruption. */
#include "nn.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void
fill_uniform (float *x, size_t n, uint64_t seed)
{
  ae_rng rng;
  ae_rng_seed (&rng, seed);
  for (size_t i = 0; i < n; i++)
    x[i] = (float) ae_rng_uniform (&rng);
}

static double
max_abs_diff (const float *a, const float *b, size_t n)
{
  double d = 0.0;
  for (size_t i = 0; i < n; i++)
    d = fmax (d, fabs (a[i] - b[i]));
  return d;
}

static void
test_spec_errors (void)
{
  static const char *const bad[] = {
    "", "conv", "conv:0:3:1:1", "conv:4:3:1:5", "conv:4:3:1:1:swish", "dense", "dense:-3",
    "dense:12:relu:2x2x2", "pool:2", "bn:relu:extra", "act", "sample:2", "residual:1", "shuffle", "shuffle:9", "dense:8,,dense:4",
    "conv:4:3:1:1,dense:99999999999", "deconv:4:99:1:1",
  };
  ae_error err;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    ae_model *m = ae_model_new (bad[i], 1, 8, 8, 1, &err);
    CHECK (m == NULL && err.message[0], "spec '%s' rejected: %s", bad[i], err.message);
    ae_model_free (m);
  }
  ae_model *m = ae_model_new ("conv:4:3:2:1,deconv:2:4:2:1", 1, 8, 8, 1, &err);
  CHECK (m == NULL && err.status == AE_E_SHAPE, "output shape must equal input: %s", err.message);
  m = ae_model_new ("sample,dense:4", 3, 1, 1, 1, &err);
  CHECK (m == NULL, "sample needs an even channel count: %s", err.message);
  m = ae_model_new ("conv:2:3:1:1,residual", 1, 4, 4, 1, &err);
  CHECK (m == NULL && strstr (err.message, "residual"), "residual needs the input's shape: %s",
         err.message);
}

static void
test_presets (void)
{
  static const char *const names[] = { "dense", "conv", "vae", "fconv" };
  char spec[1024];
  ae_error err;
  for (size_t i = 0; i < 4; i++) {
    int ok = ae_arch_preset (names[i], 1, 32, 32, 16, spec, sizeof spec, &err) == AE_OK;
    ae_model *m = ok ? ae_model_new (spec, 1, 32, 32, 1, &err) : NULL;
    CHECK (m != NULL, "preset %s builds: %s", names[i], m ? spec : err.message);
    if (m && strcmp (names[i], "fconv") != 0)
      CHECK (ae_model_latent_size (m, 32, 32) == 16, "preset %s latent 16 (%zu)", names[i],
             ae_model_latent_size (m, 32, 32));
    ae_model_free (m);
  }
  CHECK (ae_arch_preset ("conv", 3, 30, 30, 8, spec, sizeof spec, &err) == AE_E_SHAPE,
         "conv preset needs a multiple of 4: %s", err.message);
  CHECK (ae_arch_preset ("unet", 3, 32, 32, 8, spec, sizeof spec, &err) == AE_E_ARG,
         "unknown preset: %s", err.message);
  CHECK (ae_arch_preset ("conv", 1, 256, 256, 32, spec, sizeof spec, &err) == AE_OK
         && strstr (spec, "64x8x8"), "conv preset downsamples 256x256 to 8x8");
  char tiny[16];
  CHECK (ae_arch_preset ("conv", 1, 32, 32, 8, tiny, sizeof tiny, &err) == AE_E_ARG,
         "preset into a small buffer: %s", err.message);
}

/* A fully convolutional model runs on any size that its strides divide;
 * a dense one only on its own. */
static void
test_sessions (void)
{
  ae_error err;
  ae_model *fc = ae_model_new ("conv:4:3:2:1,bn:lrelu,deconv:3:4:2:1:sigmoid", 3, 8, 8, 1, &err);
  CHECK (ae_model_is_fully_convolutional (fc) && ae_model_size_multiple (fc) == 2,
         "fully convolutional, multiple of 2");
  ae_session *s = ae_session_new (fc, 1, 30, 46, &err);
  CHECK (s != NULL, "fully convolutional model runs on 46x30");
  CHECK (ae_session_latent_size (s) == 4 * 15 * 23, "latent of 46x30 is 4x15x23");
  CHECK (ae_session_reshape (s, 1, 31, 46, &err) == AE_E_SHAPE, "odd size rejected: %s",
         err.message);
  CHECK (ae_session_reshape (s, 2, 16, 16, &err) == AE_OK, "reshape to 2 x 16x16");
  ae_session_free (s);

  ae_model *dn = ae_model_new ("dense:8,dense:48:sigmoid:3x4x4", 3, 4, 4, 1, &err);
  CHECK (ae_session_new (dn, 1, 8, 8, &err) == NULL && err.status == AE_E_SHAPE,
         "dense model rejects another size: %s", err.message);

  /* Batched forward (with layout transposes) equals frame-by-frame. */
  const int n = 3, c = 3, h = 8, w = 8;
  size_t sample = (size_t) c * h * w;
  float *x = malloc (n * sample * sizeof *x), *one = malloc (n * sample * sizeof *one);
  fill_uniform (x, n * sample, 1);
  ae_model *models[2] = { fc, ae_model_new ("conv:4:3:2:1:lrelu,dense:6,dense:64:lrelu:4x4x4,"
                                            "deconv:3:4:2:1:sigmoid", c, h, w, 2, NULL) };
  for (int k = 0; k < 2; k++) {
    ae_session *b = ae_session_new (models[k], n, h, w, NULL), *s1 = ae_session_new (models[k], 1, h, w, NULL);
    for (int i = 0; i < n; i++)
      memcpy (one + i * sample, ae_session_forward (s1, x + i * sample), sample * sizeof (float));
    double diff = max_abs_diff (ae_session_forward (b, x), one, n * sample);
    CHECK (diff < 1e-5, "model %d: batch of 3 equals 3 single frames (max diff %.2g)", k, diff);
    size_t ls = ae_session_latent_size (s1);
    float *lat1 = malloc (n * ls * sizeof *lat1);
    for (int i = 0; i < n; i++)
      memcpy (lat1 + i * ls, ae_session_encode (s1, x + i * sample), ls * sizeof (float));
    diff = max_abs_diff (ae_session_encode (b, x), lat1, n * ls);
    CHECK (diff < 1e-5, "model %d: batched latents equal single-frame latents", k);
    free (lat1);
    ae_session_free (b);
    ae_session_free (s1);
  }
  ae_model_free (models[1]);
  free (x);
  free (one);
  ae_model_free (fc);
  ae_model_free (dn);
}

/* Noise layers: the level changes the output; a batch of one (conv and
 * noise folded into one direct-kernel pass) equals the layer-by-layer
 * batch of two with two levels; stripes pass the level on. */
static void
test_noise_conditioning (void)
{
  ae_error err;
  const int h = 16, w = 24;
  size_t plane = (size_t) h * w;
  ae_model *m = ae_model_new ("conv:6:3:1:1,noise:lrelu,conv:4:3:2:1,noise,shuffle:2:sigmoid", 1,
                              h, w, 5, &err);
  CHECK (m && ae_model_is_noise_conditioned (m), "noise-conditioned model builds: %s",
         m ? "ok" : err.message);
  if (!m)
    return;
  for (int i = 0; i < m->nlayers; i++)
    if (m->layers[i].kind == LAYER_NOISE)
      fill_uniform (m->params + m->layers[i].w_off, 2 * m->layers[i].w_n, 10 + i);
  float *x = malloc (2 * plane * sizeof *x), *quiet = malloc (plane * sizeof *quiet);
  fill_uniform (x, plane, 3);
  memcpy (x + plane, x, plane * sizeof *x);
  ae_session *one = ae_session_new (m, 1, h, w, NULL), *two = ae_session_new (m, 2, h, w, NULL);
  const float levels[2] = { 0.05f, 0.3f };
  ae_session_set_noise (one, &levels[0]);
  memcpy (quiet, ae_session_forward (one, x), plane * sizeof *quiet);
  ae_session_set_noise (one, &levels[1]);
  const float *loud = ae_session_forward (one, x);
  CHECK (max_abs_diff (quiet, loud, plane) > 1e-3, "the noise level changes the output (%.3g)",
         max_abs_diff (quiet, loud, plane));
  ae_session_set_noise (two, levels);
  const float *y = ae_session_forward (two, x);
  CHECK (max_abs_diff (y, quiet, plane) < 1e-5 && max_abs_diff (y + plane, loud, plane) < 1e-5,
         "batch of one (folded) equals a batch of two (layer by layer): %.2g, %.2g",
         max_abs_diff (y, quiet, plane), max_abs_diff (y + plane, loud, plane));
  ae_stripes *st = ae_stripes_new (m, h, w, 2, &err);
  ae_stripes_set_noise (st, levels[1]);
  const float *striped = st ? ae_stripes_forward (st, x) : quiet;
  CHECK (max_abs_diff (striped, loud, plane) < 1e-5, "stripes use the level (%.2g)",
         max_abs_diff (striped, loud, plane));
  ae_stripes_free (st);
  ae_session_free (one);
  ae_session_free (two);
  free (x);
  free (quiet);
  ae_model_free (m);
}

/* ae_stripes_for_rows: every row exactly once, across the stripes. */
static void
count_rows (void *ctx, int y0, int y1)
{
  int *seen = ctx;
  for (int y = y0; y < y1; y++)
    seen[y]++;
}

/* ae_stripes_forward_rows: each row once, and already the frame's result
 * when its callback comes. */
typedef struct {
  const ae_stripes *st;
  const float *ref;
  int channels, h, w;
  int seen[60];
  double diff;
} rows_check;

static void
check_rows (void *ctx, int y0, int y1)
{
  rows_check *rc = ctx;
  const float *out = ae_stripes_output (rc->st);
  size_t plane = (size_t) rc->h * rc->w, row = (size_t) y0 * rc->w, n = (size_t) (y1 - y0) * rc->w;
  for (int c = 0; c < rc->channels; c++) {
    double d = max_abs_diff (out + c * plane + row, rc->ref + c * plane + row, n);
    rc->diff = d > rc->diff ? d : rc->diff; /* stripes never share rows: no race */
  }
  count_rows (rc->seen, y0, y1);
}

/* Stripes on worker threads give the whole frame's result, for any thread
 * count, with a receptive field wide enough that a short halo would show. */
static void
test_stripes (void)
{
  ae_error err;
  ae_model *m = ae_model_new ("conv:6:5:2:2:lrelu,conv:6:3:1:1,bn:tanh,conv:8:3:2:1:lrelu,"
                              "conv:8:3:1:1:lrelu,shuffle:2,conv:8:3:1:1:lrelu,shuffle:2,"
                              "conv:2:3:1:1,residual",
                              2, 16, 16, 3, &err);
  CHECK (m != NULL, "striped model builds: %s", m ? "ok" : err.message);
  const int h = 60, w = 20;
  size_t n = (size_t) 2 * h * w;
  float *x = malloc (n * sizeof *x);
  fill_uniform (x, n, 5);
  ae_session *whole = ae_session_new (m, 1, h, w, &err);
  /* x2 for forward_rows: a frame other than the one the stripes hold. */
  float *x2 = malloc (n * sizeof *x2), *ref2 = malloc (n * sizeof *ref2);
  fill_uniform (x2, n, 6);
  memcpy (ref2, ae_session_forward (whole, x2), n * sizeof *ref2);
  const float *ref = ae_session_forward (whole, x);
  static const struct { int threads, piece_rows; } cases[] = {
    { 1, 0 }, { 2, 0 }, { 3, 0 }, { 7, 0 }, { 64, 0 }, { 1, 4 }, { 2, 8 }, { 3, 12 }, { 2, 28 },
  };
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    int threads = cases[t].threads;
    ae_stripes *st = ae_stripes_new_pieces (m, h, w, threads, cases[t].piece_rows, &err);
    CHECK (st != NULL, "%d stripes of 20x60: %s", threads, st ? "ok" : err.message);
    if (!st)
      continue;
    double diff = 0;
    for (int pass = 0; pass < 2; pass++)
      diff = fmax (diff, max_abs_diff (ae_stripes_forward (st, x), ref, n));
    CHECK (diff < 1e-5, "%d threads (%d stripes, pieces of %d rows) equal the whole frame (max diff %.2g)",
           threads, ae_stripes_count (st), ae_stripes_piece_rows (st), diff);
    int seen[60] = { 0 }, once = 1;
    ae_stripes_for_rows (st, count_rows, seen);
    for (int y = 0; y < h; y++)
      once &= seen[y] == 1;
    CHECK (once, "%d stripes: for_rows visits every row once", ae_stripes_count (st));
    rows_check rc = { .st = st, .ref = ref2, .channels = 2, .h = h, .w = w };
    const float *y = ae_stripes_forward_rows (st, x2, check_rows, &rc);
    once = y == ae_stripes_output (st);
    for (int row = 0; row < h; row++)
      once &= rc.seen[row] == 1;
    CHECK (once && rc.diff < 1e-5,
           "%d stripes, pieces of %d: forward_rows calls back each row once, already done "
           "(max diff %.2g)", ae_stripes_count (st), ae_stripes_piece_rows (st), rc.diff);
    ae_stripes_free (st);
  }
  ae_stripes *split = ae_stripes_new_pieces (m, h, w, 1, 4, &err);
  CHECK (split && ae_stripes_piece_rows (split) == 4, "pieces of 4 rows asked, %d planned",
         split ? ae_stripes_piece_rows (split) : -1);
  ae_stripes_free (split);
  CHECK (ae_stripes_new (m, h, w, 0, &err) == NULL && err.status == AE_E_ARG,
         "0 threads rejected: %s", err.message);
  CHECK (ae_stripes_new (m, h, w + 2, 2, &err) == NULL && err.status == AE_E_SHAPE,
         "a width the model cannot take is rejected: %s", err.message);
  ae_model *dn = ae_model_new ("dense:8,dense:48:sigmoid:3x4x4", 3, 4, 4, 1, &err);
  ae_stripes *one = ae_stripes_new_pieces (dn, 4, 4, 2, 2, &err);
  CHECK (one && ae_stripes_count (one) == 1 && ae_stripes_piece_rows (one) == 4,
         "a dense model runs as one stripe, in one piece even when asked for 2 rows");
  ae_stripes_free (one);
  ae_model_free (dn);
  ae_session_free (whole);
  free (x);
  free (x2);
  free (ref2);
  ae_model_free (m);
}

/* Row streams (rowstream.c): stripes of models made of row-kernel layers
 * give the whole frame's result for any thread count and step, through
 * partial Winograd tiles, the direct kernel at strides 1 and 2, folded
 * noise layers, activations after the kernel, act layers and shuffles, and
 * follow a change of weights; the others do not stream. */
static void
test_rowstream (void)
{
  static const struct { const char *spec; int c, h, w; } models[] = {
    /* the denoisers' shape; 19 half-size rows, 70 columns: Winograd */
    { "conv:8:4:2:1,noise:lrelu,conv:8:3:1:1:lrelu,conv:4:3:1:1:sigmoid,shuffle:2", 1, 38, 140 },
    /* 40 columns: the direct kernel at stride 1, k 3 and 5 */
    { "conv:6:3:1:1:tanh,act:lrelu,conv:6:5:1:2:lrelu,conv:1:3:1:1", 1, 23, 40 },
    /* 3 channels, a stride-2 k3 convolution, 65 columns after it */
    { "conv:8:3:2:1:lrelu,conv:8:3:1:1:lrelu,conv:12:3:1:1,shuffle:2", 3, 30, 130 },
    /* stride 3 and a shuffle by 3 */
    { "conv:9:3:3:0:lrelu,conv:9:3:1:1,shuffle:3", 1, 27, 66 },
  };
  static const struct { int threads, chunk; } runs[] = {
    { 1, 0 }, { 2, 0 }, { 3, 0 }, { 1, 1 }, { 2, 2 }, { 3, 6 }, { 2, 16 }, { 1, 64 },
  };
  for (size_t t = 0; t < sizeof models / sizeof models[0]; t++) {
    ae_error err;
    int c = models[t].c, h = models[t].h, w = models[t].w;
    ae_model *m = ae_model_new (models[t].spec, c, h, w, 11 + t, &err);
    CHECK (m && ae_rowstream_fits (m, h, w), "%s streams at %dx%d", models[t].spec, w, h);
    if (!m)
      continue;
    size_t n = (size_t) c * h * w;
    float *x = malloc (n * sizeof *x), *ref = malloc (n * sizeof *ref);
    fill_uniform (x, n, 21 + t);
    ae_session *whole = ae_session_new (m, 1, h, w, &err);
    const float level = 0.2f;
    ae_session_set_noise (whole, &level);
    memcpy (ref, ae_session_forward (whole, x), n * sizeof *ref);
    double lo = ref[0], hi = ref[0];
    for (size_t i = 0; i < n; i++) {
      lo = fmin (lo, ref[i]);
      hi = fmax (hi, ref[i]);
    }
    CHECK (hi - lo > 0.1 && hi - lo < 100, "%s: outputs span %.3g to %.3g", models[t].spec, lo, hi);
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
      ae_stripes *st = ae_stripes_new_pieces (m, h, w, runs[r].threads, runs[r].chunk, &err);
      CHECK (st != NULL, "stripes: %s", st ? "ok" : err.message);
      if (!st)
        continue;
      ae_stripes_set_noise (st, level);
      double diff = 0;
      for (int pass = 0; pass < 2; pass++)
        diff = fmax (diff, max_abs_diff (ae_stripes_forward (st, x), ref, n));
      CHECK (diff < 1e-5 * (hi - lo), "%s, %d threads, steps of %d rows: the whole frame's result (%.2g)",
             models[t].spec, runs[r].threads, ae_stripes_piece_rows (st), diff);
      ae_stripes_free (st);
    }
    /* New weights: the stream's Winograd weights are packed again. */
    ae_stripes *st = ae_stripes_new_pieces (m, h, w, 2, 4, &err);
    ae_stripes_set_noise (st, level);
    ae_stripes_forward (st, x);
    for (size_t i = 0; i < m->nparams; i++)
      m->params[i] *= -0.5f;
    ae_model_params_changed (m);
    ae_session *fresh = ae_session_new (m, 1, h, w, &err); /* packs nothing stale */
    ae_session_set_noise (fresh, &level);
    const float *now = ae_session_forward (fresh, x);
    double change = max_abs_diff (now, ref, n), diff = max_abs_diff (ae_stripes_forward (st, x), now, n);
    ae_session_free (fresh);
    CHECK (change > 0.01 && diff < 1e-5 * (hi - lo),
           "%s: new weights (changing the output by %.2g) reach the stream (%.2g)",
           models[t].spec, change, diff);
    ae_stripes_free (st);
    ae_session_free (whole);
    free (x);
    free (ref);
    ae_model_free (m);
  }
  ae_error err;
  static const char *const others[] = { "conv:4:3:1:1,bn:lrelu,conv:1:3:1:1",
                                         "conv:4:3:1:1,conv:1:3:1:1,residual",
                                         "conv:4:1:1:0:lrelu,conv:1:3:1:1",
                                         "conv:4:4:2:1,deconv:1:4:2:1" };
  for (size_t t = 0; t < sizeof others / sizeof others[0]; t++) {
    ae_model *m = ae_model_new (others[t], 1, 16, 32, 1, &err);
    CHECK (m && !ae_rowstream_fits (m, 16, 32), "%s runs in pieces, not as a stream", others[t]);
    ae_model_free (m);
  }
}

/* Forward convolutions (the direct kernel for outputs 8 or more wide)
 * against the textbook sum, over strides, paddings, kernel sizes, a
 * channel count that is not a multiple of the tile, partial tiles and a
 * batch; with leaky ReLU (fused into the kernel) and sigmoid (not fused). */
static void
test_direct_conv (void)
{
  /* Each conv is followed by a layer restoring the input shape, as every
   * model must; only layer 0's output is checked. */
  static const struct { int k, s, p, w; const char *act, *back; } cases[] = {
    { 3, 1, 1, 37, "lrelu", "conv:3:1:1:0" }, { 5, 1, 2, 40, "linear", "conv:3:1:1:0" },
    { 3, 1, 0, 19, "relu", "deconv:3:3:1:0" }, { 3, 2, 1, 42, "lrelu", "deconv:3:4:2:1" },
    { 4, 2, 1, 64, "sigmoid", "deconv:3:4:2:1" }, { 6, 2, 2, 36, "tanh", "deconv:3:4:2:1" },
    { 3, 1, 1, 80, "lrelu=0.1", "conv:3:1:1:0" }, { 3, 1, 1, 64, "lrelu", "conv:3:1:1:0" },
  };
  const int c = 3, oc = 6, h = 12, n = 2;
  for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
    char spec[96];
    snprintf (spec, sizeof spec, "conv:%d:%d:%d:%d:%s,%s", oc, cases[t].k, cases[t].s,
              cases[t].p, cases[t].act, cases[t].back);
    int w = cases[t].w, k = cases[t].k, st = cases[t].s, pad = cases[t].p;
    ae_error err;
    ae_model *m = ae_model_new (spec, c, h, w, 1, &err);
    CHECK (m != NULL, "%s builds: %s", spec, m ? "ok" : err.message);
    if (!m)
      continue;
    fill_uniform (m->params, m->nparams, 40 + t);
    for (size_t i = 0; i < m->nparams; i++) /* centred, so no activation saturates */
      m->params[i] = 0.3f * (m->params[i] - 0.5f);
    ae_session *s = ae_session_new (m, n, h, w, NULL);
    size_t in_n = (size_t) n * c * h * w;
    float *x = malloc (in_n * sizeof *x); /* CNHW */
    fill_uniform (x, in_n, 50 + t);
    const float *y = ae_session_run_cnhw (s, x, 0);
    int oh = (h + 2 * pad - k) / st + 1, ow = (w + 2 * pad - k) / st + 1;
    double worst = 0;
    for (int b = 0; b < n; b++)
      for (int o = 0; o < oc; o++)
        for (int yy = 0; yy < oh; yy++)
          for (int xx = 0; xx < ow; xx++) {
            double sum = m->params[m->layers[0].b_off + o];
            for (int i = 0; i < c; i++)
              for (int ky = 0; ky < k; ky++)
                for (int kx = 0; kx < k; kx++) {
                  int iy = yy * st - pad + ky, ix = xx * st - pad + kx;
                  if (iy >= 0 && iy < h && ix >= 0 && ix < w)
                    sum += (double) m->params[((o * c + i) * k + ky) * k + kx]
                           * x[((size_t) (i * n + b) * h + iy) * w + ix];
                }
            float want = (float) sum;
            act_forward (m->layers[0].act, m->layers[0].alpha, &want, 1);
            double got = y[((size_t) (o * n + b) * oh + yy) * ow + xx];
            worst = fmax (worst, fabs (got - want));
          }
    CHECK (worst < 1e-4, "%s on %d x %dx%dx%d: layer 0 max error %.2g", spec, n, c, w, h, worst);
    ae_session_free (s);
    ae_model_free (m);
    free (x);
  }
}

/* The textbook sum of one convolution (or transposed convolution) of a
 * CHW image, w in the layer's layout, then y = a * v + b * |v|. */
static void
reference_conv (const narrow_geom *g, const float *w, const float *bias, float a, float b,
                const float *x, float *y)
{
  int k = g->k;
  for (int o = 0; o < g->out_c; o++)
    for (int oy = 0; oy < g->out_h; oy++)
      for (int ox = 0; ox < g->out_w; ox++) {
        double sum = bias[o];
        for (int i = 0; i < g->in_c; i++)
          for (int ky = 0; ky < k; ky++)
            for (int kx = 0; kx < k; kx++) {
              int iy, ix;
              size_t wi;
              if (g->transposed) { /* oy = iy * s - p + ky */
                int ty = oy + g->p - ky, tx = ox + g->p - kx;
                if (ty < 0 || tx < 0 || ty % g->s || tx % g->s)
                  continue;
                iy = ty / g->s;
                ix = tx / g->s;
                wi = (((size_t) i * g->out_c + o) * k + ky) * k + kx;
              } else {
                iy = oy * g->s - g->p + ky;
                ix = ox * g->s - g->p + kx;
                wi = (((size_t) o * g->in_c + i) * k + ky) * k + kx;
              }
              if (iy >= 0 && iy < g->in_h && ix >= 0 && ix < g->in_w)
                sum += (double) w[wi] * x[((size_t) i * g->in_h + iy) * g->in_w + ix];
            }
        float v = (float) sum;
        y[((size_t) o * g->out_h + oy) * g->out_w + ox] = a * v + b * fabsf (v);
      }
}

/* narrow.c (batch-1 convolutions with the vector across output channels)
 * against the textbook sum: strides 1 to 3, paddings, kernels 2 to 5,
 * channel counts that fill a vector, two, or part of one, rows that end in
 * a partial tile, transposed phases that read past the input's edges, and a
 * transposed output larger than the natural one (a convolution's input
 * gradient). */
static void
test_narrow_conv (void)
{
  static const narrow_geom cases[] = {
    /* in_c, in_h, in_w, out_c, out_h, out_w, k, s, p, transposed, vec */
    { 3, 12, 12, 16, 12, 12, 3, 1, 1, 0, 0 },  { 1, 28, 28, 16, 14, 14, 3, 2, 1, 0, 0 },
    { 16, 14, 14, 32, 7, 7, 3, 2, 1, 0, 0 },   { 5, 13, 11, 20, 7, 6, 5, 2, 2, 0, 0 },
    { 4, 10, 9, 8, 8, 7, 3, 1, 0, 0, 0 },      { 6, 16, 16, 40, 8, 8, 4, 2, 1, 0, 0 },
    { 2, 15, 15, 12, 5, 5, 3, 3, 0, 0, 0 },    { 32, 7, 7, 16, 14, 14, 4, 2, 1, 1, 0 },
    { 7, 7, 6, 12, 13, 11, 3, 2, 1, 1, 0 },    { 3, 5, 8, 24, 10, 16, 2, 2, 0, 1, 0 },
    { 9, 8, 8, 8, 8, 8, 3, 1, 1, 1, 0 },       { 4, 6, 7, 20, 11, 13, 5, 2, 2, 1, 0 },
    { 2, 4, 5, 16, 12, 15, 3, 3, 0, 1, 0 },    { 16, 6, 6, 48, 12, 12, 4, 2, 1, 1, 0 },
    { 16, 14, 14, 8, 28, 28, 3, 2, 1, 1, 0 }, /* one row past (14-1)*2-2+3 = 27 */
  };
  for (size_t t = 0; t < 2 * sizeof cases / sizeof cases[0]; t++) {
    narrow_geom vg = cases[t / 2];
    vg.vec = t % 2 ? 8 : 0; /* this CPU's widest build, and the AVX2 one */
    const narrow_geom *g = &vg;
    CHECK (ae_narrow_fits (g), "case %zu fits narrow.c", t);
    if (!ae_narrow_fits (g))
      continue;
    size_t nw = (size_t) g->in_c * g->out_c * g->k * g->k;
    size_t nx = (size_t) g->in_c * g->in_h * g->in_w, ny = (size_t) g->out_c * g->out_h * g->out_w;
    float *w = malloc (nw * sizeof *w), *bias = malloc ((size_t) g->out_c * sizeof *bias);
    float *x = malloc (nx * sizeof *x), *y = malloc (ny * sizeof *y), *want = malloc (ny * sizeof *y);
    float *packed = malloc (ae_narrow_packed_floats (g) * sizeof *packed);
    float *scratch = malloc (ae_narrow_scratch (g) * sizeof *scratch);
    fill_uniform (w, nw, 60 + t);
    fill_uniform (bias, (size_t) g->out_c, 70 + t);
    fill_uniform (x, nx, 80 + t);
    for (size_t i = 0; i < nw; i++)
      w[i] -= 0.5f;
    int leaky = t / 2 % 2;
    float a = leaky ? 0.6f : 1.0f, b = leaky ? 0.4f : 0.0f; /* leaky ReLU 0.2 or linear */
    ae_narrow_pack (g, w, packed);
    ae_narrow_conv (g, packed, bias, a, b, x, y, 1, scratch);
    reference_conv (g, w, bias, a, b, x, want);
    CHECK (max_abs_diff (y, want, ny) < 1e-4,
           "%s %d->%d k%d s%d p%d, %dx%d -> %dx%d, %s vectors: max error %.2g",
           g->transposed ? "transposed conv" : "conv", g->in_c, g->out_c, g->k, g->s, g->p,
           g->in_w, g->in_h, g->out_w, g->out_h, g->vec ? "8-float" : "widest",
           max_abs_diff (y, want, ny));
    free (w);
    free (bias);
    free (x);
    free (y);
    free (want);
    free (packed);
    free (scratch);
  }
}

/* Sessions run narrow layers on weights they packed; writing the weights
 * (ae_model_params_changed) makes them repack. A batch of one against a
 * batch of two (the same image twice: the batched layout's strides), and
 * both against a session made after the write, which cannot hold stale
 * packs. */
static void
test_narrow_sessions (void)
{
  ae_error err;
  ae_model *m = ae_model_new ("conv:16:3:2:1:lrelu,conv:32:3:2:1:lrelu,dense:32,dense:1568:lrelu:32x7x7,"
                              "deconv:16:4:2:1:lrelu,deconv:1:4:2:1:sigmoid",
                              1, 28, 28, 7, &err);
  CHECK (m != NULL, "the benchmark network builds: %s", m ? "ok" : err.message);
  if (!m)
    return;
  size_t plane = 28 * 28;
  float *x = malloc (2 * plane * sizeof *x);
  fill_uniform (x, plane, 90);
  memcpy (x + plane, x, plane * sizeof *x);
  ae_session *one = ae_session_new (m, 1, 28, 28, NULL), *two = ae_session_new (m, 2, 28, 28, NULL);
  int narrow = 0;
  for (int i = 0; i < m->nlayers; i++)
    narrow += one->narrow_fwd && one->narrow_fwd[i].w != NULL;
  CHECK (narrow >= 2, "%d layers run on narrow.c at batch 1", narrow);
  for (int round = 0; round < 2; round++) {
    const float *y1 = ae_session_forward (one, x), *y2 = ae_session_forward (two, x);
    CHECK (max_abs_diff (y1, y2, plane) < 1e-5 && max_abs_diff (y1, y2 + plane, plane) < 1e-5,
           "round %d: batch 1 equals batch 2 (%.2g)", round, max_abs_diff (y1, y2, plane));
    ae_session *fresh = ae_session_new (m, 1, 28, 28, NULL);
    const float *yf = ae_session_forward (fresh, x);
    CHECK (max_abs_diff (y1, yf, plane) == 0, "round %d: equals a new session (%.2g)", round,
           max_abs_diff (y1, yf, plane));
    ae_session_free (fresh);
    for (size_t i = 0; i < m->nparams; i++) /* new weights, same scale */
      m->params[i] = -m->params[i];
    ae_model_params_changed (m);
  }
  ae_session_free (one);
  ae_session_free (two);
  free (x);
  ae_model_free (m);
}

/* winograd.c against the textbook sum: a tile row that fills its vectors
 * exactly, that ends in a part (columns and rows not multiples of the 4x4
 * tiles or of the vector of tiles), frames narrower than one full window
 * (every read at an edge), one row, channel counts that are not multiples of
 * the matrix-product blocks, a batch of two, no bias. */
static void
test_wino_conv (void)
{
  static const struct { int in_c, out_c, h, w, n; } cases[] = {
    { 16, 16, 8, 64, 1 }, { 16, 16, 37, 130, 1 }, { 4, 8, 5, 64, 2 }, { 5, 13, 8, 200, 1 },
    { 32, 32, 7, 70, 1 }, { 16, 20, 1, 127, 2 },  { 8, 12, 13, 257, 1 },
  };
  for (size_t t = 0; t < 2 * sizeof cases / sizeof cases[0]; t++) {
    int in_c = cases[t / 2].in_c, out_c = cases[t / 2].out_c, h = cases[t / 2].h, w = cases[t / 2].w;
    int n = cases[t / 2].n;
    wino_geom g = { in_c, out_c, h, w, t % 2 ? 8 : 0 }; /* widest build, and the AVX2 one */
    narrow_geom ref = { in_c, h, w, out_c, h, w, 3, 1, 1, 0, 0 };
    CHECK (ae_wino_fits (&g), "%d->%d at %dx%d fits winograd.c", in_c, out_c, w, h);
    size_t plane = (size_t) h * w, nw = (size_t) in_c * out_c * 9;
    size_t nx = (size_t) n * in_c * plane, ny = (size_t) n * out_c * plane;
    float *wt = malloc (nw * sizeof *wt), *bias = calloc ((size_t) out_c, sizeof *bias);
    float *x = malloc (nx * sizeof *x), *y = malloc (ny * sizeof *y);
    float *xi = malloc ((size_t) in_c * plane * sizeof *xi), *want = malloc ((size_t) out_c * plane * sizeof *want);
    float *packed = malloc (ae_wino_packed_floats (&g) * sizeof *packed);
    float *scratch = malloc (ae_wino_scratch (&g) * sizeof *scratch);
    fill_uniform (wt, nw, 160 + t);
    fill_uniform (x, nx, 180 + t);
    for (size_t i = 0; i < nw; i++)
      wt[i] -= 0.5f;
    int biased = t / 2 != 3;
    if (biased)
      fill_uniform (bias, (size_t) out_c, 170 + t);
    int leaky = t / 2 % 2;
    float a = leaky ? 0.6f : 1.0f, b = leaky ? 0.4f : 0.0f;
    ae_wino_pack (&g, wt, packed);
    ae_wino_conv (&g, packed, biased ? bias : NULL, a, b, x, y, n, scratch);
    double worst = 0;
    for (int image = 0; image < n; image++) { /* (C, N, H, W): one image's planes */
      for (int c = 0; c < in_c; c++)
        memcpy (xi + c * plane, x + ((size_t) c * n + image) * plane, plane * sizeof *xi);
      reference_conv (&ref, wt, bias, a, b, xi, want);
      for (int o = 0; o < out_c; o++)
        worst = fmax (worst, max_abs_diff (y + ((size_t) o * n + image) * plane, want + o * plane, plane));
    }
    CHECK (worst < 1e-4, "winograd %d->%d, %dx%d, batch %d, %s vectors: max error %.2g", in_c, out_c,
           w, h, n, g.vec ? "8-float" : "widest", worst);
    free (wt);
    free (bias);
    free (x);
    free (y);
    free (xi);
    free (want);
    free (packed);
    free (scratch);
  }
}

/* A session runs its 3x3 layers on winograd.c with the bias and leaky ReLU
 * in place (against the layers' textbook sums), and repacks the transformed
 * weights after a write (against a session made after it). */
static void
test_wino_sessions (void)
{
  const int h = 20, w = 96;
  ae_error err;
  ae_model *m = ae_model_new ("conv:16:3:1:1:lrelu,conv:16:3:1:1:lrelu,conv:1:3:1:1:linear", 1, h, w, 3, &err);
  CHECK (m != NULL, "the 3x3 network builds: %s", m ? "ok" : err.message);
  if (!m)
    return;
  size_t plane = (size_t) h * w;
  float *x = malloc (plane * sizeof *x), *a = malloc (16 * plane * sizeof *a), *b = malloc (16 * plane * sizeof *b);
  fill_uniform (x, plane, 95);
  ae_session *s = ae_session_new (m, 1, h, w, NULL);
  CHECK (s->wino && s->wino[1].w && !s->wino[0].w && !s->wino[2].w,
         "only the 16 -> 16 layer runs on winograd.c");
  for (int round = 0; round < 2; round++) {
    const float *y = ae_session_forward (s, x);
    const float *in = x;
    float *out = a;
    for (int i = 0; i < m->nlayers; i++) {
      const ae_layer *l = &m->layers[i];
      narrow_geom g = { s->shape[i][0], h, w, l->out_c, h, w, 3, 1, 1, 0, 0 };
      float slope = l->act == AE_ACT_LINEAR ? 1.0f : l->alpha; /* y = a v + b |v| */
      reference_conv (&g, m->params + l->w_off, m->params + l->b_off, (1 + slope) / 2, (1 - slope) / 2,
                      in, out);
      in = out;
      out = out == a ? b : a;
    }
    CHECK (max_abs_diff (y, in, plane) < 1e-4, "round %d: the textbook sums (%.2g)", round,
           max_abs_diff (y, in, plane));
    ae_session *fresh = ae_session_new (m, 1, h, w, NULL);
    const float *yf = ae_session_forward (fresh, x);
    CHECK (max_abs_diff (y, yf, plane) == 0, "round %d: equals a new session (%.2g)", round,
           max_abs_diff (y, yf, plane));
    ae_session_free (fresh);
    for (size_t i = 0; i < m->nparams; i++)
      m->params[i] = -m->params[i];
    ae_model_params_changed (m);
  }
  ae_session_free (s);
  ae_model_free (m);
  free (x);
  free (a);
  free (b);
}

/* The vectorised sigmoid against the double-precision formula, over the
 * whole float range that matters, saturated ends and a count that leaves a
 * partial vector. */
static void
test_sigmoid (void)
{
  enum { N = 4003 };
  float *y = malloc (N * sizeof *y);
  for (int i = 0; i < N; i++)
    y[i] = -100.0f + 200.0f * i / (N - 1);
  act_forward (AE_ACT_SIGMOID, 0.0f, y, N);
  double worst = 0;
  for (int i = 0; i < N; i++) {
    double x = -100.0f + 200.0f * i / (N - 1); /* the input, as rounded to float */
    double want = 1.0 / (1.0 + exp (-x));
    worst = fmax (worst, fabs (y[i] - want) / (want + 1e-30));
  }
  CHECK (worst < 1e-6 && y[0] >= 0.0f && y[0] < 1e-37f && y[N - 1] == 1.0f,
         "sigmoid within %.2g relative of 1 / (1 + e^-x) on [-100, 100]", worst);
  free (y);
}

/* The noise estimate finds the sigma of Gaussian noise on an image with
 * edges and gradients, and next to nothing on the clean image. */
static void
test_noise_sigma (void)
{
  const int w = 160, h = 120;
  float *clean = malloc ((size_t) w * h * sizeof *clean), *noisy = malloc ((size_t) w * h * sizeof *noisy);
  ae_rng rng;
  ae_rng_seed (&rng, 9);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      clean[y * w + x] = 0.2f + 0.3f * (float) x / w + ((x / 20 + y / 15) % 2 ? 0.3f : 0.0f);
  CHECK (ae_noise_sigma (clean, w, h) < 0.002f, "clean image: sigma %.4f", ae_noise_sigma (clean, w, h));
  static const float sigmas[] = { 0.02f, 0.1f, 0.2f };
  for (size_t k = 0; k < sizeof sigmas / sizeof sigmas[0]; k++) {
    for (int i = 0; i < w * h; i++)
      noisy[i] = clean[i] + sigmas[k] * (float) ae_rng_normal (&rng);
    float est = ae_noise_sigma (noisy, w, h);
    CHECK (fabsf (est - sigmas[k]) < 0.1f * sigmas[k], "sigma %.2f estimated as %.4f", sigmas[k], est);
    /* In parts, as threads measure it: row ranges [y0, y1) cut on and off
     * the sample rows (1, 9, 17, ...), one empty, in any order. */
    static const int ranges[][2] = { { 57, 100 }, { 0, 1 }, { 9, 10 }, { 100, 120 },
                                     { 57, 57 }, { 1, 9 }, { 10, 57 } };
    ae_noise_hist sum, part;
    ae_noise_hist_clear (&sum);
    for (size_t c = 0; c < sizeof ranges / sizeof ranges[0]; c++) {
      ae_noise_hist_clear (&part);
      ae_noise_hist_rows (&part, noisy, w, h, ranges[c][0], ranges[c][1]);
      ae_noise_hist_add (&sum, &part);
    }
    CHECK (ae_noise_hist_sigma (&sum) == est, "in parts: %.6f, whole: %.6f",
           ae_noise_hist_sigma (&sum), est);
  }
  CHECK (ae_noise_sigma (clean, 2, 2) < 0.0f, "a 2x2 plane has no estimate");
  free (clean);
  free (noisy);
}

/* Smoothing against the textbook box mean (shrunk at the borders), and the
 * three aggregations on a map with a known peak. */
static void
test_map_score (void)
{
  enum { W = 13, H = 9, R = 2 };
  float map[W * H], smooth[W * H], scratch[W * (H + 1)];
  ae_rng rng;
  ae_rng_seed (&rng, 4);
  for (int i = 0; i < W * H; i++)
    map[i] = (float) ae_rng_uniform (&rng);
  ae_map_smooth (map, smooth, W, H, R, scratch);
  double worst = 0;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++) {
      double sum = 0;
      int n = 0;
      for (int v = y - R; v <= y + R; v++)
        for (int u = x - R; u <= x + R; u++)
          if (v >= 0 && v < H && u >= 0 && u < W)
            sum += map[v * W + u], n++;
      worst = fmax (worst, fabs (sum / n - smooth[y * W + x]));
    }
  CHECK (worst < 1e-5, "box smoothing equals the direct mean (worst error %.2g)", worst);

  float top;
  CHECK (ae_aggregate_from_name ("mean", &top) && top == 1.0f, "mean parses");
  CHECK (ae_aggregate_from_name ("max", &top) && top == 0.0f, "max parses");
  CHECK (ae_aggregate_from_name ("top:2.5", &top) && fabsf (top - 0.025f) < 1e-7f, "top:2.5");
  CHECK (!ae_aggregate_from_name ("top:0", &top) && !ae_aggregate_from_name ("top:100", &top)
         && !ae_aggregate_from_name ("top:", &top) && !ae_aggregate_from_name ("top:5x", &top)
         && !ae_aggregate_from_name ("median", &top) && !ae_aggregate_from_name (NULL, &top),
         "bad aggregations are refused");

  float flat[W * H];
  for (int i = 0; i < W * H; i++)
    flat[i] = i == 4 * W + 6 ? 10.0f : 1.0f;
  ae_map_smooth (flat, smooth, W, H, 1, scratch);
  float mean = ae_map_score (flat, smooth, W * H, 1.0f, scratch);
  float peak = ae_map_score (flat, smooth, W * H, 0.0f, scratch);
  /* 8.5 / n: ceil gives 9 pixels whatever the float rounding. */
  float top9 = ae_map_score (flat, smooth, W * H, 8.5f / (W * H), scratch);
  CHECK (fabsf (mean - (W * H + 9.0f) / (W * H)) < 1e-5f, "mean of the raw map: %g", mean);
  CHECK (fabsf (peak - 2.0f) < 1e-5f, "max of the smoothed map is the 3x3 mean at the peak: %g",
         peak);
  CHECK (fabsf (top9 - 2.0f) < 1e-5f, "top 9 pixels: the 3x3 around the peak: %g", top9);
  /* Exactly 9 of the n pixels: a float a hair above 9/n must not take a tenth. */
  float exact9 = ae_map_score (flat, smooth, W * H, 9.0f / (W * H), scratch);
  CHECK (fabsf (exact9 - 2.0f) < 1e-5f, "top 9/n pixels are 9 pixels: %g", exact9);

  /* The mixed map: the two maps, each over its scale, added. */
  {
    float x[W * H], y[W * H], mix[W * H], mse[W * H], ssim[W * H], big[8 * W * H];
    for (int i = 0; i < W * H; i++) {
      x[i] = (float) ae_rng_uniform (&rng);
      y[i] = x[i] + 0.1f * (float) (ae_rng_uniform (&rng) - 0.5);
    }
    const float scale[2] = { 0.004f, 0.3f }, zero[2] = { 0.004f, 0.0f };
    ae_status st = ae_error_map_mix (x, y, 1, H, W, 3, scale, mix, big);
    ae_error_map (AE_LOSS_MSE, x, y, 1, H, W, 3, mse, NULL);
    ae_error_map (AE_LOSS_SSIM, x, y, 1, H, W, 3, ssim, big);
    double worst = 0;
    for (int i = 0; i < W * H; i++)
      worst = fmax (worst, fabs (mix[i] - (mse[i] / scale[0] + ssim[i] / scale[1])));
    CHECK (st == AE_OK && worst < 1e-4, "mixed map = mse / s0 + (1 - ssim) / s1 (worst %.2g)",
           worst);
    CHECK (ae_error_map_mix (x, y, 1, H, W, 3, zero, mix, big) == AE_E_ARG,
           "a scale of 0 is refused");
    /* Its scales' fit: each map's mean over the frame. */
    double means[2] = { -1, -1 }, sum[2] = { 0, 0 };
    for (int i = 0; i < W * H; i++) {
      sum[0] += mse[i];
      sum[1] += ssim[i];
    }
    st = ae_error_map_means (x, y, 1, H, W, 3, means, mix, big);
    CHECK (st == AE_OK && fabs (means[0] - sum[0] / (W * H)) < 1e-9
               && fabs (means[1] - sum[1] / (W * H)) < 1e-7,
           "map means: squared error %g, 1 - SSIM %g, as the maps' own", means[0], means[1]);
  }

  /* The border: exactly the pixels within 2 of an edge become 0; 0 clears
   * nothing; a border past the middle clears everything. */
  static const int borders[] = { 0, 2, 5 };
  float ones[W * H];
  for (size_t b = 0; b < sizeof borders / sizeof borders[0]; b++) {
    int border = borders[b], wrong = 0;
    for (int i = 0; i < W * H; i++)
      ones[i] = 1.0f;
    ae_map_clear_border (ones, W, H, border);
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        int edge = x < border || y < border || x >= W - border || y >= H - border;
        wrong += ones[y * W + x] != (edge ? 0.0f : 1.0f);
      }
    CHECK (wrong == 0, "border %d clears exactly the edge pixels (%d wrong)", border, wrong);
  }
}

/* The standard deviation over the box of radius r around (y, x), shrunk
 * at the edges, computed the plain way (two passes, doubles). */
static double
naive_contrast (const float *x, int h, int w, int y, int xc, int r)
{
  double sum = 0, sq = 0;
  int n = 0;
  for (int v = y - r; v <= y + r; v++)
    for (int u = xc - r; u <= xc + r; u++)
      if (v >= 0 && v < h && u >= 0 && u < w) {
        sum += x[v * w + u];
        n++;
      }
  double mean = sum / n;
  for (int v = y - r; v <= y + r; v++)
    for (int u = xc - r; u <= xc + r; u++)
      if (v >= 0 && v < h && u >= 0 && u < w)
        sq += (x[v * w + u] - mean) * (x[v * w + u] - mean);
  return sqrt (sq / n);
}

/* Lost contrast: the local contrast is the box's standard deviation (also
 * for a faint texture on a bright level, where a sum of squares loses
 * precision); the term adds weight * log2(floor / sigma) below the floor,
 * capped for flat pixels, nothing above; the floor is the quantile of the
 * frames' interior contrast to within a bin. */
static void
test_lost_contrast (void)
{
  enum { H = 40, W = 56, N = H * W, R = 3 };
  static float x[2 * N], sigma[N], map[N], scratch[5 * N + W];
  fill_uniform (x, 2 * N, 21);
  for (int i = 0; i < N; i++) /* a faint texture at 0.9 in channel 2 */
    x[N + i] = 0.9f + 0.004f * x[N + i];
  for (int y = 10; y < 20; y++) /* and a flat square in channel 1 */
    for (int i = 10; i < 30; i++)
      x[y * W + i] = 0.25f;
  ae_status st = ae_local_contrast (x, 1, H, W, R, sigma, scratch);
  double worst = 0, flat = 0;
  for (int y = 0; y < H; y++)
    for (int i = 0; i < W; i++) {
      double want = naive_contrast (x, H, W, y, i, R), got = sigma[y * W + i];
      if (want > 0.01)
        worst = fmax (worst, fabs (got - want));
      else
        flat = fmax (flat, got);
    }
  /* The variance is a difference of floats: flat is 0 to about 1e-4. */
  CHECK (st == AE_OK && worst < 1e-5 && flat < 5e-4,
         "local contrast equals the box's deviation (max diff %.2g; flat: at most %.2g)", worst,
         flat);
  ae_local_contrast (x + N, 1, H, W, R, sigma, scratch);
  double rel = 0;
  for (int y = 0; y < H; y++)
    for (int i = 0; i < W; i++) {
      double want = naive_contrast (x + N, H, W, y, i, R);
      rel = fmax (rel, fabs (sigma[y * W + i] - want) / want);
    }
  CHECK (rel < 0.01, "a faint texture's contrast keeps its precision (max relative diff %.2g)",
         rel);

  const float floor_sigma = 0.2f, weight = 3.0f;
  ae_local_contrast (x, 1, H, W, R, sigma, scratch);
  for (int i = 0; i < N; i++)
    map[i] = 1.0f;
  st = ae_map_add_lost_contrast (x, 1, H, W, R, floor_sigma, weight, map, scratch);
  int wrong = 0;
  for (int i = 0; i < N; i++) {
    double s = fmax (sigma[i], ldexp (floor_sigma, -AE_CONTRAST_MAX_HALVINGS));
    double want = 1.0 + (sigma[i] < floor_sigma ? weight * log2 (floor_sigma / s) : 0.0);
    wrong += fabs (map[i] - want) > 1e-4 * want;
  }
  CHECK (st == AE_OK && wrong == 0, "the term adds weight * log2(floor / sigma) below the floor "
         "(%d pixels wrong)", wrong);
  CHECK (fabs (map[15 * W + 20] - (1.0 + weight * AE_CONTRAST_MAX_HALVINGS)) < 1e-4,
         "a flat pixel gets the capped %d halvings (%g)", AE_CONTRAST_MAX_HALVINGS,
         map[15 * W + 20]);
  CHECK (ae_map_add_lost_contrast (x, 1, H, W, R, 0.0f, weight, map, scratch) == AE_E_ARG
             && ae_map_add_lost_contrast (x, 1, H, W, R, floor_sigma, -1.0f, map, scratch)
                    == AE_E_ARG,
         "a floor of 0 and a negative weight are refused");

  /* Two frames' interior pixels sorted: the floor is their 0.1 % quantile. */
  fill_uniform (x, 2 * N, 22);
  static float pool[2 * N];
  size_t count = 0;
  for (int f = 0; f < 2; f++) {
    ae_local_contrast (x + f * N, 1, H, W, R, sigma, scratch);
    for (int y = R; y < H - R; y++)
      for (int i = R; i < W - R; i++)
        pool[count++] = sigma[y * W + i];
  }
  float sorted[2 * N];
  double want = ae_percentile (pool, count, 100 * AE_CONTRAST_FLOOR_FRACTION, sorted);
  const size_t both[] = { 1, 0 };
  double got = ae_contrast_floor (x, both, 2, 1, H, W);
  double bin = exp2 (1.0 / 32) * 1.0001;
  CHECK (got >= want / bin && got <= want * bin,
         "the floor %g is the frames' %g %% quantile %g within one bin", got,
         100 * AE_CONTRAST_FLOOR_FRACTION, want);
  CHECK (ae_contrast_floor (x, NULL, 0, 1, H, W) == 0.0f, "no frames: no floor");
}

/* A 2-channel big frame runs chunked im2col; it must equal unchunked. */
static void
test_chunking (void)
{
  ae_model *m = ae_model_new ("conv:8:3:1:1:lrelu,conv:8:3:2:1:lrelu,deconv:2:4:2:1:sigmoid", 2,
                              8, 8, 3, NULL);
  const int h = 96, w = 80;
  size_t n = 2 * (size_t) h * w;
  float *x = malloc (n * sizeof *x), *ref = malloc (n * sizeof *ref);
  fill_uniform (x, n, 4);
  ae_session *s = ae_session_new (m, 1, h, w, NULL);
  memcpy (ref, ae_session_forward (s, x), n * sizeof (float));
  s->col_budget = 1000;
  double diff = max_abs_diff (ae_session_forward (s, x), ref, n);
  CHECK (diff < 1e-5, "chunked im2col equals one chunk (max diff %.2g)", diff);
  ae_session_free (s);
  ae_model_free (m);
  free (x);
  free (ref);
}

static ae_model *
trained_model (void)
{
  ae_model *m = ae_model_new ("conv:4:3:2:1,bn:lrelu,conv:8:3:2:1:lrelu,dense:6,sample,"
                              "dense:32:lrelu:8x2x2,deconv:4:4:2:1,bn:lrelu,deconv:1:4:2:1:sigmoid",
                              1, 8, 8, 1, NULL);
  float *x = malloc (64 * 64 * sizeof *x);
  fill_uniform (x, 64 * 64, 8);
  ae_dataset d = { x, NULL, 64, 1, 8, 8 };
  ae_train_opts o;
  ae_train_opts_init (&o);
  o.epochs = 2;
  ae_train (m, &d, &o, NULL, NULL);
  free (x);
  ae_model_set_str (m, "task", "anomaly");
  ae_model_set_int (m, "train.epochs", 2);
  ae_model_set_float (m, "anomaly.threshold", 0.0123);
  return m;
}

static void
test_save_load (const char *dir)
{
  char path[512];
  snprintf (path, sizeof path, "%s/model.aem", dir);
  ae_error err;
  ae_model *m = trained_model ();
  CHECK (ae_model_set_str (m, "arch.spec", "dense:1") == AE_E_ARG, "arch.* keys are libae's");
  CHECK (ae_model_save (m, path, &err) == AE_OK, "save (%s)", path);
  ae_model *l = ae_model_load (path, &err);
  CHECK (l != NULL, "load back (%s)", l ? "ok" : err.message);
  if (!l) {
    ae_model_free (m);
    return;
  }
  float x[64];
  fill_uniform (x, 64, 12);
  ae_session *a = ae_session_new (m, 1, 8, 8, NULL), *b = ae_session_new (l, 1, 8, 8, NULL);
  CHECK (memcmp (ae_session_forward (a, x), ae_session_forward (b, x), sizeof x) == 0,
         "save -> load -> forward is bit-identical");
  CHECK (memcmp (ae_session_encode (a, x), ae_session_encode (b, x), 6 * sizeof (float)) == 0,
         "latents bit-identical");
  int64_t ep = 0;
  double th = 0;
  CHECK (strcmp (ae_model_get_str (l, "task"), "anomaly") == 0 && ae_model_get_int (l, "train.epochs", &ep)
         && ep == 2 && ae_model_get_float (l, "anomaly.threshold", &th) && th == 0.0123,
         "metadata survives");
  CHECK (strcmp (ae_model_spec (l), ae_model_spec (m)) == 0 && ae_model_is_vae (l), "spec survives");
  size_t len = 0;
  unsigned char *buf = read_all (path, &len);
  ae_model *mm = ae_model_load_memory (buf, len, &err);
  CHECK (mm && memcmp (mm->params, m->params, m->nparams * sizeof (float)) == 0
         && memcmp (mm->stats, m->stats, m->nstats * sizeof (float)) == 0, "load from memory");
  ae_model_free (mm);

  /* Every truncation fails cleanly. */
  int all_rejected = 1;
  for (size_t n = 0; n < len; n++) {
    ae_model *t = ae_model_load_memory (buf, n, &err);
    if (t) {
      all_rejected = 0;
      ae_model_free (t);
    }
  }
  CHECK (all_rejected, "all %zu truncations rejected (last: %s)", len, err.message);

  /* Random corruptions. Without a matching CRC every change must be
   * rejected. With the CRC recomputed, the structural checks are what
   * stands: any change to the 64-byte header must be rejected, and whatever
   * loads (a changed weight is still a valid file) must run. */
  ae_rng rng;
  ae_rng_seed (&rng, 77);
  unsigned char *bad = malloc (len);
  int stale_loaded = 0, header_loaded = 0, loaded = 0, rejected = 0;
  for (int i = 0; i < 4000; i++) {
    memcpy (bad, buf, len);
    int fix_crc = i % 2, header_only = i % 4 == 1;
    int flips = 1 + (int) ae_rng_below (&rng, 4);
    for (int f = 0; f < flips; f++)
      bad[ae_rng_below (&rng, header_only ? 64 : len - 4)] = (unsigned char) ae_rng_next (&rng);
    if (memcmp (bad, buf, len) == 0)
      continue;
    if (fix_crc) {
      uint32_t crc = aem_crc32 (0, bad, len - 4);
      for (int k = 0; k < 4; k++)
        bad[len - 4 + k] = (unsigned char) (crc >> (8 * k));
    }
    ae_model *t = ae_model_load_memory (bad, len, &err);
    if (!t) {
      rejected++;
      continue;
    }
    loaded++;
    stale_loaded += !fix_crc;
    header_loaded += header_only;
    ae_session *s = ae_session_new (t, 1, 8, 8, NULL);
    if (s)
      ae_session_forward (s, x);
    ae_session_free (s);
    ae_model_free (t);
  }
  CHECK (stale_loaded == 0, "corruptions with a stale CRC: all rejected");
  CHECK (header_loaded == 0, "header corruptions with a valid CRC: all rejected");
  CHECK (rejected > 2000, "4000 corruptions: %d rejected, %d loaded (changed weights), none "
         "crashed", rejected, loaded);
  free (bad);
  free (buf);

  CHECK (ae_model_load ("/nonexistent/x.aem", &err) == NULL && err.status == AE_E_IO,
         "missing file: %s", err.message);
  snprintf (path, sizeof path, "%s/no-such-dir/model.aem", dir);
  CHECK (ae_model_save (m, path, &err) == AE_E_IO, "unwritable path: %s", err.message);
  ae_session_free (a);
  ae_session_free (b);
  ae_model_free (l);
  ae_model_free (m);
}

int
main (void)
{
  char dir[] = "/tmp/ae-test-model-XXXXXX";
  if (!mkdtemp (dir))
    return 2;
  test_spec_errors ();
  test_presets ();
  test_sessions ();
  test_chunking ();
  test_stripes ();
  test_rowstream ();
  test_noise_conditioning ();
  test_direct_conv ();
  test_narrow_conv ();
  test_narrow_sessions ();
  test_wino_conv ();
  test_sigmoid ();
  test_wino_sessions ();
  test_noise_sigma ();
  test_map_score ();
  test_lost_contrast ();
  test_save_load (dir);
  char path[600];
  snprintf (path, sizeof path, "%s/model.aem", dir);
  unlink (path);
  rmdir (dir);
  return CHECK_DONE ();
}
