/* ae-train — train an autoencoder on frames decoded by GStreamer.
 *
 *   ae-train --task anomaly --output model.aem --input frames/ --size 64x64
 *
 * Exit status: 0 success, 1 runtime error, 2 usage error, 130 interrupted.
 */
#include "frames.h"

#include <ae.h>

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <glib.h>
#include <glib/gstdio.h>
#include <gst/gst.h>

#ifndef AE_TOOLS_VERSION
#define AE_TOOLS_VERSION AE_VERSION_STRING
#endif

#define EXIT_USAGE 2
#define EXIT_INTERRUPTED 130
#define MAX_SIDE 65536
#define SPEC_MAX 4096
/* SSIM box window, for training and for calibration scores alike. */
#define SSIM_WINDOW 7
#define MAX_SMOOTH 64
#define MAX_BORDER 256
#define MAX_LOST_CONTRAST 100 /* --lost-contrast: per halving, in map means */
/* Covariance shrinkage of the latent Gaussian (--score mahalanobis|combined). */
#define DEFAULT_SHRINKAGE 0.01

/* ---- Options ------------------------------------------------------------------ */

typedef enum { TASK_DENOISE, TASK_ANOMALY, TASK_ENCODE } task_kind;
static const char *const task_names[] = { "denoise", "anomaly", "encode" };

/* The anomaly map: squared error, 1 - SSIM, the two mixed, or whichever of
 * those three separates labelled defect frames best. */
typedef enum { MAP_MSE, MAP_SSIM, MAP_MIX, MAP_AUTO } map_kind;
static const char *const map_names[] = { "mse", "ssim", "mix", "auto" };
#define MAP_CANDIDATES 3 /* the kinds MAP_AUTO chooses from: those before it */

typedef struct {
  /* As given on the command line (NULL when absent). */
  gchar *task_s, *output, *input, *pipeline, *arch, *size_s, *loss_s, *noise_s, *crop_s;
  gchar *lr_schedule_s, *aggregate, *defect_input, *defect_pipeline, *score_s, *map_s;
  gchar *latent_vector_s;
  gint channels, latent, epochs, batch, threads, repeat, smooth, border, elbo_samples;
  gint translate_inputs;
  gint64 seed, max_frames;
  gdouble lr, val_split, calibrate, synthetic_defects, shrinkage, lost_contrast;
  gboolean quiet, flip, rotate_inputs, pixel_norm, map_mix;
  gchar **rest;
  gchar **meta; /* --meta KEY=VALUE, kept as given */

  /* Derived by validate_options (). */
  task_kind task;
  ae_loss loss;
  map_kind map;
  ae_lr_schedule lr_schedule;
  int width, height; /* 0 = the source's size */
  int crop_w, crop_h; /* 0 = train on whole frames */
  double noise_min, noise_max; /* pixel units, 0..255 */
  float top_fraction; /* --aggregate, as ae_aggregate_from_name gives it */
  ae_score_kind score; /* --score */
  ae_latent_vector latent_vector; /* --latent-vector */
} options;

static void
options_init (options *o)
{
  memset (o, 0, sizeof *o);
  o->channels = 1;
  o->latent = 32;
  o->epochs = 20;
  o->batch = 64;
  o->repeat = 1;
  o->seed = 1;
  o->lr = 1e-3;
  o->val_split = 0.1;
  o->calibrate = 99.5;
  o->smooth = 2;
  o->shrinkage = DEFAULT_SHRINKAGE;
  o->elbo_samples = -1; /* unset: AE_ELBO_SAMPLES_DEFAULT */
}

static void
options_clear (options *o)
{
  g_free (o->task_s);
  g_free (o->output);
  g_free (o->input);
  g_free (o->pipeline);
  g_free (o->arch);
  g_free (o->size_s);
  g_free (o->crop_s);
  g_free (o->aggregate);
  g_free (o->score_s);
  g_free (o->defect_input);
  g_free (o->defect_pipeline);
  g_strfreev (o->meta);
  g_free (o->loss_s);
  g_free (o->lr_schedule_s);
  g_free (o->noise_s);
  g_strfreev (o->rest);
}

static void G_GNUC_PRINTF (1, 2)
complain (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  gchar *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  fprintf (stderr, "ae-train: %s\n", msg);
  g_free (msg);
}

static gboolean
parse_task (options *o)
{
  if (!o->task_s) {
    complain ("--task is required (denoise, anomaly or encode)");
    return FALSE;
  }
  for (guint i = 0; i < G_N_ELEMENTS (task_names); i++)
    if (strcmp (o->task_s, task_names[i]) == 0) {
      o->task = (task_kind) i;
      return TRUE;
    }
  complain ("unknown --task '%s' (denoise, anomaly or encode)", o->task_s);
  return FALSE;
}

/* Strict integer parsing: the whole string, in range. */
static gboolean
parse_int (const char *s, int min, int max, int *out)
{
  gint64 v;
  if (!g_ascii_string_to_signed (s, 10, min, max, &v, NULL))
    return FALSE;
  *out = (int) v;
  return TRUE;
}

/* "WxH" into *w, *h; NULL leaves them 0. */
static gboolean
parse_wxh (const char *option, const char *value, int *w, int *h)
{
  if (!value)
    return TRUE;
  gchar **parts = g_strsplit (value, "x", -1);
  gboolean ok = g_strv_length (parts) == 2 && parse_int (parts[0], 1, MAX_SIDE, w) &&
                parse_int (parts[1], 1, MAX_SIDE, h);
  g_strfreev (parts);
  if (!ok)
    complain ("bad %s '%s': expected WxH with sides from 1 to %d, e.g. 64x64", option, value,
              MAX_SIDE);
  return ok;
}

static gboolean
parse_size (options *o)
{
  if (!parse_wxh ("--size", o->size_s, &o->width, &o->height)
      || !parse_wxh ("--crop", o->crop_s, &o->crop_w, &o->crop_h))
    return FALSE;
  if (o->crop_w && o->width && (o->crop_w > o->width || o->crop_h > o->height)) {
    complain ("--crop %s is larger than --size %s", o->crop_s, o->size_s);
    return FALSE;
  }
  if (o->rotate_inputs && (o->crop_w ? o->crop_w != o->crop_h : o->width != o->height)) {
    complain ("--rotate-inputs needs square samples: %s %s is not (crop to a square)",
              o->crop_w ? "--crop" : "--size", o->crop_w ? o->crop_s : o->size_s);
    return FALSE;
  }
  int side = o->crop_w ? MIN (o->crop_w, o->crop_h) : MIN (o->width, o->height);
  if (side && o->translate_inputs > (side - 1) / 2) { /* 2 N >= side, without overflow */
    complain ("--translate-inputs %d needs samples over twice that on each side: %s %s is not",
              o->translate_inputs, o->crop_w ? "--crop" : "--size",
              o->crop_w ? o->crop_s : o->size_s);
    return FALSE;
  }
  return TRUE;
}

static gboolean
parse_double (const char *s, double *out)
{
  char *end;
  errno = 0;
  *out = g_ascii_strtod (s, &end);
  return *s && !*end && errno == 0 && isfinite (*out);
}

/* "SMIN:SMAX" (or one value for both) in 0..255 pixel units. Denoising
 * without noise teaches the identity, so denoise defaults to 0:50. */
static gboolean
parse_noise (options *o)
{
  if (!o->noise_s) {
    o->noise_min = 0;
    o->noise_max = o->task == TASK_DENOISE ? 50 : 0;
    return TRUE;
  }
  gchar **parts = g_strsplit (o->noise_s, ":", -1);
  guint n = g_strv_length (parts);
  gboolean ok = (n == 1 || n == 2) && parse_double (parts[0], &o->noise_min) &&
                parse_double (parts[n - 1], &o->noise_max) && o->noise_min >= 0 &&
                o->noise_min <= o->noise_max && o->noise_max <= 255;
  g_strfreev (parts);
  if (!ok)
    complain ("bad --noise '%s': expected SMIN:SMAX with 0 <= SMIN <= SMAX <= 255 "
              "(Gaussian sigma in pixel units)", o->noise_s);
  return ok;
}

static gboolean
parse_lr_schedule (options *o)
{
  if (!o->lr_schedule_s || g_strcmp0 (o->lr_schedule_s, "constant") == 0) {
    o->lr_schedule = AE_LR_CONSTANT;
    return TRUE;
  }
  if (g_strcmp0 (o->lr_schedule_s, "cosine") == 0) {
    o->lr_schedule = AE_LR_COSINE;
    return TRUE;
  }
  complain ("unknown --lr-schedule '%s' (constant or cosine)", o->lr_schedule_s);
  return FALSE;
}

static gboolean
parse_loss (options *o)
{
  if (!o->loss_s) {
    o->loss = AE_LOSS_MSE;
    return TRUE;
  }
  if (ae_loss_from_name (o->loss_s, &o->loss))
    return TRUE;
  complain ("unknown --loss '%s' (mse, l1, bce or ssim)", o->loss_s);
  return FALSE;
}

/* --map, by default the training loss's map (1 - SSIM for --loss ssim, the
 * squared error otherwise); --map-mix is --map mix. */
static gboolean
parse_map (options *o)
{
  map_kind loss_map = o->loss == AE_LOSS_SSIM ? MAP_SSIM : MAP_MSE;
  o->map = o->map_mix ? MAP_MIX : loss_map;
  if (!o->map_s)
    return TRUE;
  for (int k = 0; k <= MAP_AUTO; k++)
    if (g_strcmp0 (o->map_s, map_names[k]) == 0 && (!o->map_mix || k == MAP_MIX)) {
      o->map = (map_kind) k;
      return TRUE;
    }
  if (o->map_mix)
    complain ("--map-mix is --map mix: it contradicts --map %s", o->map_s);
  else
    complain ("unknown --map '%s' (mse, ssim, mix or auto)", o->map_s);
  return FALSE;
}

