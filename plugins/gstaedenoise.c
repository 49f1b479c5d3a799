/* aedenoise: learned denoising of the luma with an autoencoder.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
/**
 * SECTION:element-aedenoise
 * @title: aedenoise
 *
 * Removes noise from video with a denoising autoencoder (a model trained by
 * `ae-train --task denoise`, or the small embedded default). The model works
 * on the luma only:
 *
 * - GRAY8 and the YUV formats: the Y plane is replaced by the denoised luma;
 *   the chroma planes pass through unchanged.
 * - RGB formats: the BT.601 luma is computed, denoised, and the change is
 *   added equally to R, G and B, which leaves BT.601 chroma (B-Y, R-Y) as it
 *   was, except where a component clips at 0 or 255. Alpha passes through.
 *
 * Any frame size works, odd sizes too: a fully convolutional model needs
 * sides that are multiples of its size multiple (2 for the default), so the
 * luma is padded by repeating the last row and column and the result is
 * cropped back. #GstAeDenoise:strength blends the result with the input;
 * at 0 the element is in passthrough and costs nothing.
 *
 * #GstAeDenoise:temporal adds a motion-adaptive recursive filter for
 * static-camera video: the denoised luma is averaged with the previous
 * frame's result where the two agree to within the measured noise, and
 * taken as it is where they differ (motion), so moving edges leave no
 * trails. The history restarts on new caps, a flush, a new segment, a
 * DISCONT or GAP buffer or a gap event, and after any frame the element
 * leaves untouched.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 v4l2src ! videoconvert ! aedenoise ! videoconvert ! autovideosink
 * ]| Denoises a camera with the embedded default model.
 * |[
 * gst-launch-1.0 filesrc location=noisy.mkv ! decodebin ! videoconvert ! \
 *     aedenoise model=photos.aem strength=0.7 threads=2 ! videoconvert ! \
 *     x264enc ! matroskamux ! filesink location=clean.mkv
 * ]| Denoises a file with a trained model, keeping 30% of the original.
 * |[
 * gst-launch-1.0 v4l2src ! videoconvert ! aedenoise temporal=0.8 ! videoconvert ! \
 *     autovideosink
 * ]| Denoises a static camera over time as well as in space.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstaedenoise.h"

#include "aecommon.h"

#include <string.h>

GST_DEBUG_CATEGORY_STATIC (gst_ae_denoise_debug);
#define GST_CAT_DEFAULT gst_ae_denoise_debug

#define DEFAULT_PRESET GST_AE_DENOISE_PRESET_FAST
#define DEFAULT_STRENGTH 1.0
#define DEFAULT_THREADS 0
#define DEFAULT_ADAPTIVE TRUE
#define DEFAULT_TEMPORAL 0.0
#define DEFAULT_SIGMA -1.0 /* measure every frame */
/* Adaptive strength: off below GATE_LOW levels of measured noise (of 255),
 * full from GATE_HIGH. Clean photos measure 1-2 levels. */
#define GATE_LOW 2.0
#define GATE_HIGH 5.0
#define MAX_THREADS 256

enum
{
  PROP_0,
  PROP_MODEL,
  PROP_STRENGTH,
  PROP_THREADS,
  PROP_PRESET,
  PROP_ADAPTIVE,
  PROP_NOISE_LEVEL,
  PROP_TEMPORAL,
  PROP_SIGMA,
};

struct _GstAeDenoise
{
  GstVideoFilter parent;

  GstAeModelSlot slot;

  /* Properties (object lock). */
  gdouble strength;
  GstAeDenoisePreset preset;
  gboolean adaptive;
  gdouble temporal;
  gdouble sigma;          /* told to noise-conditioned models; < 0: the measured level */
  gboolean history_stale; /* events and passthrough: the next frame restarts the history */
  gdouble noise_level; /* last frame's, in levels of 255 */
  gint threads;
  gboolean threads_pending; /* the streaming thread rebuilds its stripes */
  /* Read by the hot-swap check on the loader thread (object lock). */
  gboolean running, have_caps;
  gint caps_width, caps_height;

