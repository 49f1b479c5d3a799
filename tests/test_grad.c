/* Finite-difference gradient checks for every layer kind and loss: the
 * analytic gradient of each parameter must match central differences. */
#include "nn.h"
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct grad_case {
  const char *name, *spec;
  int c, h, w, batch;
  ae_loss loss;
  int col_budget; /* > 0: force im2col chunking */
} grad_case;

/* Loss of one forward pass in training mode; VAE noise is replayed from the
 * same seed each time so the function is deterministic. */
static double
eval_loss (ae_session *s, const float *x, const float *t, ae_loss loss, float *gout,
           float *scratch, float kls)
{
  const ae_model *m = s->model;
  ae_rng_seed (&s->rng, 99);
  memcpy (s->act[0], x, s->numel[0] * sizeof (float));
  const float *y = ae_session_run_cnhw (s, s->act[0], -1);
  int h = s->shape[0][1], w = s->shape[0][2];
  double l = ae_loss_eval (loss, y, t, (size_t) s->batch * m->in_c, h, w, 3, gout, scratch);
  return l + kls * ae_session_kl (s);
}

static void
run_case (const grad_case *gc)
{
  ae_error err;
  ae_model *m = ae_model_new (gc->spec, gc->c, gc->h, gc->w, 7, &err);
  CHECK (m != NULL, "%s: build (%s)", gc->name, m ? "ok" : err.message);
  if (!m)
    return;
  /* Non-trivial BN and noise parameters so their gradients are exercised too. */
  ae_rng rng;
  ae_rng_seed (&rng, 3);
  for (int i = 0; i < m->nlayers; i++)
    if (m->layers[i].kind == LAYER_BN || m->layers[i].kind == LAYER_NOISE)
      for (size_t j = 0; j < m->layers[i].w_n; j++) {
        m->params[m->layers[i].w_off + j] = 0.5f + (float) ae_rng_uniform (&rng);
        m->params[m->layers[i].b_off + j] = (float) ae_rng_uniform (&rng) - 0.5f;
      }
  ae_session *s = ae_session_new_mode (m, gc->batch, gc->h, gc->w, 1, &err);
  s->stats = m->stats;
  if (strcmp (gc->name, "narrow kernels") == 0) {
    int narrow = 0;
    for (int i = 0; i < m->nlayers; i++)
      narrow += (s->narrow_fwd[i].w != NULL) + (s->narrow_back[i].w != NULL);
    CHECK (narrow == 2 * m->nlayers, "narrow kernels: %d of %d passes on narrow.c", narrow,
           2 * m->nlayers);
  }
  if (gc->col_budget)
    s->col_budget = (size_t) gc->col_budget;
  float sigma[8]; /* a different noise level per sample, for noise layers */
  for (int i = 0; i < gc->batch && i < 8; i++)
    sigma[i] = 0.1f + 0.15f * (float) i;
  ae_session_set_noise (s, sigma);
  size_t n = s->numel[0];
  float *x = malloc (n * sizeof *x), *t = malloc (n * sizeof *t), *gout = malloc (n * sizeof *gout);
  float *scratch = malloc (ae_loss_scratch_floats (gc->loss, gc->h, gc->w) * sizeof (float));
  float *grads = calloc (m->nparams, sizeof *grads);
  /* L1 is not differentiable where output = target: keep targets away
   * from the outputs so central differences never straddle the kink. */
  float offset = gc->loss == AE_LOSS_L1 ? 3.0f : 0.0f;
  for (size_t i = 0; i < n; i++) {
    x[i] = (float) ae_rng_uniform (&rng);
    t[i] = offset + (float) ae_rng_uniform (&rng);
  }
  float kls = m->vae ? 0.5f / (float) n : 0.0f;
  eval_loss (s, x, t, gc->loss, gout, scratch, kls);
  ae_session_backward (s, gout, grads, kls);

  int bad = 0, checked = 0;
  double worst = 0.0;
  for (size_t p = 0; p < m->nparams; p += 1 + m->nparams / 60) {
    float keep = m->params[p];
    /* SSIM keeps float window statistics, so it needs a larger step to rise
     * above rounding; the others use a small one to stay off ReLU kinks. */
    double hstep = (gc->loss == AE_LOSS_SSIM ? 1e-2 : 1e-3) * fmax (1.0, fabs (keep));
    /* Sessions repack convolution weights only when told they changed. */
    m->params[p] = keep + (float) hstep;
    ae_model_params_changed (m);
    double lp = eval_loss (s, x, t, gc->loss, NULL, scratch, kls);
    m->params[p] = keep - (float) hstep;
    ae_model_params_changed (m);
    double lm = eval_loss (s, x, t, gc->loss, NULL, scratch, kls);
    m->params[p] = keep;
    ae_model_params_changed (m);
    double num = (lp - lm) / (2 * hstep), ana = grads[p];
    double rel = fabs (num - ana) / fmax (fabs (num) + fabs (ana), 1e-3);
    if (rel > worst)
      worst = rel;
    if (rel > 0.05) {
      bad++;
      printf ("# %s param %zu: analytic %.6g numeric %.6g\n", gc->name, p, ana, num);
    }
    checked++;
  }
  CHECK (bad == 0 && checked > 0, "%s: %d parameters, worst relative error %.2e", gc->name,
         checked, worst);
  free (x);
  free (t);
  free (gout);
  free (scratch);
  free (grads);
  ae_session_free (s);
  ae_model_free (m);
}