static gboolean
check_source (const options *o)
{
  if (!o->output || !*o->output)
    complain ("--output MODEL.aem is required");
  else if (!o->input == !o->pipeline)
    complain ("give exactly one of --input PATH|GLOB|URI and --pipeline DESCRIPTION");
  else if ((o->input && !*o->input) || (o->pipeline && !*o->pipeline))
    complain ("empty --input or --pipeline");
  else if (o->rest && o->rest[0])
    complain ("unexpected argument '%s'", o->rest[0]);
  else
    return TRUE;
  return FALSE;
}

/* Range checks of the numeric options; one message for the first bad one. */
static gboolean
check_numbers (const options *o)
{
  if (o->channels != 1 && o->channels != 3)
    complain ("--channels must be 1 (gray) or 3 (RGB), got %d", o->channels);
  else if (o->latent < 1)
    complain ("--latent must be at least 1, got %d", o->latent);
  else if (o->epochs < 1)
    complain ("--epochs must be at least 1, got %d", o->epochs);
  else if (o->batch < 1)
    complain ("--batch must be at least 1, got %d", o->batch);
  else if (o->translate_inputs < 0)
    complain ("--translate-inputs must not be negative, got %d", o->translate_inputs);
  else if (o->repeat < 1 || o->repeat > 100000)
    complain ("--repeat must be from 1 to 100000, got %d", o->repeat);
  else if (!(o->lr > 0) || !isfinite (o->lr))
    complain ("--lr must be a positive number, got %g", o->lr);
  else if (!(o->val_split >= 0 && o->val_split < 1))
    complain ("--val-split must be in [0, 1), got %g", o->val_split);
  else if (!(o->synthetic_defects >= 0 && o->synthetic_defects <= 1))
    complain ("--synthetic-defects must be a probability in [0, 1], got %g",
              o->synthetic_defects);
  else if (o->seed < 0)
    complain ("--seed must not be negative, got %" G_GINT64_FORMAT, o->seed);
  else if (o->threads < 0 || o->threads > 256)
    complain ("--threads must be from 1 to 256, got %d", o->threads);
  else if (o->max_frames < 0)
    complain ("--max-frames must not be negative (0 = all), got %" G_GINT64_FORMAT,
              o->max_frames);
  else if (!(o->calibrate >= 0 && o->calibrate <= 100))
    complain ("--calibrate must be a percentile in [0, 100], got %g", o->calibrate);
  else if (o->smooth < 0 || o->smooth > MAX_SMOOTH)
    complain ("--smooth must be from 0 to %d, got %d", MAX_SMOOTH, o->smooth);
  else if (o->border < 0 || o->border > MAX_BORDER)
    complain ("--border must be from 0 to %d, got %d", MAX_BORDER, o->border);
  else
    return TRUE;
  return FALSE;
}

/* --meta KEY=VALUE: a dotted key libae accepts, not one of its own. */
static gboolean
check_meta (const options *o)
{
  for (gchar **kv = o->meta; kv && *kv; kv++) {
    const char *eq = strchr (*kv, '=');
    gboolean ok = eq && eq > *kv && !g_str_has_prefix (*kv, "arch.");
    for (const char *c = *kv; ok && c < eq; c++)
      ok = *c > ' ' && *c <= '~';
    if (!ok) {
      complain ("bad --meta '%s': expected KEY=VALUE with a printable key not starting 'arch.'",
                *kv);
      return FALSE;
    }
  }
  return TRUE;
}

/* --aggregate and the labelled defect footage only mean something for
 * anomaly models. */
static gboolean
check_anomaly_options (options *o)
{
  o->top_fraction = 1.0f;
  o->score = AE_SCORE_RECON;
  if (o->aggregate && !ae_aggregate_from_name (o->aggregate, &o->top_fraction))
    complain ("bad --aggregate '%s': expected mean, max or top:P with 0 < P < 100", o->aggregate);
  else if (o->score_s && !ae_score_kind_from_name (o->score_s, &o->score))
    complain ("bad --score '%s': expected recon, mahalanobis, combined or elbo", o->score_s);
  else if (o->latent_vector_s && !ae_latent_vector_from_name (o->latent_vector_s,
                                                              &o->latent_vector))
    complain ("bad --latent-vector '%s': expected code or shift", o->latent_vector_s);
  else if (o->latent_vector_s && !ae_score_kind_uses_gaussian (o->score))
    complain ("--latent-vector needs --score mahalanobis or combined");
  else if (o->latent_vector == AE_LATENT_SHIFT && g_strcmp0 (o->arch, "pca") == 0)
    complain ("--latent-vector shift needs a trained network: PCA (--arch pca) rebuilds every "
              "frame onto its own code, so the shift is 0");
  else if (o->elbo_samples != -1 && o->score != AE_SCORE_ELBO)
    complain ("--elbo-samples needs --score elbo");
  else if (o->elbo_samples != -1 && (o->elbo_samples < 1 || o->elbo_samples > AE_ELBO_SAMPLES_MAX))
    complain ("--elbo-samples must be 1 to %d, got %d", AE_ELBO_SAMPLES_MAX, o->elbo_samples);
  else if (!(o->shrinkage >= 0 && o->shrinkage <= 1))
    complain ("--latent-shrinkage must be in [0, 1], got %g", o->shrinkage);
  else if (o->task != TASK_ANOMALY && (o->score_s || o->pixel_norm))
    complain ("%s needs --task anomaly", o->score_s ? "--score" : "--pixel-norm");
  else if (o->defect_input && o->defect_pipeline)
    complain ("give at most one of --defect-input and --defect-pipeline");
  else if ((o->defect_input && !*o->defect_input) || (o->defect_pipeline && !*o->defect_pipeline))
    complain ("empty --defect-input or --defect-pipeline");
  else if (o->task != TASK_ANOMALY && (o->aggregate || o->defect_input || o->defect_pipeline))
    complain ("--aggregate, --defect-input and --defect-pipeline need --task anomaly");
  else if (o->task == TASK_DENOISE && (o->rotate_inputs || o->translate_inputs))
    complain ("%s teaches the network to put frames back in the normal pose; a denoiser must "
              "keep each frame's own", o->rotate_inputs ? "--rotate-inputs" : "--translate-inputs");
  else if ((o->rotate_inputs || o->translate_inputs) && g_strcmp0 (o->arch, "pca") == 0)
    complain ("%s needs a trained network; --arch pca is fitted in closed form",
              o->rotate_inputs ? "--rotate-inputs" : "--translate-inputs");
  else if (o->task != TASK_ANOMALY && o->border)
    complain ("--border needs --task anomaly");
  else if (o->task != TASK_ANOMALY && o->lost_contrast)
    complain ("--lost-contrast needs --task anomaly");
  else if (!(o->lost_contrast >= 0 && o->lost_contrast <= MAX_LOST_CONTRAST))
    complain ("--lost-contrast must be 0 to %d, got %g", MAX_LOST_CONTRAST, o->lost_contrast);
  else if ((o->map_s || o->map_mix) && o->task != TASK_ANOMALY)
    complain ("--map needs --task anomaly");
  else if (o->map != (o->loss == AE_LOSS_SSIM ? MAP_SSIM : MAP_MSE)
           && (o->score != AE_SCORE_RECON || o->pixel_norm))
    complain ("--map %s needs the recon score (no other --score, no --pixel-norm)",
              map_names[o->map]);
  else if (o->map == MAP_AUTO && !o->defect_input && !o->defect_pipeline)
    complain ("--map auto chooses on labelled defect frames: give --defect-input or "
              "--defect-pipeline");
  else
    return TRUE;
  return FALSE;
}

static gboolean
validate_options (options *o)
{
  if (!parse_task (o) || !check_source (o) || !check_numbers (o) || !parse_size (o) ||
      !parse_loss (o) || !parse_map (o) || !parse_lr_schedule (o) || !parse_noise (o) ||
      !check_meta (o) || !check_anomaly_options (o))
    return FALSE;
  if (o->arch && !*o->arch) {
    complain ("empty --arch");
    return FALSE;
  }
  if (!o->arch)
    o->arch = g_strdup (o->task == TASK_DENOISE ? "fconv" : "conv");
  return TRUE;
}

