/* libae — small autoencoders on OpenBLAS.
 *
 * Conventions
 *  - Every function that can fail returns an ae_status (or NULL) and, when
 *    given a non-NULL ae_error, fills it with a one-line message.
 *  - Pixel data crosses the API as float32 in NCHW order (batch, channel,
 *    row, column), values normalised to [0,1] (pixel / 255).
 *  - A model (weights, architecture, metadata) is read-only during
 *    inference and may be shared by several sessions; a session owns the
 *    work buffers for one batch size and frame size, so a streaming thread
 *    that keeps its session allocates nothing per frame.
 *  - No global mutable state, except OpenBLAS's thread count, which is
 *    process-wide by OpenBLAS's design (ae_set_blas_threads).
 */
#ifndef AE_H
#define AE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define AE_VERSION_STRING "0.1.0"

typedef enum ae_status {
  AE_OK = 0,
  AE_E_ARG,     /* invalid argument or option value */
  AE_E_NOMEM,   /* allocation failed */
  AE_E_IO,      /* file could not be read or written */
  AE_E_FORMAT,  /* model file is corrupt, truncated or unsupported */
  AE_E_SHAPE,   /* input size does not fit the model */
  AE_E_NUMERIC, /* training diverged (non-finite loss) */
  AE_E_CANCELLED /* stopped on request */
} ae_status;

typedef struct ae_error {
  ae_status status;
  char message[256];
} ae_error;

const char *ae_status_name (ae_status status);

/* ---- Threads ------------------------------------------------------------ */

/* OpenBLAS reads its thread count when it loads and keeps one count for the
 * whole process. libae never changes it on its own; call this (e.g. with 1
 * when you split frames across your own threads). n <= 0 restores the
 * number of cores. */
void ae_set_blas_threads (int n);
int ae_blas_threads (void);

/* ---- Enumerations --------------------------------------------------------- */

typedef enum ae_act {
  AE_ACT_LINEAR = 0,
  AE_ACT_RELU,
  AE_ACT_LRELU,
  AE_ACT_SIGMOID,
  AE_ACT_TANH
} ae_act;

typedef enum ae_loss {
  AE_LOSS_MSE = 0,
  AE_LOSS_L1,
  AE_LOSS_BCE,
  AE_LOSS_SSIM
} ae_loss;

typedef enum ae_optimizer {
  AE_OPT_ADAM = 0,
  AE_OPT_SGD
} ae_optimizer;

typedef enum ae_lr_schedule {
  AE_LR_CONSTANT = 0,
  AE_LR_COSINE /* from lr down to 0 along a half cosine over the epochs */
} ae_lr_schedule;

const char *ae_act_name (ae_act act);
const char *ae_loss_name (ae_loss loss);
int ae_loss_from_name (const char *name, ae_loss *out); /* 1 on success */

/* ---- Models --------------------------------------------------------------- */

typedef struct ae_model ae_model;

/* Builds a model from a layer specification (docs/architecture.md):
 * comma-separated layers, e.g.
 *   "conv:16:3:2:1:lrelu,conv:32:3:2:1:lrelu,dense:32,
 *    dense:1568:lrelu:32x7x7,deconv:16:4:2:1:lrelu,deconv:1:4:2:1:sigmoid"
 * channels/height/width is the input shape the model is built for; fully
 * convolutional models (no dense layer) also run on other sizes.
 * Weights are initialised from `seed`. */
ae_model *ae_model_new (const char *spec, int channels, int height, int width,
                        uint64_t seed, ae_error *err);

/* The spec of a named preset ("dense", "conv", "vae", "fconv") for this
 * input and latent size, written into buf. */
ae_status ae_arch_preset (const char *name, int channels, int height, int width,
                          int latent, char *buf, size_t buflen, ae_error *err);

void ae_model_free (ae_model *model);