  /* Streaming thread. */
  gint width, height; /* frame */
  gint pw, ph;        /* network input: the frame padded to the model's multiple */
  ae_stripes *stripes;
  float *input;    /* pw x ph */
  float *luma;     /* width x height, only when padding */
  float *denoised; /* width x height, only when padding */
  /* temporal > 0: the last output's denoised luma (before the strength
   * mix) and this frame's; they swap after every frame. */
  float *history, *blended; /* width x height */
  gboolean have_history;
  /* The frame's noise, measured on the stripes' threads. */
  ae_noise_hist noise;
  GMutex noise_lock;
};

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink", GST_PAD_SINK,
    GST_PAD_ALWAYS, GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (GST_AE_VIDEO_FORMATS)));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src", GST_PAD_SRC,
    GST_PAD_ALWAYS, GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (GST_AE_VIDEO_FORMATS)));

/* The embedded model of each preset (plugins/models/). */
static const gchar *const preset_resources[] = { "denoise-default.aem", "denoise-quality.aem" };

GType
gst_ae_denoise_preset_get_type (void)
{
  static gsize id = 0;
  static const GEnumValue values[] = {
    { GST_AE_DENOISE_PRESET_FAST, "Real-time model (denoise-default.aem)", "fast" },
    { GST_AE_DENOISE_PRESET_QUALITY, "Larger, slower, stronger model (denoise-quality.aem)",
      "quality" },
    { 0, NULL, NULL },
  };
  if (g_once_init_enter (&id))
    g_once_init_leave (&id, g_enum_register_static ("GstAeDenoisePreset", values));
  return (GType) id;
}

#define gst_ae_denoise_parent_class parent_class
G_DEFINE_TYPE (GstAeDenoise, gst_ae_denoise, GST_TYPE_VIDEO_FILTER);
GST_ELEMENT_REGISTER_DEFINE (aedenoise, "aedenoise", GST_RANK_NONE, GST_TYPE_AE_DENOISE);

/* ---- Shapes and planes ------------------------------------------------------------ */

static gint
round_up (gint v, gint k)
{
  return k > 1 ? (v + k - 1) / k * k : v;
}

/* Fully convolutional models run on the frame padded to their multiple;
 * any other model only on its own size, which the session check enforces. */
static void
network_size (const ae_model *m, gint w, gint h, gint *pw, gint *ph)
{
  gint k = ae_model_is_fully_convolutional (m) ? ae_model_size_multiple (m) : 1;
  *pw = round_up (w, k);
  *ph = round_up (h, k);
}

/* Copies a w x h plane into pw x ph, repeating the last column and row:
 * edge replication keeps the padding as smooth as the image, so the
 * network sees no artificial edge next to the real pixels. */
static void
pad_plane (const float *src, gint w, gint h, float *dst, gint pw, gint ph)
{
  for (gint y = 0; y < ph; y++) {
    const float *row = src + (gsize) MIN (y, h - 1) * w;
    float *out = dst + (gsize) y * pw;
    memcpy (out, row, (gsize) w * sizeof (float));
    for (gint x = w; x < pw; x++)
      out[x] = row[w - 1];
  }
}

static void
crop_plane (const float *src, gint pw, float *dst, gint w, gint h)
{
  for (gint y = 0; y < h; y++)
    memcpy (dst + (gsize) y * w, src + (gsize) y * pw, (gsize) w * sizeof (float));
}

/* ---- Model and work buffers ------------------------------------------------------- */

static void
release_work (GstAeDenoise *self)
{
  ae_stripes_free (self->stripes);
  self->stripes = NULL;
  g_clear_pointer (&self->input, g_free);
  g_clear_pointer (&self->luma, g_free);
  g_clear_pointer (&self->denoised, g_free);
  g_clear_pointer (&self->history, g_free);
  g_clear_pointer (&self->blended, g_free);
  self->have_history = FALSE;
}

/* The temporal planes: at caps time, or once when temporal is switched on
 * while playing; never again per frame. */
static void
ensure_history (GstAeDenoise *self)
{
  if (self->history || self->width <= 0)
    return;
  self->history = g_new (float, (gsize) self->width * self->height);
  self->blended = g_new (float, (gsize) self->width * self->height);
  self->have_history = FALSE;
}

/* GstAeModelCheck: at start, and for hot-swaps on the loader thread. A
 * model fits when it takes one channel and a session can be built for the
 * current frame size (or, before caps, for its own size), which also
 * proves that its output has the input's shape. */