static gboolean
parse_options (options *o, int argc, char **argv)
{
  const GOptionEntry entries[] = {
    { "task", 't', 0, G_OPTION_ARG_STRING, &o->task_s,
      "What the model is for: denoise, anomaly or encode", "TASK" },
    { "output", 'o', 0, G_OPTION_ARG_FILENAME, &o->output, "Model file to write", "MODEL.aem" },
    { "input", 'i', 0, G_OPTION_ARG_FILENAME, &o->input,
      "Image/video file, directory, glob or URI", "PATH|GLOB|URI" },
    { "pipeline", 'p', 0, G_OPTION_ARG_STRING, &o->pipeline,
      "gst-launch description producing raw video", "DESC" },
    { "arch", 'a', 0, G_OPTION_ARG_STRING, &o->arch,
      "dense, conv, vae, pca, fconv or a layer spec (default: conv; fconv for denoise)",
      "ARCH" },
    { "size", 's', 0, G_OPTION_ARG_STRING, &o->size_s,
      "Scale frames to this size (default: the source's)", "WxH" },
    { "channels", 'c', 0, G_OPTION_ARG_INT, &o->channels, "1 (gray) or 3 (RGB), default 1",
      "N" },
    { "latent", 'l', 0, G_OPTION_ARG_INT, &o->latent, "Latent size, default 32", "N" },
    { "epochs", 'e', 0, G_OPTION_ARG_INT, &o->epochs, "Training epochs, default 20", "N" },
    { "batch", 'b', 0, G_OPTION_ARG_INT, &o->batch, "Batch size, default 64", "N" },
    { "lr", 0, 0, G_OPTION_ARG_DOUBLE, &o->lr, "Learning rate, default 1e-3", "X" },
    { "lr-schedule", 0, 0, G_OPTION_ARG_STRING, &o->lr_schedule_s,
      "constant, or cosine (from --lr down to nearly 0 over the epochs), default constant",
      "SCHEDULE" },
    { "loss", 0, 0, G_OPTION_ARG_STRING, &o->loss_s, "mse, l1, bce or ssim, default mse",
      "LOSS" },
    { "crop", 0, 0, G_OPTION_ARG_STRING, &o->crop_s,
      "Train on random WxH crops of the frames (fully convolutional models)", "WxH" },
    { "flip", 0, 0, G_OPTION_ARG_NONE, &o->flip, "Random horizontal flips while training",
      NULL },
    { "rotate-inputs", 0, 0, G_OPTION_ARG_NONE, &o->rotate_inputs,
      "Turn each training input by a random multiple of 90 degrees, the target kept upright: "
      "the model learns the normal frames' orientation, which sharpens anomaly scores "
      "(square frames or --crop)", NULL },
    { "translate-inputs", 0, 0, G_OPTION_ARG_INT, &o->translate_inputs,
      "Move each training input by a random offset of up to N pixels each way (the edge "
      "repeats), the target kept in place: the model learns where the normal frames' content "
      "sits, which sharpens anomaly scores for parts in a fixed position, default 0", "N" },
    { "repeat", 0, 0, G_OPTION_ARG_INT, &o->repeat,
      "Passes over the frames per epoch (new crops, flips and noise each pass), default 1", "N" },
    { "noise", 0, 0, G_OPTION_ARG_STRING, &o->noise_s,
      "Input noise sigma range in pixel units (default 0:0; 0:50 for denoise)", "SMIN:SMAX" },
    { "synthetic-defects", 0, 0, G_OPTION_ARG_DOUBLE, &o->synthetic_defects,
      "Anomaly training: the fraction of training samples given one synthetic defect "
      "(bump, flat patch or line) on the input, the target kept clean, so the model learns "
      "to repair rather than copy (default 0)", "P" },
    { "val-split", 0, 0, G_OPTION_ARG_DOUBLE, &o->val_split,
      "Fraction held out for validation, default 0.1", "F" },
    { "seed", 0, 0, G_OPTION_ARG_INT64, &o->seed, "Random seed, default 1", "N" },
    { "threads", 0, 0, G_OPTION_ARG_INT, &o->threads,
      "Training threads, each on a shard of every batch (default: all cores)",
      "N" },
    { "max-frames", 0, 0, G_OPTION_ARG_INT64, &o->max_frames,
      "Stop reading after N frames (default: all)", "N" },
    { "calibrate", 0, 0, G_OPTION_ARG_DOUBLE, &o->calibrate,
      "Anomaly threshold percentile of validation scores, default 99.5", "P" },
    { "aggregate", 0, 0, G_OPTION_ARG_STRING, &o->aggregate,
      "Anomaly frame score: mean (of the map), max or top:P (mean of the largest P % of the "
      "smoothed map), default mean", "HOW" },
    { "smooth", 0, 0, G_OPTION_ARG_INT, &o->smooth,
      "Radius of the box smoothing the anomaly map, default 2 (5x5)", "R" },
    { "border", 0, 0, G_OPTION_ARG_INT, &o->border,
      "Leave the map's outer B pixels out of the frame score and regions (fully convolutional "
      "models err more at the frame's edges on normal frames too), default 0", "B" },
    { "lost-contrast", 0, 0, G_OPTION_ARG_DOUBLE, &o->lost_contrast,
      "Add W times the map's mean on good frames to the map per halving of the input's local "
      "contrast below the good frames' floor (texture worn flat, which no reconstruction "
      "error sees), default 0 (off)", "W" },
    { "score", 0, 0, G_OPTION_ARG_STRING, &o->score_s,
      "Anomaly frame score: recon (the aggregated error map), mahalanobis (distance of the "
      "latent to a Gaussian fitted on the training frames' latents) or combined (sum of both, "
      "each standardised on the validation frames); for a VAE (--arch vae) elbo (the negative "
      "ELBO: the error map averaged over posterior samples plus the KL term), default recon",
      "KIND" },
    { "map", 0, 0, G_OPTION_ARG_STRING, &o->map_s,
      "Anomaly map: mse (squared error), ssim (1 - SSIM), mix (the two, each divided by its "
      "mean on the held-out normal frames: the first sees soft stains, the second texture worn "
      "flat) or auto (of those three, the one with the best frame AUROC between the held-out "
      "frames and the labelled defect frames), default the loss's (ssim for --loss ssim, else "
      "mse)", "KIND" },
    { "map-mix", 0, 0, G_OPTION_ARG_NONE, &o->map_mix, "Same as --map mix", NULL },
    { "pixel-norm", 0, 0, G_OPTION_ARG_NONE, &o->pixel_norm,
      "Divide the anomaly map by each pixel's mean on the held-out normal frames (a per-pixel "
      "standardised error; frames at the model's size only)", NULL },
    { "elbo-samples", 0, 0, G_OPTION_ARG_INT, &o->elbo_samples,
      "--score elbo: posterior samples decoded per frame, default 8", "L" },
    { "latent-vector", 0, 0, G_OPTION_ARG_STRING, &o->latent_vector_s,
      "--score mahalanobis|combined: the vector the Gaussian describes, code (the frame's "
      "latent) or shift (how far the latent moves when the frame is replaced by its "
      "reconstruction: small for frames the network rebuilds), default code", "KIND" },
    { "latent-shrinkage", 0, 0, G_OPTION_ARG_DOUBLE, &o->shrinkage,
      "Shrinkage of the latent covariance towards a multiple of the identity, in [0, 1], "
      "default 0.01", "A" },
    { "defect-input", 0, 0, G_OPTION_ARG_FILENAME, &o->defect_input,
      "Footage in which every frame shows a defect: the threshold becomes the one with the "
      "best F1 between it and the validation frames", "PATH|GLOB|URI" },
    { "defect-pipeline", 0, 0, G_OPTION_ARG_STRING, &o->defect_pipeline,
      "As --defect-input, from a gst-launch description", "DESC" },
    { "quiet", 'q', 0, G_OPTION_ARG_NONE, &o->quiet, "Print nothing but errors", NULL },
    { "meta", 0, 0, G_OPTION_ARG_STRING_ARRAY, &o->meta,
      "Extra string metadata stored in the model (repeatable), e.g. provenance", "KEY=VALUE" },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_STRING_ARRAY, &o->rest, NULL, NULL },
    { NULL, 0, 0, 0, NULL, NULL, NULL },
  };
  GOptionContext *ctx = g_option_context_new ("- train an autoencoder on video frames");
  GError *error = NULL;

  g_option_context_add_main_entries (ctx, entries, NULL);
  g_option_context_add_group (ctx, gst_init_get_option_group ());
  g_option_context_set_description (ctx,
      "Examples:\n"
      "  ae-train --task anomaly --output parts.aem --input good/ --size 64x64\n"
      "  ae-train --task denoise --output dn.aem --input clip.mp4 --max-frames 2000\n"
      "  ae-train --task anomaly --output fm.aem --pipeline \\\n"
      "    \"filesrc location=fm.raw ! rawvideoparse format=gray8 width=28 height=28\"\n");
  gboolean ok = g_option_context_parse (ctx, &argc, &argv, &error);
  if (!ok) {
    complain ("%s", error->message);
    g_error_free (error);
  }
  g_option_context_free (ctx);
  return ok && validate_options (o);
}

/* ---- Checks before the long work ------------------------------------------------ */

/* Creating (and removing) a file next to the output catches a missing,
 * read-only or full directory before minutes of decoding and training;
 * access(2) would not (root, read-only mounts, ACLs). */
static gboolean
check_output_writable (const char *output)
{
  if (g_file_test (output, G_FILE_TEST_IS_DIR)) {
    complain ("--output '%s' is a directory", output);
    return FALSE;
  }
  gchar *probe = g_strdup_printf ("%s.tmp.XXXXXX", output);
  int fd = g_mkstemp (probe);
  int saved = errno;
  if (fd >= 0) {
    close (fd);
    g_unlink (probe);
  } else {
    gchar *dir = g_path_get_dirname (output);
    complain ("cannot write to '%s': %s", dir, g_strerror (saved));
    g_free (dir);
  }
  g_free (probe);
  return fd >= 0;
}

/* UTC ISO-8601, or SOURCE_DATE_EPOCH for reproducible files. Returns NULL
 * after complaining when the variable is malformed. */
static gchar *
training_date (void)
{
  const char *sde = g_getenv ("SOURCE_DATE_EPOCH");
  GDateTime *dt;
  if (sde) {
    guint64 t;
    if (!g_ascii_string_to_unsigned (sde, 10, 0, G_MAXINT64, &t, NULL)) {
      complain ("SOURCE_DATE_EPOCH '%s' is not a number of seconds", sde);
      return NULL;
    }
    dt = g_date_time_new_from_unix_utc ((gint64) t);
  } else {
    dt = g_date_time_new_now_utc ();
  }
  gchar *s = dt ? g_date_time_format (dt, "%Y-%m-%dT%H:%M:%SZ") : NULL;
  if (dt)
    g_date_time_unref (dt);
  if (!s)
    complain ("SOURCE_DATE_EPOCH '%s' is out of range", sde ? sde : "");
  return s;
}

/* ---- Interrupts ------------------------------------------------------------------ */

/* First Ctrl-C: finish the epoch and save. Second: abandon at once. */
static volatile sig_atomic_t stop_requested;
static volatile int cancel_now;

static void
on_sigint (int sig)
{
  static const char msg[] = "\nae-train: stopping after this epoch (Ctrl-C again to abort)\n";
  (void) sig;
  if (stop_requested) {
    cancel_now = 1;
    return;
  }
  stop_requested = 1;
  /* write(2) is async-signal-safe; stdio is not. */
  if (write (STDERR_FILENO, msg, sizeof msg - 1) < 0)
    return;
}

/* Only around training: while decoding, Ctrl-C should simply end the
 * process (nothing has been written yet). */
static void
set_sigint (void (*handler) (int))
{
  struct sigaction sa;
  memset (&sa, 0, sizeof sa);
  sa.sa_handler = handler;
  sigemptyset (&sa.sa_mask);
  sigaction (SIGINT, &sa, NULL);
}

/* ---- Model ----------------------------------------------------------------------- */

static gboolean
is_preset (const char *arch)
{
  return strcmp (arch, "dense") == 0 || strcmp (arch, "conv") == 0 ||
         strcmp (arch, "vae") == 0 || strcmp (arch, "fconv") == 0;
}

/* Exit status for a libae failure: bad specs and sizes are the user's to
 * fix on the command line. */
