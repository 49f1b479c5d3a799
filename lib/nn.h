/* libae internals: layers, models, sessions. Not installed.
 *
 * Activations inside a session are stored channel-major over the batch
 * ("CNHW"): element (c, n, y, x) sits at ((c * N + n) * H + y) * W + x.
 * A convolution over the whole batch is then one im2col and one GEMM whose
 * output lands directly in place, and per-channel work (bias, batch norm)
 * walks one contiguous run. For a batch of one, CNHW and NCHW coincide, so
 * streaming inference never transposes.
 */
#ifndef AE_NN_H
#define AE_NN_H

#include "ae_internal.h"

/* ---- Random numbers (xoshiro256**, seeded by splitmix64) ------------------- */

typedef struct ae_rng {
  uint64_t s[4];
  int has_spare;
  double spare;
} ae_rng;

void ae_rng_seed (ae_rng *rng, uint64_t seed);
uint64_t ae_rng_next (ae_rng *rng);
double ae_rng_uniform (ae_rng *rng);          /* [0,1) */
double ae_rng_normal (ae_rng *rng);           /* N(0,1) */
size_t ae_rng_below (ae_rng *rng, size_t n);  /* [0,n) */
void ae_rng_shuffle (ae_rng *rng, size_t *v, size_t n);

/* One random local corruption, the same on every channel plane (lib/defects.c). */
void ae_add_synthetic_defect (float *planes, int channels, size_t channel_stride, int h, int w,
                              ae_rng *rng);

/* ---- Layers ---------------------------------------------------------------- */

typedef enum layer_kind {
  LAYER_DENSE,
  LAYER_CONV,
  LAYER_DECONV,
  LAYER_BN,
  LAYER_ACT,
  LAYER_SAMPLE,
  LAYER_RESIDUAL, /* adds the model's input: the layers before it learn a correction */
  LAYER_SHUFFLE,  /* depth to space: C*R*R x H x W -> C x RH x RW (R in s) */
  LAYER_NOISE     /* y = x + gain * sigma + bias per channel: sigma is the sample's noise level */
} layer_kind;

typedef struct ae_layer {
  layer_kind kind;
  ae_act act;
  float alpha;           /* leaky ReLU slope */
  int out_c, k, s, p;    /* conv/deconv geometry; dense: out_c = features */
  int shape_c, shape_h, shape_w; /* dense output viewed as C x H x W */
  size_t w_off, w_n;     /* weights (BN: gamma) in model->params */
  size_t b_off, b_n;     /* biases (BN: beta) */
  size_t stat_off;       /* BN running mean then variance in model->stats */
  int in[3], out[3];     /* C,H,W at the model's build size */
} ae_layer;

#define AE_BN_EPS 1e-5f
#define AE_BN_MOMENTUM 0.1f

struct ae_model {
  char *spec;
  int in_c, in_h, in_w;
  int nlayers;
  ae_layer *layers;
  int latent_layer;
  int fully_conv, vae, noise_conditioned;
  float *params;
  size_t nparams;
  /* Bumped by ae_model_params_changed whenever params are written, so
   * sessions know when weights they repacked are stale. */
  uint64_t revision;
  float *stats;
  size_t nstats;
  ae_meta meta;
  /* Gaussian of the normal frames' latents (ae_latent_fit); k = 0: none.
   * Saved as the tensors latent.mean [k] and latent.whiten [k, k]. */
  int latent_k;
  float *latent_mean, *latent_whiten;
  /* Mean anomaly map of normal frames at the build size (ae_model_set_map_mean);
   * NULL: none. Saved as the tensor map.mean [H, W], after the latent ones. */
  float *map_mean;
};

/* spec.c */
ae_status ae_spec_parse (const char *spec, ae_layer **layers, int *count, ae_error *err);
/* net_in: the model's input shape, which a residual layer's input must match. */
ae_status ae_layer_out_shape (const ae_layer *l, const int in[3], const int net_in[3], int out[3],
                              ae_error *err);