int
main (void)
{
  static const grad_case cases[] = {
    { "dense tanh/sigmoid, mse", "dense:5:tanh,dense:12:sigmoid:3x2x2", 3, 2, 2, 3, AE_LOSS_MSE, 0 },
    { "dense linear, l1", "dense:4,dense:9:linear:1x3x3", 1, 3, 3, 2, AE_LOSS_L1, 0 },
    { "conv + deconv, mse", "conv:4:3:2:1:tanh,conv:3:3:1:1:tanh,deconv:3:4:2:1:sigmoid", 3, 6,
      6, 2, AE_LOSS_MSE, 0 },
    { "conv chunked im2col", "conv:4:3:2:1:tanh,conv:3:3:1:1:tanh,deconv:3:4:2:1:sigmoid", 3, 6,
      6, 3, AE_LOSS_MSE, 40 },
    { "pointwise conv, lrelu", "conv:5:1:1:0:lrelu,conv:2:1:1:0:sigmoid", 2, 4, 3, 2,
      AE_LOSS_MSE, 0 },
    { "batch norm", "conv:4:3:1:1,bn:tanh,conv:2:3:1:1,bn:lrelu=0.3,deconv:2:3:1:1:sigmoid", 2, 5,
      5, 3, AE_LOSS_MSE, 0 },
    { "batch norm after dense", "dense:6,bn:tanh,dense:8:sigmoid:2x2x2", 2, 2, 2, 4,
      AE_LOSS_MSE, 0 },
    { "act layer", "dense:6,act:tanh,dense:8,act:sigmoid", 8, 1, 1, 2, AE_LOSS_MSE, 0 },
    { "bce", "conv:3:3:1:1:tanh,conv:1:3:1:1:sigmoid", 1, 5, 4, 2, AE_LOSS_BCE, 0 },
    { "ssim", "conv:3:3:1:1:tanh,conv:1:3:1:1:sigmoid", 1, 6, 7, 2, AE_LOSS_SSIM, 0 },
    { "ssim, 2 channels", "conv:3:3:1:1:tanh,conv:2:3:1:1:sigmoid", 2, 5, 6, 2, AE_LOSS_SSIM, 0 },
    { "vae: sample + kl", "dense:6:tanh,dense:4,sample,dense:8:sigmoid:2x2x2", 2, 2, 2, 3,
      AE_LOSS_MSE, 0 },
    { "residual", "conv:4:3:2:1:tanh,deconv:2:4:2:1,residual", 2, 4, 6, 2, AE_LOSS_MSE, 0 },
    { "shuffle", "conv:8:3:2:1:tanh,shuffle:2,conv:2:3:1:1,residual", 2, 4, 6, 2, AE_LOSS_MSE, 0 },
    { "residual, l1", "conv:3:3:1:1:lrelu,conv:1:3:1:1,residual", 1, 5, 5, 2, AE_LOSS_L1, 0 },
    { "noise conditioning", "conv:4:3:2:1,noise:tanh,conv:4:3:1:1,noise,shuffle:2:sigmoid", 1, 4,
      6, 3, AE_LOSS_MSE, 0 },
    /* 8 channels everywhere: every forward and input gradient on narrow.c,
     * the stride-2 convolution's from 3x3 back to 6x6 (beyond (3-1)*2-2+3). */
    { "narrow kernels", "conv:8:3:2:1:tanh,conv:8:3:1:1:tanh,deconv:8:4:2:1:tanh,conv:8:3:1:1:sigmoid",
      8, 6, 6, 2, AE_LOSS_MSE, 0 },
    { "conv vae", "conv:4:3:2:1:tanh,conv:4:3:1:1,sample,deconv:1:4:2:1:sigmoid", 1, 4, 4, 2,
      AE_LOSS_MSE, 0 },
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    run_case (&cases[i]);
  return CHECK_DONE ();
}