static gboolean
gst_ae_denoise_check_model (GstElement *element, const ae_model *m, GError **error)
{
  GstAeDenoise *self = GST_AE_DENOISE (element);
  int c, mh, mw;
  gint pw, ph;
  ae_error err = { AE_OK, "" };

  ae_model_input_shape (m, &c, &mh, &mw);
  if (c != 1) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
                 "the model takes %d channels; aedenoise denoises the luma and needs 1", c);
    return FALSE;
  }
  GST_OBJECT_LOCK (self);
  gint w = self->have_caps ? self->caps_width : mw;
  gint h = self->have_caps ? self->caps_height : mh;
  GST_OBJECT_UNLOCK (self);
  network_size (m, w, h, &pw, &ph);
  ae_session *s = ae_session_new (m, 1, ph, pw, &err);
  if (!s) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
                 "the model cannot denoise %dx%d frames: %s", w, h, err.message);
    return FALSE;
  }
  ae_session_free (s);
  return TRUE;
}

/* Worker threads for the frame stripes (gst_ae_stripe_threads). */
static gint
gst_ae_denoise_take_threads (GstAeDenoise *self)
{
  GST_OBJECT_LOCK (self);
  gint threads = self->threads;
  self->threads_pending = FALSE;
  GST_OBJECT_UNLOCK (self);
  return gst_ae_stripe_threads (threads, MAX_THREADS);
}

/* Builds the stripes and float planes for the active model and the
 * negotiated size: the only place that allocates, so frames never do. */
static gboolean
gst_ae_denoise_configure (GstAeDenoise *self)
{
  const ae_model *m = self->slot.active;
  ae_error err = { AE_OK, "" };

  release_work (self);
  if (!m || self->width <= 0)
    return TRUE; /* again when both model and caps are known */
  gint threads = gst_ae_denoise_take_threads (self);
  network_size (m, self->width, self->height, &self->pw, &self->ph);
  self->stripes = ae_stripes_new (m, self->ph, self->pw, threads, &err);
  if (!self->stripes) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
                       ("The model cannot denoise %dx%d frames: %s", self->width, self->height,
                        err.message), ("model %s", ae_model_spec (m)));
    return FALSE;
  }
  self->input = g_new (float, (gsize) self->pw * self->ph);
  if (self->pw != self->width || self->ph != self->height) {
    self->luma = g_new (float, (gsize) self->width * self->height);
    self->denoised = g_new (float, (gsize) self->width * self->height);
  }
  GST_OBJECT_LOCK (self);
  gboolean temporal = self->temporal > 0.0;
  GST_OBJECT_UNLOCK (self);
  if (temporal)
    ensure_history (self);
  GST_DEBUG_OBJECT (self, "%dx%d frames, network %dx%d in %d stripes, model %s", self->width,
                    self->height, self->pw, self->ph, ae_stripes_count (self->stripes),
                    ae_model_spec (m));
  return TRUE;
}

/* Adopts a hot-swapped model or a new thread count before a frame.
 * Stripes point at their model, so they go before the old model. */
static gboolean
gst_ae_denoise_update (GstAeDenoise *self)
{
  gboolean changed;
  ae_model *old = gst_ae_model_slot_swap (&self->slot, &changed);
  GST_OBJECT_LOCK (self);
  gboolean rethread = self->threads_pending;
  GST_OBJECT_UNLOCK (self);
  if (!changed)
    return rethread ? gst_ae_denoise_configure (self) : TRUE;
  release_work (self);
  ae_model_free (old);
  GST_INFO_OBJECT (self, "model changed to %s", ae_model_spec (self->slot.active));
  return gst_ae_denoise_configure (self);
}

/* ---- GstBaseTransform / GstVideoFilter -------------------------------------------- */

static gboolean
gst_ae_denoise_start (GstBaseTransform *trans)
{
  GstAeDenoise *self = GST_AE_DENOISE (trans);
  GError *error = NULL;

  if (!gst_ae_model_slot_load (&self->slot, GST_ELEMENT (self), &error)) {
    gchar *location = gst_ae_model_slot_dup_location (&self->slot);
    GST_OBJECT_LOCK (self);
    const gchar *resource = preset_resources[self->preset];
    GST_OBJECT_UNLOCK (self);
    gchar *origin = gst_ae_model_origin (location, resource);
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
                       ("Could not load the denoising model: %s", error->message),
                       ("model: %s", origin));
    g_free (origin);
    g_free (location);
    g_error_free (error);
    return FALSE;
  }
  GST_INFO_OBJECT (self, "model %s", ae_model_spec (self->slot.active));
  GST_OBJECT_LOCK (self);
  self->running = TRUE;
  GST_OBJECT_UNLOCK (self);
  return TRUE;
}