ae_status ae_model_save (const ae_model *model, const char *path, ae_error *err);
ae_model *ae_model_load (const char *path, ae_error *err);
ae_model *ae_model_load_memory (const void *data, size_t len, ae_error *err);

const char *ae_model_spec (const ae_model *model);
void ae_model_input_shape (const ae_model *model, int *channels, int *height, int *width);
int ae_model_is_fully_convolutional (const ae_model *model);
int ae_model_is_vae (const ae_model *model);
/* Whether the model has `noise` layers, which take each input's noise level
 * (ae_session_set_noise): a denoiser told how strong the noise is. */
int ae_model_is_noise_conditioned (const ae_model *model);
/* Height and width must be multiples of this (product of strides) for a
 * fully convolutional model to reproduce the input size. */
int ae_model_size_multiple (const ae_model *model);
/* Number of floats in the latent vector for an input of h x w. */
size_t ae_model_latent_size (const ae_model *model, int height, int width);
size_t ae_model_param_count (const ae_model *model);

typedef struct ae_layer_info {
  const char *type;   /* "dense", "conv", "deconv", "bn", "act", "sample" */
  ae_act act;
  int out_channels, kernel, stride, pad;
  int in_shape[3], out_shape[3]; /* C,H,W at the model's build size */
  size_t params;
} ae_layer_info;

int ae_model_layer_count (const ae_model *model);
int ae_model_latent_layer (const ae_model *model);
ae_status ae_model_layer_info (const ae_model *model, int index, ae_layer_info *out);

/* Typed key/value metadata (dotted keys, see docs/model-format.md). Setting
 * an existing key replaces it. Getters return 1 if the key exists with that
 * type. */
typedef enum ae_meta_type { AE_META_INT = 1, AE_META_FLOAT = 2, AE_META_STR = 3 } ae_meta_type;

ae_status ae_model_set_int (ae_model *model, const char *key, int64_t value);
ae_status ae_model_set_float (ae_model *model, const char *key, double value);
ae_status ae_model_set_str (ae_model *model, const char *key, const char *value);
int ae_model_get_int (const ae_model *model, const char *key, int64_t *out);
int ae_model_get_float (const ae_model *model, const char *key, double *out);
const char *ae_model_get_str (const ae_model *model, const char *key);
size_t ae_model_meta_count (const ae_model *model);
/* Entry i, in insertion order; value pointers may be NULL. */
ae_status ae_model_meta_at (const ae_model *model, size_t i, const char **key,
                            ae_meta_type *type, int64_t *ival, double *fval,
                            const char **sval);

/* ---- Inference sessions --------------------------------------------------- */

typedef struct ae_session ae_session;

/* Work buffers for `batch` inputs of height x width. */
ae_session *ae_session_new (const ae_model *model, int batch, int height, int width,
                            ae_error *err);
/* Changes the frame size/batch; reallocates only when it grows. */
ae_status ae_session_reshape (ae_session *s, int batch, int height, int width,
                              ae_error *err);
void ae_session_free (ae_session *s);

/* Reconstruction of `input` (NCHW, batch*C*H*W floats). The returned
 * pointer is owned by the session and valid until the next call. */
const float *ae_session_forward (ae_session *s, const float *input);
/* Runs the encoder only; returns batch * latent_size floats (for a VAE, mu). */
const float *ae_session_encode (ae_session *s, const float *input);
size_t ae_session_latent_size (const ae_session *s);
/* The noise level of each of the batch's inputs for the following forward
 * passes (sigma[i] for input i, in the input's units: levels / 255 for
 * 8-bit frames, as ae_noise_sigma measures it); NULL: all 0. Only `noise`
 * layers read it; reshaping to another size resets it to 0. */
void ae_session_set_noise (ae_session *s, const float *sigma);

/* ---- Noise level ------------------------------------------------------------ */