const char *ae_layer_kind_name (layer_kind kind);

/* model.c */
ae_model *ae_model_build (const char *spec, int c, int h, int w, ae_error *err);
/* Call after writing m->params (anything that is not ae_train, the PCA fit
 * or a load): sessions repack their weights before the next forward. */
void ae_model_params_changed (ae_model *m);
void ae_model_init_weights (ae_model *m, uint64_t seed);

/* latent_score.c: the latent Gaussian's tensors in a model file. */
#define AE_LATENT_MEAN_TENSOR "latent.mean"
#define AE_LATENT_WHITEN_TENSOR "latent.whiten"
/* Latent sizes up to this may carry a Gaussian (k x k whitening matrix). */
#define AE_LATENT_MAX AE_LATENT_GAUSSIAN_MAX
void ae_latent_clear (ae_model *m);
/* Adopts the two tensors read from a file (validated: names, shapes for
 * the model's latent size, finite values). */
ae_status ae_latent_adopt (ae_model *m, const aem_tensor *mean, const aem_tensor *whiten,
                           ae_error *err);

/* map_norm.c: the mean map's tensor in a model file. */
#define AE_MAP_MEAN_TENSOR "map.mean"
void ae_map_mean_clear (ae_model *m);
/* Adopts the tensor read from a file (validated: name, build-size shape,
 * finite values > 0). */
ae_status ae_map_mean_adopt (ae_model *m, const aem_tensor *t, ae_error *err);

/* elbo.c: whether ae_elbo_new can score this model (AE_E_ARG with the reason if not). */
ae_status ae_elbo_check_model (const ae_model *m, ae_error *err);

/* ---- Sessions ---------------------------------------------------------------- */

/* A layer's weights rearranged for one kernel (narrow.c, winograd.c). */
typedef struct weight_pack {
  float *w;     /* the kernel's layout */
  uint64_t rev; /* the model revision it was packed at (0: never) */
} weight_pack;

typedef struct bn_cache {
  float *xhat;    /* normalised input, training only */
  float *invstd;  /* per channel */
} bn_cache;

struct ae_session {
  const ae_model *model;
  int training;
  int batch, h, w;
  int (*shape)[3];      /* shape[i]: input of layer i; shape[nlayers]: output */
  size_t *numel;        /* batch * C*H*W of shape[i] */
  float **act;          /* training: act[i] input of layer i, act[n] output */
  float *ping, *pong;   /* inference: two buffers of the largest activation */
  size_t cap_act;       /* floats allocated per activation buffer (inference) */
  float *input;         /* input in CNHW (when batch > 1 needs a transpose) */
  float *output;        /* output in NCHW */
  float *latent;        /* latent in NCHW */
  float *col;           /* im2col workspace */
  size_t col_budget;    /* floats per im2col chunk (tests lower it) */
  float *tmp_a, *tmp_b; /* dense transposes */
  size_t tmp_cap;
  bn_cache *bn;         /* per layer (training) */
  float *eps;           /* VAE noise, training */
  size_t eps_cap;
  float *grad_a, *grad_b; /* training: gradient ping-pong */
  size_t grad_cap;
  size_t allocated_for[3]; /* batch,h,w capacity */
  float *stats;         /* where BN running statistics are updated (training) */
  ae_rng rng;           /* VAE sampling noise (training) */
  float kl_scale;       /* d(loss)/d(KL sum) for the backward pass */
  const float *net_in;  /* CNHW input of the current forward (residual layers) */
  float *noise;         /* noise level of each sample (noise layers), batch capacity */
  /* Per layer: narrow.c's packed weights for the forward pass and (training)
   * for the input gradient; w NULL where the layer does not run on it. */
  weight_pack *narrow_fwd, *narrow_back;
  /* Per layer: winograd.c's transformed weights; w NULL where it does not run. */
  weight_pack *wino;
};

ae_session *ae_session_new_mode (const ae_model *m, int batch, int h, int w, int training,
                                 ae_error *err);