static int
exit_for (ae_status st)
{
  return st == AE_E_ARG || st == AE_E_SHAPE ? EXIT_USAGE : EXIT_FAILURE;
}

/* A preset or a layer spec, built for c x h x w. Returns 0 or an exit code. */
static int
build_model (const options *o, int c, int h, int w, ae_model **out)
{
  ae_error err = { 0 };
  char spec[SPEC_MAX];
  const char *s = o->arch;

  ae_status st = AE_OK;
  if (is_preset (o->arch)) {
    st = ae_arch_preset (o->arch, c, h, w, o->latent, spec, sizeof spec, &err);
    s = spec;
  }
  if (st == AE_OK && !(*out = ae_model_new (s, c, h, w, (uint64_t) o->seed, &err)))
    st = err.status != AE_OK ? err.status : AE_E_ARG;
  if (st == AE_OK)
    return 0;
  /* The size came from the source; say how to pick another one. */
  complain ("--arch %s at %dx%d: %s%s", o->arch, w, h, err.message,
            st == AE_E_SHAPE && !o->size_s ? " (scale the frames with --size WxH)" : "");
  return exit_for (st);
}

/* ---- Training -------------------------------------------------------------------- */

typedef struct {
  gboolean quiet, tty;
  gboolean line_open; /* a \r progress line waits for its newline */
} progress;

static int
on_epoch (const ae_epoch_report *r, void *user)
{
  progress *p = user;
  if (!p->quiet) {
    double eta = r->elapsed_s / r->epoch * (r->epochs - r->epoch);
    gchar *val = r->val_loss >= 0 ? g_strdup_printf ("%.6f", r->val_loss) : g_strdup ("-");
    fprintf (stderr, "%sepoch %d/%d  loss train %.6f val %s  %.0f samples/s  ETA %.0fs%s",
             p->tty ? "\r\033[K" : "", r->epoch, r->epochs, r->train_loss, val, r->samples_per_s,
             eta, p->tty ? "" : "\n");
    fflush (stderr);
    p->line_open = p->tty;
    g_free (val);
  }
  return stop_requested != 0;
}

static void
progress_end (progress *p)
{
  if (p->line_open)
    fputc ('\n', stderr);
  p->line_open = FALSE;
}

static int
train_network (const options *o, ae_model *model, const ae_dataset *data,
               ae_train_result *result)
{
  ae_train_opts opts;
  ae_error err = { 0 };
  progress p = { .quiet = o->quiet, .tty = isatty (STDERR_FILENO) };

  ae_train_opts_init (&opts);
  opts.epochs = o->epochs;
  opts.batch = o->batch;
  opts.lr = (float) o->lr;
  opts.lr_schedule = o->lr_schedule;
  opts.loss = o->loss;
  opts.ssim_window = SSIM_WINDOW;
  opts.val_split = (float) o->val_split;
  opts.synthetic_defects = (float) o->synthetic_defects;
  opts.noise_min = (float) (o->noise_min / 255.0);
  opts.noise_max = (float) (o->noise_max / 255.0);
  opts.seed = (uint64_t) o->seed;
  opts.crop_width = o->crop_w;
  opts.crop_height = o->crop_h;
  opts.augment_flip = o->flip;
  opts.rotate_inputs = o->rotate_inputs;
  opts.translate_inputs = o->translate_inputs;
  opts.repeat = o->repeat;
  opts.threads = o->threads > 0 ? o->threads : (int) sysconf (_SC_NPROCESSORS_ONLN);
  opts.cancel = &cancel_now;
  opts.on_epoch = on_epoch;
  opts.user = &p;

  set_sigint (on_sigint);
  ae_status st = ae_train (model, data, &opts, result, &err);
  set_sigint (SIG_DFL);
  progress_end (&p);
  if (st == AE_E_CANCELLED) {
    complain ("interrupted; no model written");
    return EXIT_INTERRUPTED;
  }
  if (st != AE_OK) {
    complain ("training failed: %s", err.message);
    return exit_for (err.status);
  }
  if (stop_requested && !o->quiet)
    printf ("stopped on request after epoch %d; keeping the best weights\n",
             result->epochs_run);
  return 0;
}

/* Mean squared reconstruction error of the listed frames (all if idx is
 * NULL), for the closed-form PCA that has no training loop to report it. */
static double
reconstruction_mse (ae_session *s, const ae_dataset *d, const size_t *idx, size_t n)
{
  size_t per = (size_t) d->channels * d->height * d->width;
  double sum = 0;
  for (size_t k = 0; k < n; k++) {
    const float *x = d->x + (idx ? idx[k] : k) * per;
    const float *y = ae_session_forward (s, x);
    for (size_t i = 0; i < per; i++)
      sum += ((double) y[i] - x[i]) * ((double) y[i] - x[i]);
  }
  return n ? sum / ((double) n * per) : -1.0;
}

/* PCA is fitted in closed form on the training part of the split, so the
 * held-out frames stay unseen for calibration just as with ae_train. */
static int
fit_pca (const options *o, const ae_dataset *data, ae_model **model, ae_train_result *result)
{
  size_t per = (size_t) data->channels * data->height * data->width;
  size_t *val = g_new (size_t, data->count);
  size_t nval = ae_validation_indices (data->count, (float) o->val_split, (uint64_t) o->seed, val);
  gboolean *held = g_new0 (gboolean, data->count);
  for (size_t k = 0; k < nval; k++)
    held[val[k]] = TRUE;

  float *xs = g_new (float, (data->count - nval) * per);
  size_t ntrain = 0;
  for (size_t i = 0; i < data->count; i++)
    if (!held[i])
      memcpy (xs + ntrain++ * per, data->x + i * per, per * sizeof (float));
  ae_dataset train = *data;
  train.x = xs;
  train.count = ntrain;

  ae_error err = { 0 };
  int rc = 0;
  *model = ae_pca_fit (&train, o->latent, &err);
  ae_session *s = *model ? ae_session_new (*model, 1, data->height, data->width, &err) : NULL;
  if (!s) {
    complain ("--arch pca: %s", err.message);
    rc = exit_for (err.status);
  } else {
    memset (result, 0, sizeof *result);
    result->final_train_loss = reconstruction_mse (s, &train, NULL, ntrain);
    result->final_val_loss = reconstruction_mse (s, data, val, nval);
    result->best_val_loss = result->final_val_loss;
    result->train_count = ntrain;
    result->val_count = nval;
  }
  ae_session_free (s);
  g_free (xs);
  g_free (held);
  g_free (val);
  return rc;
}

/* ---- Anomaly calibration ----------------------------------------------------------- */

typedef struct {
  size_t count;
  gboolean on_training; /* no validation split: scored the training frames */
  double percentile, threshold, mean, std, max;
  double percentile_threshold;  /* the percentile's, also when F1 chose */
  size_t defect_count;          /* labelled defect frames; 0: none given */
  double f1, defect_mean, defect_min;
  double map_threshold;         /* latent scores: the percentile of the map scores alone */
  float mix_scale[2];           /* mix: the two maps' means on the calibration frames */
  float contrast_floor;         /* --lost-contrast: ae_contrast_floor of the calibration frames */
  double map_mean;              /* and the map's mean on them: its unit (fit_contrast_weight) */
  float contrast_weight;        /* --lost-contrast times map_mean: what the map adds */
  map_kind map;                 /* the map in force (--map auto: the one chosen) */
  double auto_auroc[MAP_CANDIDATES], auto_f1[MAP_CANDIDATES]; /* --map auto: each candidate's */
} calibration;

static void
summarize_scores (const float *scores, size_t n, double p, float *scratch, calibration *cal)
{
  double sum = 0, sq = 0, max = -INFINITY;
  for (size_t k = 0; k < n; k++) {
    sum += scores[k];
    max = MAX (max, (double) scores[k]);
  }
  cal->mean = sum / (double) n;
  for (size_t k = 0; k < n; k++)
    sq += (scores[k] - cal->mean) * (scores[k] - cal->mean);
  cal->std = sqrt (sq / (double) n);
  cal->max = max;
  cal->count = n;
  cal->percentile = p;
  cal->threshold = cal->percentile_threshold = ae_percentile (scores, n, p, scratch);
}

/* What scores frames at the training size: a session for the error map and
 * the latent, or for the elbo score its own scorer. */
typedef struct {
  const ae_model *m;
  ae_frame_scoring fs;
  ae_session *s;
  ae_session *encoder; /* the Gaussian's vector (ae_latent_vectors), beside s's reconstruction */
  float *shift;        /* its output for the shift */
  const float *recon;  /* the last frame_map's reconstruction (s's output), NULL for elbo */
  ae_elbo *elbo;
  map_kind map;           /* MAP_MSE, MAP_SSIM or MAP_MIX */
  const float *mix_scale; /* MAP_MIX: the two maps' scales (ae_error_map_mix) */
  float contrast_floor, contrast_weight; /* ae_map_add_lost_contrast when the weight is > 0 */
} frame_scorer;

static void
scorer_close (frame_scorer *sc)
{
  ae_elbo_free (sc->elbo);
  ae_session_free (sc->encoder);
  ae_session_free (sc->s);
  g_free (sc->shift);
}

static gboolean
scorer_open (const ae_model *m, const ae_frame_scoring *fs, map_kind map, const ae_dataset *d,
             frame_scorer *sc)
{
  ae_error err = { 0 };
  *sc = (frame_scorer) { .m = m, .fs = *fs, .map = map };
  sc->s = ae_session_new (m, 1, d->height, d->width, &err);
  if (sc->s && fs->kind == AE_SCORE_ELBO)
    sc->elbo = ae_elbo_new_for (m, fs, &err);
  else if (sc->s && ae_model_latent_gaussian (m))
    sc->encoder = ae_session_new (m, 1, d->height, d->width, &err);
  gboolean ready = fs->kind == AE_SCORE_ELBO ? sc->elbo != NULL
                 : ae_model_latent_gaussian (m) ? sc->encoder != NULL
                 : sc->s != NULL;
  if (ready) {
    sc->shift = g_new (float, ae_session_latent_size (sc->s));
    return TRUE;
  }
  complain ("scoring: %s", err.message);
  scorer_close (sc);
  return FALSE;
}