/* Standard deviation of additive white noise in a width x height plane, in
 * the plane's units: the median absolute residual of a 3x3 mask that
 * cancels locally linear content, over 0.6745. Robust to edges and
 * texture, which are outliers to the median; clean photos measure about
 * 1-2 levels of 255, strong texture (grass) up to 10. -1 when the plane is
 * under 3x3 (no estimate). Never allocates. */
float ae_noise_sigma (const float *plane, int width, int height);
/* The same in parts, for threads: each adds the samples of rows [y0, y1)
 * (of those ae_noise_sigma reads) to a histogram of its own; the sum of
 * histograms that cover every row gives ae_noise_sigma's value exactly.
 * 8 KiB: a stack or a once-allocated object, no allocation per frame. */
#define AE_NOISE_BINS 2048
typedef struct ae_noise_hist {
  uint32_t bin[AE_NOISE_BINS];
  uint64_t count;
} ae_noise_hist;
void ae_noise_hist_clear (ae_noise_hist *h);
void ae_noise_hist_rows (ae_noise_hist *h, const float *plane, int width, int height, int y0,
                         int y1);
/* h += part. */
void ae_noise_hist_add (ae_noise_hist *h, const ae_noise_hist *part);
/* The noise level of the samples in h; -1 when it has none. */
float ae_noise_hist_sigma (const ae_noise_hist *h);

/* ---- 8-bit samples ----------------------------------------------------------- */

/* Video frames hold 8-bit samples, the networks floats in [0, 1]. n samples
 * `stride` bytes apart: dst[i] = src[i * stride] / 255. */
void ae_samples_read (const uint8_t *src, int stride, float *dst, int n);
/* dst[i * stride] += gain * (to[i] - from[i]), rounded to the nearest
 * sample and clamped to 0..255 (gain 255 writes a change of plane values
 * back in sample units). */
void ae_samples_add_change (uint8_t *dst, int stride, const float *from, const float *to,
                            float gain, int n);

/* ---- Temporal (recursive) filtering ------------------------------------------ */

/* Motion-adaptive blend of a frame's spatially denoised plane with the
 * previous output, for rows [y0, y1) of width x height planes:
 *   out = spatial + k (history - spatial)
 * where k = strength (0..1) while the mean of |history - spatial| over the
 * 3x3 box around the pixel (edges repeated) is at most 0.25 noise_sigma,
 * falls linearly to 0 at 0.6 noise_sigma, and is 0 beyond: static areas
 * average over frames, moving ones take the new frame (no trails).
 * noise_sigma is the frame's input noise in plane units (ae_noise_sigma;
 * values under 0.5/255 count as 0.5/255). Reads rows y0 - 1 .. y1 of
 * spatial and history and writes only rows [y0, y1) of out, which must not
 * overlap them: disjoint row ranges can run on threads at once. Never
 * allocates. */
void ae_temporal_blend_rows (const float *spatial, const float *history, float *out, int width,
                             int height, float strength, float noise_sigma, int y0, int y1);

/* ---- Frame stripes on worker threads -------------------------------------- */

/* Runs a model over one height x width frame split into horizontal stripes,
 * one per thread, each computed with enough overlapping rows that the result
 * matches ae_session_forward on the whole frame (to float rounding). Made
 * for live video on several cores, where it beats OpenBLAS's own threads;
 * call ae_set_blas_threads (1) so the stripes do not compete for cores.
 * Models with dense layers, and frames too short to split, run as one
 * stripe (ae_stripes_count says how many). Sizes follow ae_session_new. */
typedef struct ae_stripes ae_stripes;

ae_stripes *ae_stripes_new (const ae_model *model, int height, int width, int threads,
                            ae_error *err);
int ae_stripes_count (const ae_stripes *s);
/* The reconstruction of one C x H x W frame; owned by `s`, valid until the
 * next call. Never allocates. */