/* Forward on a CNHW input already in s->act[0] (training) or given. Returns the
 * CNHW output. `stop_after` = -1 for the whole network, else the layer
 * whose output to stop at. */
float *ae_session_run_cnhw (ae_session *s, const float *x, int stop_after);
/* Runs layers first..last on x, the CNHW input of layer `first` (not one of
 * the session's ping-pong buffers), and returns their output. Residual
 * layers add the input of the last ae_session_run_cnhw. */
float *ae_session_run_layers (ae_session *s, const float *x, int first, int last);
/* Backward from dL/d(output) in `gout` (CNHW, overwritten). Accumulates into
 * grads (model->nparams floats). kl_scale > 0 adds the VAE KL gradient. */
void ae_session_backward (ae_session *s, float *gout, float *grads, float kl_scale);
/* Sum over the batch of the VAE KL divergences of the last training forward. */
double ae_session_kl (const ae_session *s);
/* KL (N(mu, exp(logvar)) || N(0, 1)) summed over n independent values:
 * -1/2 sum (1 + logvar - mu^2 - exp(logvar)), in nats. */
double ae_gaussian_kl (const float *mu, const float *logvar, size_t n);

/* layers.c: per-kind forward/backward on CNHW tensors. */
typedef struct layer_ctx {
  const ae_model *m;
  const ae_layer *l;
  int n;                 /* batch */
  const int *in, *out;   /* shapes */
  ae_session *s;
  int index;
} layer_ctx;

/* Returns 1 when the layer's activation is already applied to y. */
int layer_forward (const layer_ctx *c, const float *x, float *y);
/* dy: gradient w.r.t. the layer's pre-activation output (act' applied);
 * dx may be NULL for the first layer. */
void layer_backward (const layer_ctx *c, const float *x, const float *y, const float *dy,
                     float *dx, float *grads);
/* Inference with a batch of one: a linear convolution and the noise layer
 * after it as one direct-kernel pass (the noise term folded into the bias,
 * the noise layer's (leaky) ReLU fused), the same values as the two layers
 * one after the other. Returns 0, doing nothing, where that does not apply. */
int conv_noise_forward (const layer_ctx *c, const ae_layer *noise, const float *x, float *y);
void act_forward (ae_act act, float alpha, float *y, size_t n);
/* The (leaky) ReLU as a*y + b*|y|; 0 for activations not of that form. */
int act_as_abs_form (ae_act act, float alpha, float *a, float *b);
void act_backward (ae_act act, float alpha, const float *y, float *g, size_t n);

/* conv.c */
typedef struct conv_geom {
  int c, h, w;      /* image being read (im2col) or written (col2im) */
  int k, s, p;
  int oh, ow;       /* output positions */
  int n;            /* batch */
} conv_geom;

void ae_im2col (const conv_geom *g, const float *img, size_t j0, size_t j1, float *col);
void ae_col2im (const conv_geom *g, const float *col, size_t j0, size_t j1, float *img);
/* ae_col2im from the transposed columns: colt[(j - j0) * rows + r]. Each
 * position adds whole kernel rows, contiguous in both, where ae_col2im adds
 * one strided tap at a time. */
void ae_col2im_pixel_major (const conv_geom *g, const float *colt, size_t j0, size_t j1,
                            float *img);
/* Columns per im2col chunk so that rows x columns stays within budget floats. */
size_t ae_col_chunk (size_t rows, size_t total_cols, size_t budget);
#define AE_COL_BUDGET ((size_t) 1 << 20)

/* Some rows of a C x H x W tensor (one image) held in a buffer: channel c,
 * row y at data + c * cs + (y - first) * rs. The row kernels below read
 * and write only the rows they are asked for and those their taps reach;
 * rows outside [0, H) are the zero padding, never read. */
typedef struct rows_in {
  const float *data;
  int first;
  size_t cs, rs;
} rows_in;

typedef struct rows_out {
  float *data;
  int first;
  size_t cs, rs;
} rows_out;