/* One frame's anomaly map as aeanomaly computes it: the error map (for
 * elbo averaged over the posterior samples, *kl set), divided by the
 * model's mean map when it has one. */
static ae_status
frame_map (frame_scorer *sc, const ae_dataset *d, const float *x, float *map, float *scratch,
           double *kl)
{
  ae_loss kind = sc->map == MAP_SSIM ? AE_LOSS_SSIM : AE_LOSS_MSE;
  ae_status st;
  if (sc->elbo) {
    *kl = ae_elbo_map (sc->elbo, kind, SSIM_WINDOW, x, map);
    st = *kl >= 0 ? AE_OK : AE_E_ARG;
  } else {
    sc->recon = ae_session_forward (sc->s, x);
    st = sc->map == MAP_MIX
             ? ae_error_map_mix (x, sc->recon, d->channels, d->height, d->width, SSIM_WINDOW,
                                 sc->mix_scale, map, scratch)
             : ae_error_map (kind, x, sc->recon, d->channels, d->height, d->width, SSIM_WINDOW,
                             map, scratch);
  }
  if (st == AE_OK && ae_model_has_map_mean (sc->m))
    st = ae_map_normalise (sc->m, map, d->height, d->width);
  if (st == AE_OK && sc->contrast_weight > 0)
    st = ae_map_add_lost_contrast (x, d->channels, d->height, d->width, AE_CONTRAST_RADIUS,
                                   sc->contrast_floor, sc->contrast_weight, map, scratch);
  if (st != AE_OK)
    complain ("cannot compute the %s anomaly map", ae_loss_name (kind));
  return st;
}

/* Frame scores of n frames of d (those listed in idx, or the first n), as
 * aeanomaly computes them: the anomaly map (frame_map), smoothing,
 * aggregation, and the latent term (the Mahalanobis distance of the
 * frame's latent, or the KL divergence for elbo), combined as the scorer's
 * settings say. recon and latent, when not NULL, receive the two parts (a
 * Mahalanobis distance needs the model's Gaussian). */
static gboolean
score_frames (const options *o, frame_scorer *sc, const ae_dataset *d, const size_t *idx,
              size_t n, float *scores, double *recon, double *latent)
{
  size_t pixels = (size_t) d->height * d->width, per = pixels * d->channels;
  size_t values = ae_session_latent_size (sc->s);
  gboolean need_distance = sc->encoder && (latent || ae_score_kind_uses_gaussian (sc->fs.kind));
  float *map = g_new (float, pixels), *smooth = g_new (float, pixels);
  float *scratch = g_new (float, MAX (MAX (8 * pixels, pixels + d->width), values));
  ae_status st = AE_OK;
  for (size_t k = 0; k < n && st == AE_OK; k++) {
    const float *x = d->x + (idx ? idx[k] : k) * per;
    double lat = 0;
    st = frame_map (sc, d, x, map, scratch, &lat);
    ae_map_clear_border (map, d->width, d->height, o->border);
    ae_map_smooth (map, smooth, d->width, d->height, o->smooth, scratch);
    double r = ae_map_score (map, smooth, pixels, o->top_fraction, scratch);
    if (need_distance)
      lat = ae_latent_mahalanobis (sc->m, ae_latent_vectors (sc->m, sc->encoder, x, sc->recon,
                                                             sc->shift), scratch);
    if (recon)
      recon[k] = r;
    if (latent)
      latent[k] = lat;
    if (scores)
      scores[k] = (float) ae_frame_score (&sc->fs, r, lat);
  }
  g_free (scratch);
  g_free (smooth);
  g_free (map);
  return st == AE_OK;
}

typedef struct {
  float score;
  gboolean defect;
} labelled_score;

static int
cmp_labelled (const void *a, const void *b)
{
  float x = ((const labelled_score *) a)->score, y = ((const labelled_score *) b)->score;
  return (x > y) - (x < y);
}

/* The threshold with the best F1 for "score > threshold is a defect" over
 * normal and defect scores (Anomalib's adaptive threshold): the midpoint of
 * the gap at the best cut; on ties the highest such cut (fewer alarms). */
static double
f1_threshold (const float *normal, size_t nn, const float *defect, size_t nd, double *best_f1)
{
  size_t n = nn + nd, normals_below = 0, defects_below = 0, best = 0;
  labelled_score *all = g_new (labelled_score, n);
  for (size_t k = 0; k < n; k++)
    all[k] = k < nn ? (labelled_score) { normal[k], FALSE }
                    : (labelled_score) { defect[k - nn], TRUE };
  qsort (all, n, sizeof *all, cmp_labelled);
  *best_f1 = -1.0;
  /* Cut i flags all[i..n-1]; only cuts between distinct scores count. */
  for (size_t i = 0; i < n; i++) {
    if (i == 0 || all[i].score > all[i - 1].score) {
      double tp = (double) (nd - defects_below), fp = (double) (nn - normals_below);
      double f1 = 2 * tp / (2 * tp + fp + (double) defects_below);
      if (f1 >= *best_f1) {
        *best_f1 = f1;
        best = i;
      }
    }
    all[i].defect ? defects_below++ : normals_below++;
  }
  double t = best > 0 ? 0.5 * ((double) all[best - 1].score + all[best].score)
                      : all[0].score - 0.5 * fabs ((double) all[0].score) - 1e-12;
  g_free (all);
  return t;
}

/* The frame AUROC of "higher score = defect" between normal and defect
 * scores: the probability that a defect frame outscores a normal one, ties
 * counting half (the Mann-Whitney statistic from average ranks). */
static double
frame_auroc (const float *normal, size_t nn, const float *defect, size_t nd)
{
  size_t n = nn + nd;
  labelled_score *all = g_new (labelled_score, n);
  for (size_t k = 0; k < n; k++)
    all[k] = k < nn ? (labelled_score) { normal[k], FALSE }
                    : (labelled_score) { defect[k - nn], TRUE };
  qsort (all, n, sizeof *all, cmp_labelled);
  double defect_ranks = 0;
  for (size_t i = 0, j; i < n; i = j) {
    size_t defects = 0;
    for (j = i; j < n && all[j].score == all[i].score; j++)
      defects += all[j].defect;
    defect_ranks += (double) defects * 0.5 * (double) (i + 1 + j); /* ranks i+1..j, averaged */
  }
  g_free (all);
  return (defect_ranks - 0.5 * (double) nd * (double) (nd + 1)) / ((double) nn * (double) nd);
}

/* Scores frames the model did not train on (when there are any) and puts
 * the threshold at the requested percentile, so the expected false-alarm
 * rate on normal frames is about (100 - p)%. With labelled defect frames
 * the threshold is instead the F1-optimal one between the two sets. */
/* The mixed map's scales: the squared-error and 1 - SSIM maps' means over
 * the frames idx[0..n) of d, so that each counts in units of its normal
 * error. FALSE when either is 0 (nothing to divide by). */
static gboolean
fit_mix_scale (frame_scorer *sc, const ae_dataset *d, const size_t *idx, size_t n, float scale[2])
{
  size_t pixels = (size_t) d->height * d->width, per = pixels * d->channels;
  float *map = g_new (float, pixels), *scratch = g_new (float, 8 * pixels);
  double sum[2] = { 0, 0 }, means[2];
  ae_status st = AE_OK;
  for (size_t k = 0; k < n && st == AE_OK; k++) {
    const float *x = d->x + idx[k] * per;
    st = ae_error_map_means (x, ae_session_forward (sc->s, x), d->channels, d->height, d->width,
                             SSIM_WINDOW, means, map, scratch);
    sum[0] += means[0];
    sum[1] += means[1];
  }
  g_free (scratch);
  g_free (map);
  for (int i = 0; i < 2; i++)
    scale[i] = (float) (sum[i] / (double) n);
  return st == AE_OK && scale[0] > 0.0f && scale[1] > 0.0f;
}

/* The lost-contrast term's weight: --lost-contrast times the mean of the
 * map (without the term) over the frames idx[0..n) of d, so that it counts
 * in units of the map's normal error whatever the map (the mix's mean is 2,
 * a squared error's a few thousandths). FALSE when the map is 0 there. */
static gboolean
fit_contrast_weight (const options *o, frame_scorer *sc, const ae_dataset *d, const size_t *idx,
                     size_t n, calibration *cal)
{
  size_t pixels = (size_t) d->height * d->width, per = pixels * d->channels;
  float *map = g_new (float, pixels), *scratch = g_new (float, 8 * pixels);
  double sum = 0, kl;
  ae_status st = AE_OK;
  sc->contrast_weight = 0;
  for (size_t k = 0; k < n && st == AE_OK; k++) {
    st = frame_map (sc, d, d->x + idx[k] * per, map, scratch, &kl);
    for (size_t i = 0; i < pixels; i++)
      sum += map[i];
  }
  g_free (scratch);
  g_free (map);
  cal->map_mean = sum / ((double) n * (double) pixels);
  sc->contrast_weight = (float) (o->lost_contrast * cal->map_mean);
  return st == AE_OK && sc->contrast_weight > 0;
}

/* --map auto: scores the held-out frames idx[0..n) of d and the labelled
 * defect frames under each candidate map and keeps the one whose frame
 * AUROC between them is the highest (ties: the better F1, then the earlier,
 * simpler map); a mix whose maps are zero on every frame is left out. */