const float *ae_stripes_forward (ae_stripes *s, const float *input);
/* Runs fn (ctx, y0, y1) once per stripe, on the stripes' threads, for the
 * rows [y0, y1) that stripe owns (together: every row once): the caller's
 * own per-row work before and after the model (reading and writing frames)
 * then uses the cores too. */
typedef void (*ae_rows_fn) (void *ctx, int y0, int y1);
void ae_stripes_for_rows (ae_stripes *s, ae_rows_fn fn, void *ctx);
/* ae_stripes_forward, also calling fn (ctx, y0, y1) on the stripes' threads
 * as soon as rows [y0, y1) of the result are in place (together: every row
 * once), while they are still in cache: the caller's write-back of a frame
 * costs no second pass over it. */
const float *ae_stripes_forward_rows (ae_stripes *s, const float *input, ae_rows_fn fn, void *ctx);
/* Where the forwards' results land (the same buffer every call). */
const float *ae_stripes_output (const ae_stripes *s);
/* The frame's noise level for the following forwards (ae_session_set_noise). */
void ae_stripes_set_noise (ae_stripes *s, float sigma);
void ae_stripes_free (ae_stripes *s);

/* ---- Losses and maps ------------------------------------------------------ */

/* Per-pixel anomaly map (H*W floats) of one C x H x W image and its
 * reconstruction: squared error averaged over channels (AE_LOSS_MSE),
 * absolute error (AE_LOSS_L1), or 1 - SSIM with a window x window box
 * (AE_LOSS_SSIM). `scratch` must hold 8*H*W floats for SSIM. */
ae_status ae_error_map (ae_loss kind, const float *input, const float *recon,
                        int channels, int height, int width, int window,
                        float *map, float *scratch);
/* The squared-error map / scale[0] + the 1 - SSIM map / scale[1] (each
 * scale: that map's mean on good frames, so both count in units of their
 * normal error). The two see different defects: squared error soft stains
 * that keep the texture, SSIM texture worn flat. Scratch as for SSIM. */
ae_status ae_error_map_mix (const float *input, const float *recon, int channels, int height,
                            int width, int window, const float scale[2], float *map,
                            float *scratch);
/* The squared-error and 1 - SSIM maps' means over one image (means[0],
 * means[1]); averaged over good frames they are ae_error_map_mix's scales.
 * map: H*W floats, scratch as for SSIM. */
ae_status ae_error_map_means (const float *input, const float *recon, int channels, int height,
                              int width, int window, double means[2], float *map, float *scratch);

/* ---- Lost local contrast ----------------------------------------------------
 * Texture worn flat on a random texture (brushed metal) is invisible to
 * every reconstruction map: the autoencoder cannot guess the missing texture,
 * so it rebuilds the patch flat, as it came in. This term compares the
 * input's local contrast with the good surface's instead. */

/* Each pixel's local contrast: the standard deviation of the input in the
 * (2 radius + 1)^2 box around it (shrunk at the edges), averaged over the
 * channels, into sigma (H*W floats). scratch: 4*H*W + W floats. */
ae_status ae_local_contrast (const float *input, int channels, int height, int width, int radius,
                             float *sigma, float *scratch);
/* Adds weight * log2(contrast_floor / sigma) to each pixel of map whose local
 * contrast sigma lies below contrast_floor: `weight` per halving of it,
 * counted up to AE_CONTRAST_MAX_HALVINGS: a flat patch gets a finite
 * value, and sigma's float precision (about 1e-4: the variance is a
 * difference of floats) stays below the cap for floors of 0.01 and up.
 * contrast_floor > 0, weight >= 0. scratch: 5*H*W + W floats. */
#define AE_CONTRAST_MAX_HALVINGS 6
ae_status ae_map_add_lost_contrast (const float *input, int channels, int height, int width,
                                    int radius, float contrast_floor, float weight, float *map,
                                    float *scratch);

/* What ae-train and aeanomaly's online learning both use: the 7 x 7 box
 * (SSIM's window), and the floor below which 0.1 % of the good frames'
 * pixels lie. */