/* narrow.c: a convolution or transposed convolution whose output rows are
 * narrow, the vector running across output channels, one image at a time.
 * fits says whether the geometry suits it. pack rearranges the layer's
 * weights (out_c x in_c x k x k; transposed in_c x out_c x k x k) into
 * packed_floats floats; conv then computes y = act_a * v + act_b * |v| for
 * v = conv (x, w) + bias (bias NULL: 0), x and y a batch of n in the
 * session layout (C, N, H, W). A transposed convolution may be asked for
 * a larger output than (in - 1) * s - 2p + k (the gradient of a
 * convolution whose input was not a multiple of the stride). */
typedef struct narrow_geom {
  int in_c, in_h, in_w;
  int out_c, out_h, out_w;
  int k, s, p;
  int transposed;
  int vec; /* 0: the widest vectors this CPU runs; 8: the AVX2 build (tests) */
} narrow_geom;
int ae_narrow_fits (const narrow_geom *g);
size_t ae_narrow_packed_floats (const narrow_geom *g);
size_t ae_narrow_scratch (const narrow_geom *g);
void ae_narrow_pack (const narrow_geom *g, const float *w, float *packed);
void ae_narrow_conv (const narrow_geom *g, const float *packed, const float *bias, float act_a,
                     float act_b, const float *x, float *y, int n, float *scratch);
/* winograd.c: a 3x3, stride-1 convolution with one pixel of zero padding
 * (output the input's size) by F(4x4, 3x3). fits says whether it pays;
 * pack transforms the layer's weights (out_c x in_c x 3 x 3) into
 * packed_floats floats; conv computes y = act_a * v + act_b * |v| for
 * v = conv (x, w) + bias (bias NULL: 0) on a batch of n in (C, N, H, W). */
typedef struct wino_geom {
  int in_c, out_c, h, w;
  int vec; /* 0: the widest vectors this CPU runs; 8: the AVX2 build (tests) */
} wino_geom;
int ae_wino_fits (const wino_geom *g);
size_t ae_wino_packed_floats (const wino_geom *g);
size_t ae_wino_scratch (const wino_geom *g);
void ae_wino_pack (const wino_geom *g, const float *w, float *packed);
void ae_wino_conv (const wino_geom *g, const float *packed, const float *bias, float act_a,
                   float act_b, const float *x, float *y, int n, float *scratch);
/* Output rows [y0, y1) of one image of height g->h. */
void ae_wino_conv_rows (const wino_geom *g, const float *packed, const float *bias, float act_a,
                        float act_b, const rows_in *x, const rows_out *y, int y0, int y1,
                        float *scratch);

/* layers.c: whether the layer, with these input and output shapes, runs
 * its forward pass (fwd) or its input gradient (back: the transposed
 * operation, same weights) on narrow.c; g: the geometry there. */
int layer_narrow_geom (const ae_layer *l, const int *in, const int *out, int back,
                       narrow_geom *g);
/* layers.c: whether the layer's forward pass runs on winograd.c. */
int layer_wino_geom (const ae_layer *l, const int *in, const int *out, wino_geom *g);
/* layers.c: layer l's weights for winograd.c in p (p->w holds
 * ae_wino_packed_floats), repacked whenever the model changed since. */
const float *layer_wino_weights (const ae_model *m, const ae_layer *l, weight_pack *p,
                                 const wino_geom *g);
/* layers.c: the bias of a linear convolution followed by a noise layer,
 * folded for noise level sigma (how inference runs the pair). */
void layer_fold_noise (const ae_model *m, const ae_layer *conv, const ae_layer *noise, float sigma,
                       float *bias);

/* direct.c: convolution without im2col, for forward passes. fits says
 * whether it applies (and pays); scratch is the floats it needs. y gets the
 * bias added, then the activation act_a * y + act_b * |y| (linear: 1, 0). */
int ae_direct_conv_fits (const conv_geom *g);
size_t ae_direct_conv_scratch (const conv_geom *g);
void ae_direct_conv (const conv_geom *g, int out_c, const float *w, const float *bias, float act_a,
                     float act_b, const float *x, float *y, float *scratch);
