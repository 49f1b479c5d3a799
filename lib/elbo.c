/* The VAE frame score: An & Cho's reconstruction probability as the negative
 * ELBO. One encode gives mu and log-variance; `samples` latents
 * z = mu + exp(logvar / 2) eps are decoded as one batch and their error
 * maps averaged. The eps are fixed when the scorer is made, so a frame's
 * score is a function of the frame alone (docs/model-format.md). */
#include "nn.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct ae_elbo {
  const ae_model *m;
  ae_session *s;  /* batch `samples` for the decodes; batch 1 for the encode */
  int samples;
  size_t latent;  /* values per latent sample (C x H x W of the sample layer's output) */
  float *eps;     /* samples x latent, N(0, 1), drawn once */
  float *z;       /* the decoder's CNHW input: latent channels x samples x H x W */
  float *recon;   /* the decodes in NCHW, when channels > 1 needs a transpose */
  float *one;     /* one decode's error map */
  float *scratch; /* ae_error_map (SSIM) */
};

/* The decoder runs on a batch of latents while the encoder ran on one frame;
 * a residual layer after the sample layer would need the frame repeated. */
ae_status
ae_elbo_check_model (const ae_model *m, ae_error *err)
{
  if (!m || !m->vae)
    return ae_fail (err, AE_E_ARG, "the elbo score needs a VAE (a model with a sample layer)");
  for (int i = m->latent_layer + 1; i < m->nlayers; i++)
    if (m->layers[i].kind == LAYER_RESIDUAL)
      return ae_fail (err, AE_E_ARG, "the elbo score cannot decode through the residual layer "
                      "%d after the sample layer", i);
  return AE_OK;
}

void
ae_elbo_free (ae_elbo *e)
{
  if (!e)
    return;
  ae_session_free (e->s);
  free (e->eps);
  free (e->z);
  free (e->recon);
  free (e->one);
  free (e->scratch);
  free (e);
}

static void
draw_eps (ae_elbo *e, uint64_t seed)
{
  ae_rng rng;
  ae_rng_seed (&rng, seed);
  for (size_t i = 0; i < (size_t) e->samples * e->latent; i++)
    e->eps[i] = (float) ae_rng_normal (&rng);
}

ae_elbo *
ae_elbo_new (const ae_model *m, int samples, uint64_t seed, ae_error *err)
{
  if (ae_elbo_check_model (m, err) != AE_OK)
    return NULL;
  if (samples < 1 || samples > AE_ELBO_SAMPLES_MAX) {
    ae_fail (err, AE_E_ARG, "elbo samples must be 1 to %d, got %d", AE_ELBO_SAMPLES_MAX,
             samples);
    return NULL;
  }
  ae_elbo *e = calloc (1, sizeof *e);
  if (!e) {
    ae_fail (err, AE_E_NOMEM, "out of memory");
    return NULL;
  }
  e->m = m;
  e->samples = samples;
  e->s = ae_session_new (m, samples, m->in_h, m->in_w, err);
  if (!e->s) {
    ae_elbo_free (e);
    return NULL;
  }
  size_t hw = (size_t) m->in_h * m->in_w, frame = (size_t) m->in_c * hw;
  e->latent = ae_session_latent_size (e->s);
  e->eps = malloc ((size_t) samples * e->latent * sizeof *e->eps);
  e->z = malloc ((size_t) samples * e->latent * sizeof *e->z);
  e->recon = malloc ((size_t) samples * frame * sizeof *e->recon);
  e->one = malloc (hw * sizeof *e->one);
  e->scratch = malloc (8 * hw * sizeof *e->scratch);
  if (!e->eps || !e->z || !e->recon || !e->one || !e->scratch) {
    ae_fail (err, AE_E_NOMEM, "out of memory for an elbo scorer of %d samples", samples);
    ae_elbo_free (e);
    return NULL;
  }
  draw_eps (e, seed);
  return e;
}

ae_elbo *
ae_elbo_new_for (const ae_model *m, const ae_frame_scoring *fs, ae_error *err)
{
  if (!fs || fs->kind != AE_SCORE_ELBO) {
    ae_fail (err, AE_E_ARG, "the model's frame score is not elbo");
    return NULL;
  }
  return ae_elbo_new (m, fs->elbo_samples, fs->elbo_seed, err);
}

/* mu and log-variance of one frame: the sample layer's input, channels
 * 0..C-1 then C..2C-1 (batch 1, so CNHW is NCHW). */
static const float *
encode_moments (ae_elbo *e, const float *input)
{
  int li = e->m->latent_layer;
  ae_session_reshape (e->s, 1, e->m->in_h, e->m->in_w, NULL); /* within capacity: no allocation */
  return li == 0 ? input : ae_session_run_cnhw (e->s, input, li - 1);
}

/* z in CNHW over the samples: (c, n, p) = mu (c, p) + sigma (c, p) eps (n, c, p). */
static void
fill_latents (ae_elbo *e, const float *mu, const float *logvar)
{
  const int *shape = e->s->shape[e->m->latent_layer + 1];
  size_t plane = (size_t) shape[1] * shape[2], n = (size_t) e->samples;
  for (int c = 0; c < shape[0]; c++)
    for (size_t p = 0; p < plane; p++) {
      size_t at = (size_t) c * plane + p;
      float mean = mu[at], sd = expf (0.5f * logvar[at]);
      for (size_t k = 0; k < n; k++)
        e->z[((size_t) c * n + k) * plane + p] = mean + sd * e->eps[k * e->latent + at];
    }
}

/* The decodes of e->z in NCHW. */
static const float *
decode_latents (ae_elbo *e, const float *input)
{
  const ae_model *m = e->m;
  int li = m->latent_layer;
  ae_session_reshape (e->s, e->samples, m->in_h, m->in_w, NULL);
  e->s->net_in = input; /* no residual layer reads it (ae_elbo_check_model) */
  const float *y = li + 1 < m->nlayers ? ae_session_run_layers (e->s, e->z, li + 1, m->nlayers - 1)
                                       : e->z;
  if (m->in_c == 1 || e->samples == 1)
    return y;
  ae_nchw_from_cnhw (y, e->recon, e->samples, m->in_c, (size_t) m->in_h * m->in_w);
  return e->recon;
}

double
ae_elbo_map (ae_elbo *e, ae_loss kind, int window, const float *input, float *map)
{
  if (!e || !input || !map)
    return -1.0;
  const ae_model *m = e->m;
  size_t hw = (size_t) m->in_h * m->in_w, frame = (size_t) m->in_c * hw;
  const float *stats = encode_moments (e, input);
  const float *mu = stats, *logvar = stats + e->latent;
  double kl = ae_gaussian_kl (mu, logvar, e->latent);
  fill_latents (e, mu, logvar);
  const float *recon = decode_latents (e, input);
  memset (map, 0, hw * sizeof *map);
  for (int k = 0; k < e->samples; k++) {
    if (ae_error_map (kind, input, recon + (size_t) k * frame, m->in_c, m->in_h, m->in_w, window,
                      e->one, e->scratch) != AE_OK)
      return -1.0;
    for (size_t i = 0; i < hw; i++)
      map[i] += e->one[i];
  }
  for (size_t i = 0; i < hw; i++)
    map[i] /= (float) e->samples;
  return kl;
}