#define AE_CONTRAST_RADIUS 3
#define AE_CONTRAST_FLOOR_FRACTION 0.001
/* The floor of n good frames (C x H x W each; frames idx[0..n), or the
 * first n when idx is NULL): the local contrast below which
 * AE_CONTRAST_FLOOR_FRACTION of their pixels lie, pixels whose box the
 * frame's edge cuts left out; within 1/32 of a halving (a histogram of
 * log2 sigma, so no pixel is stored however many frames). 0 when the
 * frames have no pixel to count or memory runs out. */
float ae_contrast_floor (const float *frames, const size_t *idx, size_t n, int channels,
                         int height, int width);

/* Mean of the largest `top_fraction` (0,1] of the n values (1 = mean).
 * `scratch` holds n floats. */
float ae_score_top_mean (const float *values, size_t n, float top_fraction, float *scratch);

/* The p-th percentile (0..100, linear interpolation) of n values; sorts a copy
 * in `scratch` (n floats). */
float ae_percentile (const float *values, size_t n, double p, float *scratch);

/* ---- From anomaly map to frame score --------------------------------------- */

/* How a per-pixel anomaly map becomes one frame score: "mean" (of the raw
 * map; top_fraction 1), "max" (of the smoothed map; 0) or "top:P", the mean
 * of the largest P % of the smoothed map (0 < P < 100; P / 100). Returns 1
 * and sets *top_fraction when the name is valid. */
int ae_aggregate_from_name (const char *name, float *top_fraction);

/* Mean over a (2 radius + 1)^2 box, shrunk at the borders (radius 0 copies).
 * `scratch` holds width * (height + 1) floats; map and smooth may not overlap. */
void ae_map_smooth (const float *map, float *smooth, int width, int height, int radius,
                    float *scratch);

/* Zeroes the map within `border` pixels of its edges (0: nothing): a fully
 * convolutional model's zero padding, and an SSIM window cut by the edge,
 * raise the error there on normal frames too, and with the "max" score a
 * frame's border decided it (the inspection benchmark's normal frames had
 * their maxima on the edge rows and columns). */
void ae_map_clear_border (float *map, int width, int height, int border);

/* The frame score of n map values: the mean of `map` when top_fraction >= 1,
 * otherwise the mean of the largest top_fraction of `smooth` (its maximum for
 * 0). `scratch` holds n floats. */
float ae_map_score (const float *map, const float *smooth, size_t n, float top_fraction,
                    float *scratch);

/* ---- Training ------------------------------------------------------------- */

typedef struct ae_dataset {
  const float *x;     /* count * channels * height * width, NCHW, in [0,1] */
  const float *target; /* NULL: reconstruct x (plus noise, if any, is input only) */
  size_t count;
  int channels, height, width;
} ae_dataset;

typedef struct ae_epoch_report {
  int epoch, epochs;        /* 1-based */
  double train_loss, val_loss; /* val_loss < 0 when there is no validation set */
  double samples_per_s;
  double elapsed_s;
  int best_epoch;
} ae_epoch_report;