static gboolean
choose_map (const options *o, frame_scorer *sc, const ae_dataset *d, const size_t *idx, size_t n,
            const ae_dataset *bad, calibration *cal)
{
  float *scores = g_new (float, n), *bad_scores = g_new (float, bad->count);
  gboolean ok = TRUE;
  int best = MAP_MSE;
  for (int k = 0; k < MAP_CANDIDATES && ok; k++) {
    cal->auto_auroc[k] = cal->auto_f1[k] = -1.0;
    sc->map = (map_kind) k;
    if (k == MAP_MIX && !fit_mix_scale (sc, d, idx, n, cal->mix_scale))
      continue;
    sc->mix_scale = cal->mix_scale;
    if (o->lost_contrast > 0 && !fit_contrast_weight (o, sc, d, idx, n, cal))
      continue;
    ok = score_frames (o, sc, d, idx, n, scores, NULL, NULL)
         && score_frames (o, sc, bad, NULL, bad->count, bad_scores, NULL, NULL);
    if (!ok)
      break;
    cal->auto_auroc[k] = frame_auroc (scores, n, bad_scores, bad->count);
    f1_threshold (scores, n, bad_scores, bad->count, &cal->auto_f1[k]);
    if (cal->auto_auroc[k] > cal->auto_auroc[best]
        || (cal->auto_auroc[k] == cal->auto_auroc[best] && cal->auto_f1[k] > cal->auto_f1[best]))
      best = k;
  }
  cal->map = (map_kind) best;
  g_free (bad_scores);
  g_free (scores);
  return ok;
}

static int
calibrate (const options *o, const ae_model *model, const ae_dataset *d, const ae_dataset *bad,
           calibration *cal)
{
  size_t *idx = g_new (size_t, d->count);
  size_t n = ae_validation_indices (d->count, (float) o->val_split, (uint64_t) o->seed, idx);
  cal->on_training = n == 0;
  if (n == 0)
    for (n = 0; n < d->count; n++)
      idx[n] = n;

  ae_error err = { 0 };
  ae_frame_scoring fs;
  frame_scorer sc;
  if (ae_model_frame_scoring (model, &fs, &err) != AE_OK)
    complain ("calibration: %s", err.message);
  else if (scorer_open (model, &fs, o->map, d, &sc))
    err.status = AE_OK;
  else
    err.status = AE_E_ARG;
  if (err.status != AE_OK) {
    g_free (idx);
    return EXIT_FAILURE;
  }
  cal->map = o->map;
  gboolean ok = TRUE;
  if (o->lost_contrast > 0) {
    cal->contrast_floor = ae_contrast_floor (d->x, idx, n, d->channels, d->height, d->width);
    sc.contrast_floor = cal->contrast_floor;
    if (!(cal->contrast_floor > 0)) {
      complain ("calibration: no pixel to fit --lost-contrast's floor on (frames smaller "
                "than its %dx%d box)", 2 * AE_CONTRAST_RADIUS + 1, 2 * AE_CONTRAST_RADIUS + 1);
      ok = FALSE;
    }
  }
  ok = ok && (o->map != MAP_AUTO || choose_map (o, &sc, d, idx, n, bad, cal));
  sc.map = cal->map;
  /* --map auto fitted the scales already when it scored the mix. */
  if (ok && o->map == MAP_MIX && !fit_mix_scale (&sc, d, idx, n, cal->mix_scale)) {
    complain ("calibration: the mixed map's parts are zero on every calibration frame");
    ok = FALSE;
  }
  if (!ok) {
    scorer_close (&sc);
    g_free (idx);
    return EXIT_FAILURE;
  }
  sc.mix_scale = cal->mix_scale;
  if (o->lost_contrast > 0 && !fit_contrast_weight (o, &sc, d, idx, n, cal)) {
    complain ("calibration: the anomaly map is zero on every calibration frame: "
              "--lost-contrast has no unit to count in");
    scorer_close (&sc);
    g_free (idx);
    return EXIT_FAILURE;
  }
  cal->contrast_weight = sc.contrast_weight;
  float *scores = g_new (float, n), *sorted = g_new (float, n);
  float *bad_scores = g_new (float, bad->count + 1);
  double *recon = g_new (double, n);
  ok = score_frames (o, &sc, d, idx, n, scores, recon, NULL)
       && score_frames (o, &sc, bad, NULL, bad->count, bad_scores, NULL, NULL);
  if (ok && fs.kind != AE_SCORE_RECON) {
    float *part = g_new (float, n);
    for (size_t k = 0; k < n; k++)
      part[k] = (float) recon[k];
    cal->map_threshold = ae_percentile (part, n, o->calibrate, sorted);
    g_free (part);
  }
  g_free (recon);
  if (ok)
    summarize_scores (scores, n, o->calibrate, sorted, cal);
  cal->defect_count = bad->count;
  if (ok && bad->count) {
    double sum = 0, min = INFINITY;
    for (size_t k = 0; k < bad->count; k++) {
      sum += bad_scores[k];
      min = MIN (min, (double) bad_scores[k]);
    }
    cal->defect_mean = sum / (double) bad->count;
    cal->defect_min = min;
    cal->threshold = f1_threshold (scores, n, bad_scores, bad->count, &cal->f1);
  }
  g_free (bad_scores);
  g_free (sorted);
  g_free (scores);
  scorer_close (&sc);
  g_free (idx);
  return ok ? 0 : EXIT_FAILURE;
}

/* ---- Metadata ---------------------------------------------------------------------- */

/* What a run produced, gathered for the metadata and the summary. */
typedef struct {
  const frames_set *frames;
  ae_train_result result;
  gboolean is_pca;
  gboolean calibrated;
  calibration cal;
  ae_frame_scoring scoring; /* the frame score, with its statistics when combined */
  size_t latent_frames;     /* frames the latent Gaussian was fitted on */
  gchar *date;
  double seconds;
} run_info;

/* ---- Latent scores ------------------------------------------------------------------ */

/* The frames ae_train (and fit_pca) trained on and those it held out;
 * without a split both lists hold every frame. */
static void
split_indices (const options *o, size_t count, size_t *train, size_t *ntrain, size_t *val,
               size_t *nval)
{
  *nval = ae_validation_indices (count, (float) o->val_split, (uint64_t) o->seed, val);
  gboolean *held = g_new0 (gboolean, count);
  for (size_t k = 0; k < *nval; k++)
    held[val[k]] = TRUE;
  *ntrain = 0;
  for (size_t i = 0; i < count; i++)
    if (!held[i] || *nval == 0)
      train[(*ntrain)++] = i;
  if (*nval == 0)
    for (size_t i = 0; i < count; i++)
      val[(*nval)++] = i;
  g_free (held);
}

static void
mean_std (const double *v, size_t n, double *mean, double *std)
{
  double sum = 0, sq = 0;
  for (size_t k = 0; k < n; k++)
    sum += v[k];
  *mean = sum / (double) n;
  for (size_t k = 0; k < n; k++)
    sq += (v[k] - *mean) * (v[k] - *mean);
  *std = sqrt (sq / (double) n);
}

/* --score combined: both parts standardised on the held-out frames. */
static gboolean
fit_combined (const options *o, const ae_model *m, const ae_dataset *d, const size_t *val,
              size_t nval, ae_frame_scoring *fs)
{
  ae_frame_scoring recon_only = { .kind = AE_SCORE_RECON };
  frame_scorer sc;
  if (!scorer_open (m, &recon_only, o->map, d, &sc))
    return FALSE;
  double *recon = g_new (double, nval), *mahal = g_new (double, nval);
  gboolean ok = score_frames (o, &sc, d, val, nval, NULL, recon, mahal);
  if (ok) {
    mean_std (recon, nval, &fs->recon_mean, &fs->recon_std);
    mean_std (mahal, nval, &fs->mahal_mean, &fs->mahal_std);
    /* Constant parts (a single frame, identical frames) weigh nothing. */
    fs->recon_std = fs->recon_std > 0 ? fs->recon_std : 1.0;
    fs->mahal_std = fs->mahal_std > 0 ? fs->mahal_std : 1.0;
  }
  g_free (recon);
  g_free (mahal);
  scorer_close (&sc);
  return ok;
}

/* --score elbo: the settings the scorer needs. ae-train trains VAEs with
 * libae's default KL weight, so that is the beta of the ELBO; the training
 * seed seeds the posterior samples. */
static int
set_elbo_score (const options *o, ae_model *m, run_info *run)
{
  ae_train_opts defaults;
  ae_train_opts_init (&defaults);
  ae_frame_scoring fs = { .kind = AE_SCORE_ELBO,
                          .elbo_samples = o->elbo_samples > 0 ? o->elbo_samples
                                                              : AE_ELBO_SAMPLES_DEFAULT,
                          .elbo_seed = (uint64_t) o->seed, .elbo_beta = defaults.kl_beta };
  ae_error err = { 0 };
  if (ae_model_set_frame_scoring (m, &fs, &err) != AE_OK) {
    complain ("--score elbo: %s", err.message);
    return EXIT_FAILURE;
  }
  run->scoring = fs;
  return 0;
}

/* --pixel-norm: the mean anomaly map of the held-out frames (under the
 * frame score's own map: for elbo averaged over the posterior samples). */
static int
fit_map_mean (const options *o, ae_model *m, const ae_dataset *d, const size_t *val, size_t nval)
{
  ae_error err = { 0 };
  ae_frame_scoring fs;
  frame_scorer sc;
  if (ae_model_frame_scoring (m, &fs, &err) != AE_OK || !scorer_open (m, &fs, o->map, d, &sc)) {
    complain ("--pixel-norm: %s", err.message);
    return EXIT_FAILURE;
  }
  size_t pixels = (size_t) d->height * d->width, per = pixels * d->channels;
  float *map = g_new (float, pixels), *scratch = g_new (float, 8 * pixels);
  double *sum = g_new0 (double, pixels), kl;
  ae_status st = AE_OK;
  for (size_t k = 0; k < nval && st == AE_OK; k++) {
    st = frame_map (&sc, d, d->x + val[k] * per, map, scratch, &kl);
    for (size_t i = 0; i < pixels; i++)
      sum[i] += map[i];
  }
  for (size_t i = 0; i < pixels; i++)
    map[i] = (float) (sum[i] / (double) nval);
  if (st == AE_OK && ae_model_set_map_mean (m, map, d->height, d->width, &err) != AE_OK) {
    complain ("--pixel-norm: %s", err.message);
    st = err.status;
  }
  g_free (sum);
  g_free (scratch);
  g_free (map);
  scorer_close (&sc);
  return st == AE_OK ? 0 : EXIT_FAILURE;
}

/* The frame score's parts, fitted on the training (Gaussian) and held-out
 * (mean map, combined statistics) frames, in the order they build on each
 * other: the elbo settings, the mean map under them, the Gaussian and the
 * combined statistics of the normalised map; then the scoring is stored. */