static gboolean
gst_ae_denoise_stop (GstBaseTransform *trans)
{
  GstAeDenoise *self = GST_AE_DENOISE (trans);
  GST_OBJECT_LOCK (self);
  self->running = self->have_caps = FALSE;
  GST_OBJECT_UNLOCK (self);
  release_work (self);
  gst_ae_model_slot_unload (&self->slot);
  self->width = self->height = 0;
  return TRUE;
}

static gboolean
gst_ae_denoise_set_info (GstVideoFilter *filter, GstCaps *incaps, GstVideoInfo *in_info,
                         GstCaps *outcaps, GstVideoInfo *out_info)
{
  GstAeDenoise *self = GST_AE_DENOISE (filter);
  (void) incaps;
  (void) outcaps;
  (void) out_info;
  self->width = GST_VIDEO_INFO_WIDTH (in_info);
  self->height = GST_VIDEO_INFO_HEIGHT (in_info);
  GST_OBJECT_LOCK (self);
  self->have_caps = TRUE;
  self->caps_width = self->width;
  self->caps_height = self->height;
  GST_OBJECT_UNLOCK (self);
  return gst_ae_denoise_configure (self);
}

/* Drives the controllable strength, as videobalance does; runs also in
 * passthrough, so a controlled strength can leave 0 again. */
static void
gst_ae_denoise_before_transform (GstBaseTransform *trans, GstBuffer *buffer)
{
  GstClockTime st = gst_segment_to_stream_time (&trans->segment, GST_FORMAT_TIME,
                                                GST_BUFFER_PTS (buffer));
  if (GST_CLOCK_TIME_IS_VALID (st))
    gst_object_sync_values (GST_OBJECT (trans), st);
}

/* The share of the denoised luma for a frame with this much noise (full
 * when too small to measure). */
static gfloat
adaptive_gain (gdouble noise_level)
{
  if (noise_level < 0.0)
    return 1.0f;
  return (gfloat) CLAMP ((noise_level - GATE_LOW) / (GATE_HIGH - GATE_LOW), 0.0, 1.0);
}

/* One frame's per-row work, run on the stripes' threads. */
typedef struct {
  GstAeDenoise *self;
  GstVideoFrame *frame;
  float *luma;
  const float *denoised;
  gfloat strength;
  /* Temporal filtering only. */
  const float *history; /* NULL: the history restarts with this frame */
  float *blended;
  gfloat temporal, sigma;
  gint width, height;
} RowJob;

static void
read_rows (void *ctx, int y0, int y1)
{
  RowJob *job = ctx;
  gst_ae_frame_read_luma_rows (job->frame, job->luma, y0, y1);
}

static void
write_rows (void *ctx, int y0, int y1)
{
  RowJob *job = ctx;
  gst_ae_frame_write_luma_rows (job->frame, job->luma, job->denoised, job->strength, y0, y1);
}

/* Blends the denoised rows with the history and writes the result. The
 * stripes cover the network's rows, which padding can make more than the
 * frame's. */
static void
temporal_rows (void *ctx, int y0, int y1)
{
  RowJob *job = ctx;
  y1 = MIN (y1, job->height);
  if (y0 >= y1)
    return;
  if (job->history)
    ae_temporal_blend_rows (job->denoised, job->history, job->blended, job->width, job->height,
                            job->temporal, job->sigma, y0, y1);
  else
    memcpy (job->blended + (gsize) y0 * job->width, job->denoised + (gsize) y0 * job->width,
            (gsize) (y1 - y0) * job->width * sizeof (float));
  gst_ae_frame_write_luma_rows (job->frame, job->luma, job->blended, job->strength, y0, y1);
}

/* The noise samples of the rows a stripe owns, added to the frame's. */
static void
noise_rows (void *ctx, int y0, int y1)
{
  RowJob *job = ctx;
  GstAeDenoise *self = job->self;
  ae_noise_hist part;
  ae_noise_hist_clear (&part);
  ae_noise_hist_rows (&part, job->luma, self->width, self->height, y0, MIN (y1, self->height));
  g_mutex_lock (&self->noise_lock);
  ae_noise_hist_add (&self->noise, &part);
  g_mutex_unlock (&self->noise_lock);
}