typedef struct ae_train_opts {
  int epochs;           /* 20 */
  int batch;            /* 64 */
  float lr;             /* 1e-3 */
  ae_lr_schedule lr_schedule; /* constant */
  ae_optimizer optimizer; /* Adam */
  float momentum;       /* SGD momentum, 0.9 */
  float beta1, beta2;   /* Adam, 0.9 / 0.999 */
  float weight_decay;   /* L2 on weights (not biases or BN), 0 */
  float clip_norm;      /* global gradient-norm clip, 0 = off */
  ae_loss loss;         /* MSE */
  int ssim_window;      /* 7 */
  float kl_beta;        /* VAE KL weight, 1 */
  float val_split;      /* 0.1 */
  int patience;         /* early stopping epochs without val improvement, 0 = off */
  float noise_min, noise_max; /* Gaussian input noise sigma range in [0,1] units */
  float synthetic_defects; /* probability that a training sample's input gets
                            * one synthetic defect (bump, flat patch or line;
                            * lib/defects.c) while its target stays clean, 0 */
  int augment_flip;     /* random horizontal flips */
  int rotate_inputs;    /* turn each training input by a random multiple of
                         * 90 degrees (0 included) while its target stays
                         * upright: the network learns to restore the normal
                         * frames' orientation, which makes it specific to
                         * them (Huang et al.'s inverse-transform
                         * autoencoder). Needs square frames or crops, 0 */
  int translate_inputs; /* > 0: move each training input by a random offset
                         * of up to this many pixels across and down (either
                         * way; the frame's edge repeats where nothing comes
                         * in) while its target stays in place: the network
                         * learns where normal frames' content sits, as with
                         * rotate_inputs its orientation. Under half the
                         * sample's smaller side, 0 */
  int crop_width, crop_height; /* > 0: train on random crops of this size
                                * (validation: the centre crop) */
  int repeat;           /* passes over the training set per epoch, 1; with
                         * crops, noise or flips each pass sees new samples */
  uint64_t seed;        /* 1 */
  int threads;          /* worker threads, each training a shard of every
                         * batch, 1. Fastest with ae_set_blas_threads (1) and
                         * one worker per core (see docs/architecture.md). */
  /* Checked between batches: when it becomes non-zero, ae_train returns
   * AE_E_CANCELLED at once (the model keeps the best weights so far). */
  const volatile int *cancel;
  /* Called after every epoch; return non-zero to stop training early
   * (ae_train then returns AE_OK). */
  int (*on_epoch) (const ae_epoch_report *report, void *user);
  void *user;
} ae_train_opts;

typedef struct ae_train_result {
  int epochs_run;
  int best_epoch;
  double final_train_loss, final_val_loss, best_val_loss;
  size_t train_count, val_count;
  double seconds;
} ae_train_result;

void ae_train_opts_init (ae_train_opts *opts);

/* Trains in place. With a validation split, the weights of the epoch with
 * the lowest validation loss are kept. The split takes the last
 * val_split * count samples of a seeded permutation. */
ae_status ae_train (ae_model *model, const ae_dataset *data, const ae_train_opts *opts,
                    ae_train_result *result, ae_error *err);

/* Indices of the validation samples ae_train used (same seed, count and
 * split); `out` holds count entries, returns how many were written. */
size_t ae_validation_indices (size_t count, float val_split, uint64_t seed, size_t *out);

/* Closed-form PCA: a model "dense:k,dense:D:linear:CxHxW" whose encoder
 * projects onto the top-k principal components and whose decoder is the
 * best rank-k linear reconstruction. */
ae_model *ae_pca_fit (const ae_dataset *data, int k, ae_error *err);

/* ---- Latent-space scores ---------------------------------------------------- */

/* A Gaussian fitted to the latent vectors of normal frames: their mean and
 * the whitening matrix W = L^-1/2 V^T of their covariance S, regularised
 * as (1 - shrinkage) S + shrinkage (tr S / k) I (shrinkage in [0, 1]; it
 * keeps W finite when latents are collinear). Encodes the n frames of
 * `data` listed in idx (all when idx is NULL) at the model's build size
 * and stores the result in the model (saved with it). The latent holds at
 * most AE_LATENT_GAUSSIAN_MAX values. */
#define AE_LATENT_GAUSSIAN_MAX 2048

ae_status ae_latent_fit (ae_model *model, const ae_dataset *data, const size_t *idx, size_t n,
                         double shrinkage, ae_error *err);