static int
fit_frame_score (const options *o, ae_model *m, const ae_dataset *d, run_info *run)
{
  int rc = o->score == AE_SCORE_ELBO ? set_elbo_score (o, m, run) : 0;
  size_t *train = g_new (size_t, d->count), *val = g_new (size_t, d->count), ntrain, nval;
  split_indices (o, d->count, train, &ntrain, val, &nval);
  if (rc == 0 && o->pixel_norm)
    rc = fit_map_mean (o, m, d, val, nval);
  if (rc != 0 || !ae_score_kind_uses_gaussian (o->score)) {
    g_free (train);
    g_free (val);
    return rc;
  }
  ae_error err = { 0 };
  ae_frame_scoring fs = { .kind = o->score };
  if (ae_latent_fit_vector (m, o->latent_vector, d, train, ntrain, o->shrinkage, &err)
      != AE_OK) {
    complain ("--score %s: %s", ae_score_kind_name (o->score), err.message);
    rc = exit_for (err.status);
  }
  if (rc == 0 && o->score == AE_SCORE_COMBINED && !fit_combined (o, m, d, val, nval, &fs))
    rc = EXIT_FAILURE;
  if (rc == 0 && ae_model_set_frame_scoring (m, &fs, &err) != AE_OK) {
    complain ("--score %s: %s", ae_score_kind_name (o->score), err.message);
    rc = EXIT_FAILURE;
  }
  run->latent_frames = ntrain;
  run->scoring = fs;
  g_free (train);
  g_free (val);
  return rc;
}

/* Collects the first failure of a chain of setters. */
typedef struct {
  ae_model *m;
  ae_status st;
} meta_writer;

static void
put_int (meta_writer *w, const char *key, int64_t v)
{
  if (w->st == AE_OK)
    w->st = ae_model_set_int (w->m, key, v);
}

static void
put_float (meta_writer *w, const char *key, double v)
{
  if (w->st == AE_OK)
    w->st = ae_model_set_float (w->m, key, v);
}

static void
put_str (meta_writer *w, const char *key, const char *v)
{
  if (w->st == AE_OK)
    w->st = ae_model_set_str (w->m, key, v);
}

static void
put_input_meta (meta_writer *w, const options *o, const run_info *run)
{
  const frames_set *f = run->frames;
  put_str (w, "task", task_names[o->task]);
  put_int (w, "input.width", f->width);
  put_int (w, "input.height", f->height);
  put_int (w, "input.channels", f->channels);
  put_str (w, "input.format", f->channels == 1 ? "GRAY8" : "RGB");
  put_float (w, "norm.scale", 1.0 / 255.0);
  put_float (w, "norm.offset", 0.0);
  put_int (w, "latent.size", (int64_t) ae_model_latent_size (w->m, f->height, f->width));
}

static void
put_train_meta (meta_writer *w, const options *o, const run_info *run)
{
  char noise[64];
  g_snprintf (noise, sizeof noise, "%g:%g", o->noise_min, o->noise_max);
  gchar *tool = g_strdup_printf ("ae-train %s", AE_TOOLS_VERSION);

  put_str (w, "train.data", run->frames->description);
  put_int (w, "train.frames", (int64_t) run->frames->count);
  put_str (w, "train.arch", o->arch);
  put_int (w, "train.epochs", run->result.epochs_run);
  put_int (w, "train.best_epoch", run->result.best_epoch);
  put_str (w, "train.loss", run->is_pca ? "mse" : ae_loss_name (o->loss));
  if (!run->is_pca)
    put_str (w, "train.lr_schedule", o->lr_schedule == AE_LR_COSINE ? "cosine" : "constant");
  put_int (w, "train.seed", o->seed);
  put_float (w, "train.lr", o->lr);
  put_int (w, "train.batch", o->batch);
  put_str (w, "train.noise", noise);
  if (o->synthetic_defects > 0)
    put_float (w, "train.synthetic_defects", o->synthetic_defects);
  if (o->crop_w)
    put_str (w, "train.crop", o->crop_s);
  put_int (w, "train.flip", o->flip);
  if (o->rotate_inputs)
    put_int (w, "train.rotate_inputs", 1);
  if (o->translate_inputs)
    put_int (w, "train.translate_inputs", o->translate_inputs);
  put_int (w, "train.repeat", o->repeat);
  put_int (w, "train.threads", o->threads > 0 ? o->threads : sysconf (_SC_NPROCESSORS_ONLN));
  put_float (w, "train.val_split", o->val_split);
  put_float (w, "train.final_train_loss", run->result.final_train_loss);
  /* -1 when there was no validation set, as libae reports it. */
  put_float (w, "train.final_val_loss", run->result.final_val_loss);
  put_str (w, "train.tool", tool);
  put_str (w, "train.date", run->date);
  g_free (tool);
}

/* --map auto's comparison, as stored and printed. */
static gchar *
auto_choice (const calibration *cal)
{
  GString *s = g_string_new ("auto: frame AUROC / best F1 on the labelled frames:");
  for (int k = 0; k < MAP_CANDIDATES; k++)
    if (cal->auto_auroc[k] >= 0)
      g_string_append_printf (s, " %s %.4f / %.4f%s", map_names[k], cal->auto_auroc[k],
                              cal->auto_f1[k], k + 1 < MAP_CANDIDATES ? "," : "");
    else
      g_string_append_printf (s, " %s (zero maps)%s", map_names[k],
                              k + 1 < MAP_CANDIDATES ? "," : "");
  g_string_append_printf (s, "; chose %s", map_names[cal->map]);
  return g_string_free (s, FALSE);
}

static void
put_anomaly_meta (meta_writer *w, const options *o, const calibration *cal)
{
  static const char *const scores[] = { "mean-mse", "mean-ssim", "mix-mse-ssim" };
  put_str (w, "anomaly.score", scores[cal->map]);
  if (cal->map != MAP_MSE)
    put_int (w, "anomaly.ssim_window", SSIM_WINDOW);
  if (o->map == MAP_AUTO) {
    gchar *choice = auto_choice (cal);
    put_str (w, "anomaly.map_choice", choice);
    g_free (choice);
  }
  if (cal->map == MAP_MIX) {
    put_float (w, "anomaly.mix_scale_mse", cal->mix_scale[0]);
    put_float (w, "anomaly.mix_scale_ssim", cal->mix_scale[1]);
  }
  put_str (w, "anomaly.aggregate", o->aggregate ? o->aggregate : "mean");
  put_int (w, "anomaly.smooth_radius", o->smooth);
  put_int (w, "anomaly.border", o->border);
  if (o->lost_contrast > 0) {
    put_float (w, "anomaly.contrast_weight", cal->contrast_weight);
    put_float (w, "anomaly.contrast_map_mean", cal->map_mean);
    put_float (w, "anomaly.contrast_floor", cal->contrast_floor);
    put_int (w, "anomaly.contrast_window", 2 * AE_CONTRAST_RADIUS + 1);
  }
  if (ae_score_kind_uses_gaussian (o->score))
    put_float (w, "anomaly.latent_shrinkage", o->shrinkage);
  if (o->score != AE_SCORE_RECON)
    put_float (w, "anomaly.map_threshold", cal->map_threshold);
  put_float (w, "anomaly.threshold", cal->threshold);
  put_str (w, "anomaly.threshold_method", cal->defect_count ? "f1" : "percentile");
  put_float (w, "anomaly.calibrate_percentile", cal->percentile);
  put_float (w, "anomaly.percentile_threshold", cal->percentile_threshold);
  put_str (w, "anomaly.calibration_set", cal->on_training ? "training" : "validation");
  put_float (w, "anomaly.val_score_mean", cal->mean);
  put_float (w, "anomaly.val_score_std", cal->std);
  put_float (w, "anomaly.val_score_max", cal->max);
  put_int (w, "anomaly.val_count", (int64_t) cal->count);
  if (cal->defect_count) {
    put_int (w, "anomaly.defect_count", (int64_t) cal->defect_count);
    put_float (w, "anomaly.defect_score_mean", cal->defect_mean);
    put_float (w, "anomaly.defect_score_min", cal->defect_min);
    put_float (w, "anomaly.calibration_f1", cal->f1);
  }
}

static int
write_metadata (ae_model *m, const options *o, const run_info *run)
{
  meta_writer w = { m, AE_OK };
  put_input_meta (&w, o, run);
  put_train_meta (&w, o, run);
  if (run->calibrated)
    put_anomaly_meta (&w, o, &run->cal);
  for (gchar **kv = o->meta; kv && *kv && w.st == AE_OK; kv++) {
    gchar **parts = g_strsplit (*kv, "=", 2);
    put_str (&w, parts[0], parts[1]);
    g_strfreev (parts);
  }
  if (w.st != AE_OK) {
    complain ("cannot set model metadata: %s", ae_status_name (w.st));
    return EXIT_FAILURE;
  }
  return 0;
}

/* ---- Reporting ----------------------------------------------------------------------- */

static const char *
plural (size_t n)
{
  return n == 1 ? "" : "s";
}

static void
print_latent_score (const options *o, const ae_model *m, const run_info *run)
{
  const ae_frame_scoring *fs = &run->scoring;
  if (fs->kind == AE_SCORE_ELBO) {
    int c, h, w;
    ae_model_input_shape (m, &c, &h, &w);
    printf ("frame score elbo: the error map averaged over %d posterior samples (seed %"
            G_GUINT64_FORMAT ") + %g KL / %d (C x H x W)\n", fs->elbo_samples,
            (guint64) fs->elbo_seed, fs->elbo_beta, c * h * w);
    return;
  }
  printf ("latent Gaussian of the %s (%d values, shrinkage %g) fitted on %zu frame%s; frame "
          "score %s\n", ae_latent_vector_name (ae_model_latent_vector (m)),
          ae_model_latent_gaussian (m), o->shrinkage, run->latent_frames,
          plural (run->latent_frames), ae_score_kind_name (fs->kind));
  if (fs->kind == AE_SCORE_COMBINED)
    printf ("combined = (recon - %.6g) / %.6g + (mahalanobis - %.6g) / %.6g\n", fs->recon_mean,
            fs->recon_std, fs->mahal_mean, fs->mahal_std);
}