/* Measures the frame's noise for the adaptive strength, the temporal gate
 * and noise-conditioned models, on the stripes' threads (on the streaming
 * thread alone it held the other core idle: 5 % of a 720p frame);
 * publishes it as noise-level. Returns -1 for frames under 3x3. */
static gdouble
measure_noise (GstAeDenoise *self, RowJob *job)
{
  ae_noise_hist_clear (&self->noise);
  ae_stripes_for_rows (self->stripes, noise_rows, job);
  gdouble level = ae_noise_hist_sigma (&self->noise);
  level = level < 0.0 ? -1.0 : 255.0 * level;
  GST_OBJECT_LOCK (self);
  self->noise_level = level;
  GST_OBJECT_UNLOCK (self);
  return level;
}

/* Temporal filtering of the denoised luma, then the write-back, on the
 * stripes' threads; this frame's result becomes the history. (Not fused
 * with the network's pieces: a row's motion gate reads the rows around it.) */
static void
temporal_write (GstAeDenoise *self, RowJob *job, gfloat temporal, gdouble level)
{
  ensure_history (self);
  job->history = self->have_history ? self->history : NULL;
  job->blended = self->blended;
  job->temporal = temporal;
  job->sigma = (gfloat) MAX (level, 0.0) / 255.0f;
  job->width = self->width;
  job->height = self->height;
  ae_stripes_for_rows (self->stripes, temporal_rows, job);
  self->blended = self->history;
  self->history = job->blended;
  self->have_history = TRUE;
}

/* A padded frame: the network runs on a copy, the result is cropped, then
 * written back (the stripes cover the padded rows, not the frame's). */
static void
denoise_padded (GstAeDenoise *self, GstVideoFrame *frame, RowJob *job, gfloat temporal,
                gdouble level)
{
  pad_plane (job->luma, self->width, self->height, self->input, self->pw, self->ph);
  crop_plane (ae_stripes_forward (self->stripes, self->input), self->pw, self->denoised,
              self->width, self->height);
  job->denoised = self->denoised;
  if (temporal > 0.0f)
    temporal_write (self, job, temporal, level);
  else
    gst_ae_frame_write_luma (frame, job->luma, job->denoised, job->strength);
}

/* Reads the luma, runs the network and writes the change back. Without
 * padding (sides already multiples of the model's), the network reads the
 * frame's luma in place, its output is used directly, and the stripes'
 * threads also read and write the frame. With `adaptive`, a clean frame is
 * left as it is (and the temporal history restarts). */
static void
denoise_frame (GstAeDenoise *self, GstVideoFrame *frame, gfloat strength, gboolean adaptive,
               gfloat temporal, gdouble sigma)
{
  gboolean padded = self->luma != NULL;
  RowJob job = { .self = self, .frame = frame, .luma = padded ? self->luma : self->input,
                 .strength = strength };
  gdouble level = -1.0;
  if (padded)
    gst_ae_frame_read_luma (frame, job.luma);
  else
    ae_stripes_for_rows (self->stripes, read_rows, &job);
  gboolean conditioned = ae_model_is_noise_conditioned (self->slot.active);
  gboolean told_measured = conditioned && sigma < 0.0;
  if (adaptive || temporal > 0.0f || told_measured)
    level = measure_noise (self, &job);
  if (conditioned) /* the network is told how strong the noise is */
    ae_stripes_set_noise (self->stripes, (float) (told_measured ? MAX (level, 0.0) : sigma) / 255.0f);
  if (adaptive)
    job.strength *= adaptive_gain (level);
  if (temporal <= 0.0f || job.strength <= 0.0f)
    self->have_history = FALSE;
  if (job.strength <= 0.0f)
    return;
  if (padded) {
    denoise_padded (self, frame, &job, temporal, level);
    return;
  }
  if (temporal > 0.0f) {
    job.denoised = ae_stripes_forward (self->stripes, self->input);
    temporal_write (self, &job, temporal, level);
    return;
  }
  /* Each piece of rows is written back as soon as the network has it. */
  job.denoised = ae_stripes_output (self->stripes);
  ae_stripes_forward_rows (self->stripes, self->input, write_rows, &job);
}