/* What the Gaussian describes (the model's anomaly.latent_vector):
 * AE_LATENT_CODE the latent z(x) of the frame (ae_latent_fit);
 * AE_LATENT_SHIFT how far the latent moves when the frame is replaced by
 *                 its reconstruction, z(x) - z(x^), the latent layer of
 *                 Kim et al.'s RaPP: normal frames come back to the same
 *                 code, frames the network cannot rebuild move it, in
 *                 directions the distance weighs by how rarely normal
 *                 frames move that way. Not for PCA, whose reconstruction
 *                 has the frame's own code: its shift is rounding noise. */
typedef enum ae_latent_vector { AE_LATENT_CODE = 0, AE_LATENT_SHIFT } ae_latent_vector;

/* "code", "shift" */
const char *ae_latent_vector_name (ae_latent_vector v);
int ae_latent_vector_from_name (const char *name, ae_latent_vector *out); /* 1 on success */
/* ae_latent_fit for either vector. */
ae_status ae_latent_fit_vector (ae_model *model, ae_latent_vector vector, const ae_dataset *data,
                                const size_t *idx, size_t n, double shrinkage, ae_error *err);
/* The vector the model's Gaussian describes (AE_LATENT_CODE without one). */
ae_latent_vector ae_model_latent_vector (const ae_model *model);
/* That vector for each of the session's inputs: for AE_LATENT_CODE the
 * latents of `input` (recon unused, may be NULL), for AE_LATENT_SHIFT those
 * minus the latents of `recon`, the model's reconstructions of `input` in
 * a buffer `s` does not own (s runs the encoder twice). Returns
 * batch x latent floats: s's own for the code, `out` (that many floats)
 * for the shift. Never allocates. */
const float *ae_latent_vectors (const ae_model *model, ae_session *s, const float *input,
                                const float *recon, float *out);
/* The latent size k of the model's Gaussian, 0 when it has none. */
int ae_model_latent_gaussian (const ae_model *model);
/* Squared Mahalanobis distance |W (z - mean)|^2 of one latent vector z
 * (k floats, as ae_latent_vectors returns at the build size) under the
 * fitted Gaussian; about k for typical normal frames. -1 without a
 * Gaussian. `scratch` holds k floats; never allocates. */
double ae_latent_mahalanobis (const ae_model *model, const float *latent, float *scratch);

/* How a frame score is made (the model's anomaly.frame_score):
 * AE_SCORE_RECON the reconstruction error map, aggregated (ae_map_score);
 * AE_SCORE_MAHALANOBIS the latent's squared Mahalanobis distance;
 * AE_SCORE_COMBINED (recon - recon_mean) / recon_std
 *                   + (mahalanobis - mahal_mean) / mahal_std,
 * both standardised with statistics of normal frames;
 * AE_SCORE_ELBO (VAEs) the negative ELBO in the units the library trains
 * with: the map averaged over elbo_samples posterior decodes (ae_elbo_map),
 * aggregated, + kl_weight * KL (q(z|x) || N(0, I)), where kl_weight =
 * elbo_beta / (C H W) at the build size, as in the training loss. With the
 * "mean" aggregation it is exactly the per-pixel training loss's estimate. */
typedef enum ae_score_kind {
  AE_SCORE_RECON = 0,
  AE_SCORE_MAHALANOBIS,
  AE_SCORE_COMBINED,
  AE_SCORE_ELBO
} ae_score_kind;

typedef struct ae_frame_scoring {
  ae_score_kind kind;
  double recon_mean, recon_std, mahal_mean, mahal_std; /* AE_SCORE_COMBINED */
  /* AE_SCORE_ELBO: posterior decodes per frame (L), the seed of their noise,
   * the KL weight beta the model trained with, and (filled in by
   * ae_model_frame_scoring, ignored when storing) beta / (C H W). */
  int elbo_samples;
  uint64_t elbo_seed;
  double elbo_beta, kl_weight;
} ae_frame_scoring;