/* Output rows [oy0, oy1) of one image (g->n 1, g->h its full height). */
void ae_direct_conv_rows (const conv_geom *g, int out_c, const float *w, const float *bias,
                          float act_a, float act_b, const rows_in *x, const rows_out *y, int oy0,
                          int oy1, float *scratch);

/* stripes.c: ae_stripes_new with pieces of piece_rows own rows (0: planned
 * from the model; tests ask for short ones). */
#define AE_STRIPE_PIECE_FLOATS ((size_t) 1 << 19) /* the planned pieces' largest activation */
ae_stripes *ae_stripes_new_pieces (const ae_model *model, int height, int width, int threads,
                                   int piece_rows, ae_error *err);
int ae_stripes_piece_rows (const ae_stripes *s);

/* rowstream.c: a fully convolutional model's output rows [y0, y1) of an
 * h x w frame, computed down the frame `chunk` rows at a time (0: planned),
 * no row twice (see the file). NULL (AE_E_ARG) for models with layers its
 * row kernels do not run; ae_rowstream_fits says beforehand. */
#define AE_STREAM_STEP_FLOATS ((size_t) 1 << 17) /* the largest layer's rows per step */
typedef struct ae_rowstream ae_rowstream;
int ae_rowstream_fits (const ae_model *m, int h, int w);
ae_rowstream *ae_rowstream_new (const ae_model *m, int h, int w, int y0, int y1, int chunk,
                                ae_error *err);
int ae_rowstream_chunk (const ae_rowstream *r);
void ae_rowstream_set_noise (ae_rowstream *r, float sigma);
/* Reads the C x h x w frame `in`, writes rows [y0, y1) of `out` (the same
 * shape), calling after (ctx, a, b) as each step's rows [a, b) are done. */
void ae_rowstream_run (ae_rowstream *r, const float *in, float *out, ae_rows_fn after, void *ctx);
void ae_rowstream_free (ae_rowstream *r);

/* shards.c: data-parallel training steps over `workers` threads. */
/* pool.c: worker threads running fn (ctx, i) for i < active on each
 * ae_pool_run; i = 0 on the caller's thread. */
typedef void (*ae_pool_fn) (void *ctx, int index);
typedef struct ae_pool ae_pool;
ae_pool *ae_pool_new (int threads, ae_pool_fn fn, void *ctx, ae_error *err);
int ae_pool_size (const ae_pool *p);
void ae_pool_run (ae_pool *p, int active);
void ae_pool_free (ae_pool *p);

typedef struct ae_shards ae_shards;
ae_shards *ae_shards_new (ae_model *m, int workers, int batch, int h, int w, ae_loss loss,
                          int window, uint64_t seed, ae_error *err);
void ae_shards_free (ae_shards *p);
/* Splits a batch of n over the shards; returns how many are used (-1 on error). */
int ae_shards_split (ae_shards *p, int n, ae_error *err);
/* Shard k's sample count, the CNHW buffers to fill with its samples and
 * their noise levels (for noise layers). */
void ae_shards_buffers (ae_shards *p, int k, int *n, float **input, float **target, float **noise);
/* Forward, loss and backward on every shard; leaves the batch's gradient in
 * grads and returns the batch loss (reconstruction mean + KL term). */
double ae_shards_step (ae_shards *p, float kl_scale, float *grads);

/* loss.c: value and gradient on CNHW tensors with `planes` images of h x w. */
double ae_loss_eval (ae_loss kind, const float *y, const float *t, size_t planes, int h, int w,
                     int window, float *grad, float *scratch);
size_t ae_loss_scratch_floats (ae_loss kind, int h, int w);

/* Layout helpers. */
void ae_cnhw_from_nchw (const float *src, float *dst, int n, int c, size_t hw);
void ae_nchw_from_cnhw (const float *src, float *dst, int n, int c, size_t hw);

#endif /* AE_NN_H */