static GstFlowReturn
gst_ae_denoise_transform_frame_ip (GstVideoFilter *filter, GstVideoFrame *frame)
{
  GstAeDenoise *self = GST_AE_DENOISE (filter);

  if (!gst_ae_denoise_update (self))
    return GST_FLOW_ERROR;
  if (!self->stripes) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, ("No model configured for the stream."), (NULL));
    return GST_FLOW_NOT_NEGOTIATED;
  }
  GST_OBJECT_LOCK (self);
  gfloat strength = (gfloat) self->strength;
  gboolean adaptive = self->adaptive;
  gfloat temporal = (gfloat) self->temporal;
  gdouble sigma = self->sigma;
  gboolean stale = self->history_stale;
  self->history_stale = FALSE;
  GST_OBJECT_UNLOCK (self);
  /* A jump in the stream: the previous frame says nothing about this one. */
  if (stale || GST_BUFFER_FLAG_IS_SET (frame->buffer, GST_BUFFER_FLAG_DISCONT)
      || GST_BUFFER_FLAG_IS_SET (frame->buffer, GST_BUFFER_FLAG_GAP))
    self->have_history = FALSE;
  denoise_frame (self, frame, strength, adaptive, temporal, sigma);
  return GST_FLOW_OK;
}

/* Flushes, new segments and gaps restart the temporal history; the flag is
 * read by the next frame (FLUSH_STOP may come from another thread). */
static gboolean
gst_ae_denoise_sink_event (GstBaseTransform *trans, GstEvent *event)
{
  switch (GST_EVENT_TYPE (event)) {
  case GST_EVENT_FLUSH_STOP:
  case GST_EVENT_SEGMENT:
  case GST_EVENT_GAP:
    GST_OBJECT_LOCK (trans);
    GST_AE_DENOISE (trans)->history_stale = TRUE;
    GST_OBJECT_UNLOCK (trans);
    break;
  default:
    break;
  }
  return GST_BASE_TRANSFORM_CLASS (parent_class)->sink_event (trans, event);
}

/* ---- Properties ------------------------------------------------------------------- */

static void
set_model (GstAeDenoise *self, const gchar *location)
{
  /* While running, the new model loads in the background and is swapped
   * in between two frames; otherwise start loads it. */
  GST_OBJECT_LOCK (self);
  gboolean running = self->running;
  GST_OBJECT_UNLOCK (self);
  gst_ae_model_slot_set_location (&self->slot, GST_ELEMENT (self), location, running);
}

static void
set_preset (GstAeDenoise *self, GstAeDenoisePreset preset)
{
  GST_OBJECT_LOCK (self);
  self->preset = preset;
  gboolean running = self->running;
  GST_OBJECT_UNLOCK (self);
  gst_ae_model_slot_set_resource (&self->slot, GST_ELEMENT (self), preset_resources[preset],
                                  running);
}

static void
set_strength (GstAeDenoise *self, gdouble strength)
{
  GST_OBJECT_LOCK (self);
  self->strength = strength;
  /* Passthrough frames never reach the history. */
  if (strength <= 0.0)
    self->history_stale = TRUE;
  GST_OBJECT_UNLOCK (self);
  /* Takes the object lock itself. */
  gst_base_transform_set_passthrough (GST_BASE_TRANSFORM (self), strength <= 0.0);
}

static void
gst_ae_denoise_set_property (GObject *object, guint prop_id, const GValue *value,
                             GParamSpec *pspec)
{
  GstAeDenoise *self = GST_AE_DENOISE (object);
  switch (prop_id) {
  case PROP_MODEL:
    set_model (self, g_value_get_string (value));
    break;
  case PROP_STRENGTH:
    set_strength (self, g_value_get_double (value));
    break;
  case PROP_THREADS:
    GST_OBJECT_LOCK (self);
    self->threads = g_value_get_int (value);
    self->threads_pending = TRUE;
    GST_OBJECT_UNLOCK (self);
    break;
  case PROP_PRESET:
    set_preset (self, g_value_get_enum (value));
    break;
  case PROP_ADAPTIVE:
    GST_OBJECT_LOCK (self);
    self->adaptive = g_value_get_boolean (value);
    GST_OBJECT_UNLOCK (self);
    break;
  case PROP_TEMPORAL:
    GST_OBJECT_LOCK (self);
    self->temporal = g_value_get_double (value);
    GST_OBJECT_UNLOCK (self);
    break;
  case PROP_SIGMA:
    GST_OBJECT_LOCK (self);
    self->sigma = g_value_get_double (value);
    GST_OBJECT_UNLOCK (self);
    break;
  default:
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    break;
  }
}