/* "recon", "mahalanobis", "combined", "elbo" */
const char *ae_score_kind_name (ae_score_kind kind);
int ae_score_kind_from_name (const char *name, ae_score_kind *out); /* 1 on success */
/* Whether the kind needs the latent Gaussian (ae_latent_fit). */
int ae_score_kind_uses_gaussian (ae_score_kind kind);
/* Reads the model's frame score settings (anomaly.frame_score and, when
 * combined, anomaly.combined.*, for elbo anomaly.elbo.*; absent: recon)
 * and checks them against its tensors and layers. The loader runs the same
 * check, so a loaded model always passes. */
ae_status ae_model_frame_scoring (const ae_model *model, ae_frame_scoring *out, ae_error *err);
/* Stores the settings as metadata (fails if the model lacks the Gaussian a
 * latent score needs, a std is not positive, or elbo is asked of a model
 * ae_elbo_new refuses or with samples outside 1..AE_ELBO_SAMPLES_MAX, a
 * negative or non-finite beta, or a seed of 2^63 or more). */
ae_status ae_model_set_frame_scoring (ae_model *model, const ae_frame_scoring *fs,
                                      ae_error *err);
/* The frame score from the aggregated map score and the latent term: the
 * Mahalanobis distance, or for AE_SCORE_ELBO the KL divergence in nats
 * (ae_elbo_map); ignored for AE_SCORE_RECON. */
double ae_frame_score (const ae_frame_scoring *fs, double recon, double latent);

/* ---- Per-pixel standardised maps ------------------------------------------------ */

/* The mean anomaly map of normal frames (height x width, the build size),
 * stored in the model (saved as the tensor map.mean): ae_map_normalise then
 * divides a frame's map by it, so each pixel's error counts in units of
 * that pixel's normal error — for squared-error maps the standardised
 * residual r^2 / E[r^2], where pixels that are always hard to reconstruct
 * no longer dominate. Values under 1e-3 of the map's mean are raised to it.
 * Fails for another size, negative or non-finite values, or an all-zero map. */
ae_status ae_model_set_map_mean (ae_model *model, const float *mean, int height, int width,
                                 ae_error *err);
int ae_model_has_map_mean (const ae_model *model);
/* map[p] /= mean[p] for a height x width map; AE_E_ARG without a mean map,
 * AE_E_SHAPE at a size other than the build size. Never allocates. */
ae_status ae_map_normalise (const ae_model *model, float *map, int height, int width);

/* ---- VAEs: the negative ELBO (An & Cho's reconstruction probability) ----------- */

/* A scorer for VAEs (models with a sample layer, none of whose later layers
 * is residual) at the model's build size. It decodes `samples` latents
 * z = mu + sigma * eps per frame, as one batch. The eps are drawn once from
 * `seed` when the scorer is made and reused for every frame (common random
 * numbers): a frame's score depends on the frame alone, not on the frames
 * scored before it, so ae-train's calibration and aeanomaly agree exactly
 * and runs repeat bit for bit. All buffers are sized here; scoring never
 * allocates. */
#define AE_ELBO_SAMPLES_DEFAULT 8
#define AE_ELBO_SAMPLES_MAX 64
typedef struct ae_elbo ae_elbo;

ae_elbo *ae_elbo_new (const ae_model *model, int samples, uint64_t seed, ae_error *err);
/* The scorer a model's AE_SCORE_ELBO settings describe. */
ae_elbo *ae_elbo_new_for (const ae_model *model, const ae_frame_scoring *fs, ae_error *err);
/* One C x H x W frame (NCHW, the build size): fills `map` (H x W) with the
 * mean over the samples of ae_error_map (kind, window) of each decode and
 * returns KL (q(z|x) || N(0, I)) in nats, summed over the latent; -1 when
 * the map kind is not one ae_error_map computes. */
double ae_elbo_map (ae_elbo *e, ae_loss kind, int window, const float *input, float *map);
void ae_elbo_free (ae_elbo *e);

#ifdef __cplusplus
}
#endif
#endif /* AE_H */