static void
print_calibration (const options *o, const calibration *cal)
{
  const char *score = map_names[cal->map];
  const char *agg = o->aggregate ? o->aggregate : "mean";
  gchar *what = o->score == AE_SCORE_RECON ? g_strdup_printf ("%s-%s", agg, score)
                : g_strdup (ae_score_kind_name (o->score));
  printf ("anomaly threshold %.6g: percentile %g of the %s scores of %zu %s frame%s%s "
          "(mean %.6g, max %.6g)\n", cal->percentile_threshold, cal->percentile, what,
          cal->count, cal->on_training ? "training" : "validation", plural (cal->count),
          cal->on_training ? " (no validation split)" : "", cal->mean, cal->max);
  if (o->map == MAP_AUTO) {
    gchar *choice = auto_choice (cal);
    printf ("anomaly map %s\n", choice);
    g_free (choice);
  }
  if (o->lost_contrast > 0)
    printf ("lost contrast: %g x the map's mean %.6g = %.6g per halving of the local contrast "
            "below %.6g (%g %% of the calibration frames' pixels lie below)\n", o->lost_contrast,
            cal->map_mean, cal->contrast_weight, cal->contrast_floor,
            100 * AE_CONTRAST_FLOOR_FRACTION);
  if (cal->defect_count)
    printf ("anomaly threshold %.6g in force: best F1 %.4f between those frames and %zu defect "
            "frame%s (defect scores mean %.6g, min %.6g)\n", cal->threshold, cal->f1,
            cal->defect_count, plural (cal->defect_count), cal->defect_mean, cal->defect_min);
  g_free (what);
}

static void
print_summary (const options *o, const ae_model *m, const run_info *run)
{
  const ae_train_result *r = &run->result;
  const frames_set *f = run->frames;
  if (o->quiet)
    return;
  if (run->is_pca)
    printf ("fitted pca (%d components) on %zu frame%s in %.1f s: train mse %.6f", o->latent,
            r->train_count, plural (r->train_count), run->seconds, r->final_train_loss);
  else
    printf ("trained %d epoch%s (best %d) on %zu frame%s in %.1f s: train loss %.6f",
            r->epochs_run, plural ((size_t) r->epochs_run), r->best_epoch, r->train_count,
            plural (r->train_count), r->seconds, r->final_train_loss);
  if (r->val_count)
    printf (", val %s %.6f on %zu frame%s\n", run->is_pca ? "mse" : "loss", r->final_val_loss,
            r->val_count, plural (r->val_count));
  else
    printf (", no validation set\n");
  if (o->task == TASK_ANOMALY && o->pixel_norm)
    printf ("anomaly map divided by its per-pixel mean on the %zu calibration frames\n",
            run->cal.count);
  if (o->task == TASK_ANOMALY && o->score != AE_SCORE_RECON)
    print_latent_score (o, m, run);
  if (run->calibrated)
    print_calibration (o, &run->cal);
  printf ("wrote %s (%s, %dx%d %s, latent %zu, %zu parameters)\n", o->output, o->arch, f->width,
          f->height, f->channels == 1 ? "gray" : "RGB",
          ae_model_latent_size (m, f->height, f->width), ae_model_param_count (m));
}

static void
print_loaded (const options *o, const frames_set *f)
{
  if (o->quiet)
    return;
  printf ("loaded %s\n", f->description);
  if (g_strcmp0 (o->arch, "pca") == 0 && o->task == TASK_DENOISE && o->noise_max > 0)
    printf ("note: pca is fitted in closed form; --noise, --epochs, --batch, --lr and "
                     "--loss do not apply\n");
}

/* ---- Main ------------------------------------------------------------------------------ */

/* Frames of one source; width/height 0 keep the source's size. */
static int
load_frames (const options *o, const char *input, const char *pipeline, int width, int height,
             frames_set *frames)
{
  GError *error = NULL;
  /* Informational lines go to stdout so that stderr holds only errors
   * (and the epoch progress, which follows stderr's terminal). */
  if (!o->quiet) {
    printf ("loading frames from %s\n", input ? input : "pipeline");
    fflush (stdout);
  }
  if (frames_load (input, pipeline, width, height, o->channels, (size_t) o->max_frames, frames,
                   &error))
    return 0;
  complain ("%s", error->message);
  g_error_free (error);
  return EXIT_FAILURE;
}

/* A latent score and --pixel-norm need whole frames, a latent score a
 * latent small enough for its Gaussian, and elbo a VAE: checked before
 * the long work. */
static int
check_latent_score (const options *o, const ae_model *m, int height, int width)
{
  size_t k = m ? ae_model_latent_size (m, height, width) : (size_t) o->latent;
  if (o->pixel_norm && o->crop_w) {
    complain ("--pixel-norm needs whole frames; it cannot be used with --crop");
    return EXIT_USAGE;
  }
  if (o->task != TASK_ANOMALY || o->score == AE_SCORE_RECON)
    return 0;
  if (o->score == AE_SCORE_ELBO && !(m && ae_model_is_vae (m))) {
    complain ("--score elbo needs a VAE (--arch vae, or a spec with a sample layer), not --arch %s",
              o->arch);
    return EXIT_USAGE;
  }
  if (o->crop_w) {
    /* The Gaussian and the elbo's KL weight belong to the frames' size, not the crops'. */
    complain ("--score %s needs whole frames; it cannot be used with --crop",
              ae_score_kind_name (o->score));
    return EXIT_USAGE;
  }
  if (k <= AE_LATENT_GAUSSIAN_MAX || !ae_score_kind_uses_gaussian (o->score))
    return 0;
  complain ("--score %s needs a latent of at most %d values; --arch %s has %zu at %dx%d",
            ae_score_kind_name (o->score), AE_LATENT_GAUSSIAN_MAX, o->arch, k, width, height);
  return EXIT_USAGE;
}

/* Builds (when the size was not known before loading) and trains the
 * model; for pca the fit is the training. */
static int
fit_model (const options *o, const ae_dataset *data, ae_model **model, run_info *run)
{
  run->is_pca = strcmp (o->arch, "pca") == 0;
  gint64 start = g_get_monotonic_time ();
  int rc;
  if (run->is_pca) {
    rc = check_latent_score (o, NULL, data->height, data->width);
    if (rc == 0)
      rc = fit_pca (o, data, model, &run->result);
  } else {
    rc = *model ? 0 : build_model (o, data->channels, o->crop_h ? o->crop_h : data->height,
                                   o->crop_w ? o->crop_w : data->width, model);
    if (rc == 0 && o->crop_w && !ae_model_is_fully_convolutional (*model)) {
      complain ("--crop needs a fully convolutional --arch (no dense layer), not %s", o->arch);
      rc = EXIT_USAGE;
    }
    if (rc == 0 && o->crop_w && (o->crop_w > data->width || o->crop_h > data->height)) {
      complain ("--crop %dx%d is larger than the %dx%d frames", o->crop_w, o->crop_h,
                data->width, data->height);
      rc = EXIT_USAGE;
    }
    if (rc == 0)
      rc = check_latent_score (o, *model, data->height, data->width);
    if (rc == 0)
      rc = train_network (o, *model, data, &run->result);
  }
  run->seconds = (double) (g_get_monotonic_time () - start) / G_USEC_PER_SEC;
  return rc;
}

static int
run (const options *o)
{
  frames_set frames = { 0 }, defects = { 0 };
  ae_model *model = NULL;
  run_info info = { .frames = &frames };
  int rc = 0;

  info.date = training_date ();
  if (!info.date)
    return EXIT_USAGE;
  /* Workers on shards of the batch beat OpenBLAS splitting small GEMMs,
   * so every worker runs single-threaded BLAS (docs/architecture.md). */
  ae_set_blas_threads (1);
  /* With the size known, a bad --arch fails before any decoding. */
  if (o->width > 0 && strcmp (o->arch, "pca") != 0)
    rc = build_model (o, o->channels, o->crop_h ? o->crop_h : o->height,
                      o->crop_w ? o->crop_w : o->width, &model);
  if (rc == 0)
    rc = load_frames (o, o->input, o->pipeline, o->width, o->height, &frames);
  if (rc == 0)
    print_loaded (o, &frames);
  /* Defect footage at the training frames' size, before the long work. */
  if (rc == 0 && (o->defect_input || o->defect_pipeline))
    rc = load_frames (o, o->defect_input, o->defect_pipeline, frames.width, frames.height,
                      &defects);
  if (rc == 0) {
    ae_dataset data = { frames.x, NULL, frames.count, frames.channels, frames.height,
                        frames.width };
    ae_dataset bad = { defects.x, NULL, defects.count, frames.channels, frames.height,
                       frames.width };
    rc = fit_model (o, &data, &model, &info);
    if (rc == 0 && o->task == TASK_ANOMALY && (o->score != AE_SCORE_RECON || o->pixel_norm))
      rc = fit_frame_score (o, model, &data, &info);
    if (rc == 0 && o->task == TASK_ANOMALY) {
      rc = calibrate (o, model, &data, &bad, &info.cal);
      info.calibrated = rc == 0;
    }
  }
  if (rc == 0)
    rc = write_metadata (model, o, &info);
  if (rc == 0) {
    ae_error err = { 0 };
    if (ae_model_save (model, o->output, &err) != AE_OK) {
      complain ("%s", err.message);
      rc = EXIT_FAILURE;
    }
  }
  if (rc == 0)
    print_summary (o, model, &info);
  ae_model_free (model);
  frames_set_clear (&frames);
  frames_set_clear (&defects);
  g_free (info.date);
  return rc;
}

int
main (int argc, char **argv)
{
  options o;
  int rc;

  /* The user's locale for messages and their encoding, but C number
   * formatting: metadata and messages must read "0.5", never "0,5". */
  setlocale (LC_ALL, "");
  setlocale (LC_NUMERIC, "C");
  options_init (&o);
  if (!parse_options (&o, argc, argv))
    rc = EXIT_USAGE;
  else if (!check_output_writable (o.output))
    rc = EXIT_FAILURE;
  else
    rc = run (&o);
  options_clear (&o);
  return rc;
}