static void
gst_ae_denoise_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  GstAeDenoise *self = GST_AE_DENOISE (object);
  switch (prop_id) {
  case PROP_MODEL:
    g_value_take_string (value, gst_ae_model_slot_dup_location (&self->slot));
    break;
  case PROP_STRENGTH:
    GST_OBJECT_LOCK (self);
    g_value_set_double (value, self->strength);
    GST_OBJECT_UNLOCK (self);
    break;
  case PROP_THREADS:
    GST_OBJECT_LOCK (self);
    g_value_set_int (value, self->threads);
    GST_OBJECT_UNLOCK (self);
    break;
  case PROP_PRESET:
    GST_OBJECT_LOCK (self);
    g_value_set_enum (value, self->preset);
    GST_OBJECT_UNLOCK (self);
    break;
  case PROP_ADAPTIVE:
    GST_OBJECT_LOCK (self);
    g_value_set_boolean (value, self->adaptive);
    GST_OBJECT_UNLOCK (self);
    break;
  case PROP_NOISE_LEVEL:
    GST_OBJECT_LOCK (self);
    g_value_set_double (value, self->noise_level);
    GST_OBJECT_UNLOCK (self);
    break;
  case PROP_TEMPORAL:
    GST_OBJECT_LOCK (self);
    g_value_set_double (value, self->temporal);
    GST_OBJECT_UNLOCK (self);
    break;
  case PROP_SIGMA:
    GST_OBJECT_LOCK (self);
    g_value_set_double (value, self->sigma);
    GST_OBJECT_UNLOCK (self);
    break;
  default:
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    break;
  }
}

static void
gst_ae_denoise_finalize (GObject *object)
{
  GstAeDenoise *self = GST_AE_DENOISE (object);
  release_work (self);
  gst_ae_model_slot_clear (&self->slot);
  g_mutex_clear (&self->noise_lock);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

#define RW_FLAGS (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS)

static void
install_properties (GObjectClass *oc)
{
  g_object_class_install_property (oc, PROP_MODEL,
      g_param_spec_string ("model", "Model",
          "Denoising model (.aem from ae-train --task denoise: one channel, fully "
          "convolutional); unset or empty: the embedded default. Can be changed while "
          "PLAYING (loaded in the background; a model that does not load or fit is refused "
          "with a warning and the previous one stays)",
          NULL, RW_FLAGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (oc, PROP_STRENGTH,
      g_param_spec_double ("strength", "Strength",
          "Mix of denoised and original luma: 1 = fully denoised, 0 = passthrough",
          0.0, 1.0, DEFAULT_STRENGTH,
          RW_FLAGS | GST_PARAM_MUTABLE_PLAYING | GST_PARAM_CONTROLLABLE));
  g_object_class_install_property (oc, PROP_THREADS,
      g_param_spec_int ("threads", "Threads",
          "Worker threads, each denoising a horizontal stripe of the frame; 0: one per CPU "
          "core. With more than one, OpenBLAS is set to one thread for the whole process "
          "(its count is process-wide), since stripes use the cores better",
          0, MAX_THREADS, DEFAULT_THREADS, RW_FLAGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (oc, PROP_PRESET,
      g_param_spec_enum ("preset", "Preset",
          "Embedded model used while model is unset: fast (real time at 720p on two cores) "
          "or quality (several times slower, stronger). Can be changed while PLAYING",
          GST_TYPE_AE_DENOISE_PRESET, DEFAULT_PRESET, RW_FLAGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (oc, PROP_ADAPTIVE,
      g_param_spec_boolean ("adaptive", "Adaptive",
          "Measure each frame's noise level (see noise-level) and scale the strength by it: "
          "frames under 2 levels of noise (of 255; clean video) are left untouched, frames "
          "over 5 get the full strength",
          DEFAULT_ADAPTIVE, RW_FLAGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (oc, PROP_NOISE_LEVEL,
      g_param_spec_double ("noise-level", "Noise level",
          "Standard deviation of the last frame's luma noise in levels of 255, as measured "
          "while adaptive is on, temporal is over 0 or the model is noise-conditioned and sigma "
          "is -1 (the model is then told this level) "
          "(robust median estimate: edges and texture barely count); -1: frames under 3x3 "
          "cannot be measured",
          -1.0, 255.0, 0.0, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS));
  g_object_class_install_property (oc, PROP_TEMPORAL,
      g_param_spec_double ("temporal", "Temporal",
          "Temporal filtering for static cameras: the share of the previous frame's result "
          "kept where it agrees with this frame's denoised luma to within a quarter of the "
          "measured noise (3x3 mean); falls to 0 (no trails) where they differ by 0.6 times the "
          "noise (motion). "
          "0: off, frames are denoised independently; 1 holds static areas unchanged. "
          "The history restarts on caps, flush, segment, DISCONT, gap and untouched frames",
          0.0, 1.0, DEFAULT_TEMPORAL,
          RW_FLAGS | GST_PARAM_MUTABLE_PLAYING | GST_PARAM_CONTROLLABLE));
  g_object_class_install_property (oc, PROP_SIGMA,
      g_param_spec_double ("sigma", "Sigma",
          "Noise level (standard deviation in levels of 255) that a noise-conditioned model "
          "(ae-info: noise-conditioned, as both embedded models are) is told: higher removes "
          "more, lower keeps more detail, a fixed level keeps the strength from following the "
          "per-frame estimate. -1: the level measured on each frame (noise-level). Blind "
          "models ignore it",
          -1.0, 255.0, DEFAULT_SIGMA,
          RW_FLAGS | GST_PARAM_MUTABLE_PLAYING | GST_PARAM_CONTROLLABLE));
}

static void
gst_ae_denoise_class_init (GstAeDenoiseClass *klass)
{
  GObjectClass *oc = G_OBJECT_CLASS (klass);
  GstElementClass *ec = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *bt = GST_BASE_TRANSFORM_CLASS (klass);
  GstVideoFilterClass *vf = GST_VIDEO_FILTER_CLASS (klass);

  GST_DEBUG_CATEGORY_INIT (gst_ae_denoise_debug, "aedenoise", 0, "autoencoder denoiser");

  oc->set_property = gst_ae_denoise_set_property;
  oc->get_property = gst_ae_denoise_get_property;
  oc->finalize = gst_ae_denoise_finalize;
  install_properties (oc);

  gst_element_class_add_static_pad_template (ec, &sink_template);
  gst_element_class_add_static_pad_template (ec, &src_template);
  gst_element_class_set_static_metadata (ec, "Autoencoder denoiser", "Filter/Effect/Video",
      "Removes noise from the luma with a denoising autoencoder",
      "gst-autoencoder developers");

  bt->start = GST_DEBUG_FUNCPTR (gst_ae_denoise_start);
  bt->stop = GST_DEBUG_FUNCPTR (gst_ae_denoise_stop);
  bt->before_transform = GST_DEBUG_FUNCPTR (gst_ae_denoise_before_transform);
  bt->sink_event = GST_DEBUG_FUNCPTR (gst_ae_denoise_sink_event);
  /* In passthrough (strength 0) the frame is not even looked at. */
  bt->transform_ip_on_passthrough = FALSE;
  vf->set_info = GST_DEBUG_FUNCPTR (gst_ae_denoise_set_info);
  vf->transform_frame_ip = GST_DEBUG_FUNCPTR (gst_ae_denoise_transform_frame_ip);
  gst_type_mark_as_plugin_api (GST_TYPE_AE_DENOISE_PRESET, 0);
}

static void
gst_ae_denoise_init (GstAeDenoise *self)
{
  gst_ae_model_slot_init (&self->slot, preset_resources[DEFAULT_PRESET],
                          gst_ae_denoise_check_model);
  self->preset = DEFAULT_PRESET;
  self->strength = DEFAULT_STRENGTH;
  self->threads = DEFAULT_THREADS;
  self->adaptive = DEFAULT_ADAPTIVE;
  self->temporal = DEFAULT_TEMPORAL;
  self->sigma = DEFAULT_SIGMA;
  g_mutex_init (&self->noise_lock);
}
