/* aeanomaly: anomaly detection from an autoencoder's reconstruction error.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
/**
 * SECTION:element-aeanomaly
 * @title: aeanomaly
 *
 * Scores every frame (or every #GstAeAnomaly:interval-th frame) by how badly
 * an autoencoder trained on normal footage reconstructs it. Higher scores are
 * more anomalous; a frame is anomalous when its score exceeds the threshold,
 * by default the one `ae-train --task anomaly` calibrated on held-out normal
 * frames (metadata `anomaly.threshold`).
 *
 * For each analysed frame the element attaches a GstCustomMeta named
 * "AeAnomalyMeta" (score, threshold, anomalous, frame, regions), one
 * #GstVideoRegionOfInterestMeta of type "anomaly" per region, posts an
 * element message "aeanomaly" and, when a defect starts or ends,
 * "aeanomaly-begin" / "aeanomaly-end". With #GstAeAnomaly:events-location
 * it also writes one JSON Lines record per analysed frame.
 *
 * Without a #GstAeAnomaly:model the element learns online: it collects the
 * first #GstAeAnomaly:learn-frames frames, trains a small fully
 * convolutional model in a background thread while frames keep flowing,
 * calibrates a threshold and starts detecting (message "aeanomaly-learned").
 *
 * Regions: the per-pixel error map is smoothed with a 5x5 box; pixels above
 * the pixel threshold (#GstAeAnomaly:pixel-threshold, by default 4 times the
 * frame threshold) form 8-connected regions; regions smaller than
 * #GstAeAnomaly:min-region-area are dropped, at most 32 (the highest
 * scoring) are reported, in full-frame coordinates.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 v4l2src ! videoconvert ! aeanomaly model=parts.aem output=overlay \
 *     events-location=events.jsonl ! videoconvert ! autovideosink
 * ]| Marks defects on a camera feed and logs every frame's score.
 * |[
 * gst-launch-1.0 -m filesrc location=line.mp4 ! decodebin ! videoconvert ! \
 *     aeanomaly learn-frames=200 save-model=line.aem roi=100,50,320,240 ! fakesink
 * ]| Learns what the first 200 frames look like inside the ROI, saves the
 * model, then reports anomalies on the bus.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstaeanomaly.h"

#include "aecommon.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

GST_DEBUG_CATEGORY_STATIC (gst_ae_anomaly_debug);
#define GST_CAT_DEFAULT gst_ae_anomaly_debug

#define DEFAULT_THRESHOLD (-1.0)
#define DEFAULT_PIXEL_THRESHOLD (-1.0)
#define DEFAULT_INTERVAL 1
#define DEFAULT_OUTPUT GST_AE_ANOMALY_OUTPUT_PASSTHROUGH
#define DEFAULT_MIN_REGION_AREA 16
#define DEFAULT_POST_MESSAGES TRUE
#define DEFAULT_EVENT_FRAMES 1
#define DEFAULT_EVENT_GAP 1
#define DEFAULT_LEARN_FRAMES 100
#define DEFAULT_SMOOTH_RADIUS (-1)
#define DEFAULT_THREADS 0
#define MAX_THREADS 64

/* A model that names no aggregation (older files) scores the mean of the
 * raw map and smooths with a 5x5 box. */
#define MODEL_DEFAULT_AGGREGATE "mean"
#define MODEL_DEFAULT_SMOOTH_RADIUS 2
#define MAX_SMOOTH_RADIUS 64
#define DEFAULT_BORDER (-1)
#define MAX_BORDER 256
#define MAX_CONTRAST_WINDOW 99 /* anomaly.contrast_window, odd */

/* Unset pixel-threshold: with a mean score normal pixels scatter around the
 * frame threshold, so a region must stand well above it; with a max or
 * top-k score the frame threshold already is a level of the smoothed map,
 * and regions appear exactly where the frame is flagged. */
#define PIXEL_THRESHOLD_FACTOR_MEAN 4.0
#define PIXEL_THRESHOLD_FACTOR_PEAK 1.0
#define DEFAULT_SSIM_WINDOW 7

/* Online learning: the offline recipe of docs/inspection.md (fconv, 25
 * epochs of four 64x64 crops per frame, Adam 1e-3, batch 64), which reached
 * 0.03-0.09 higher frame AUROC than the 10 short epochs this mode ran
 * before; learn-epochs trades quality for a sooner start. Random crops keep
 * the cost per sample independent of the frame size. The fconv preset has
 * three stride-2 convolutions. */
#define LEARN_MULTIPLE 8
#define LEARN_CROP 64
#define DEFAULT_LEARN_EPOCHS 25
/* The mixed map: on the inspection benchmark's textures it sees both soft
 * stains (as the squared error does) and worn-away texture (as SSIM does). */
#define DEFAULT_LEARN_MAP GST_AE_ANOMALY_LEARN_MAP_MIX
#define DEFAULT_LEARN_LOSS GST_AE_ANOMALY_LEARN_LOSS_MSE
/* Lost contrast, as the inspection recipe (ae-train --lost-contrast 4):
 * brushed metal's texture worn flat is seen by no reconstruction map. */
#define DEFAULT_LEARN_CONTRAST 4.0
#define MAX_LEARN_CONTRAST 100.0
#define LEARN_REPEAT 4
#define LEARN_MIN_SAMPLES_PER_EPOCH 300 /* few frames: more crops of each */
#define LEARN_BATCH 64
#define LEARN_LR 1e-3f
#define LEARN_VAL_SPLIT 0.1f
#define LEARN_LATENT 16
#define LEARN_PERCENTILE 99.5
#define LEARN_SEED 1
/* Half the samples carry a synthetic defect to repair (ae-train
 * --synthetic-defects): measured +0.03 to +0.13 frame AUROC offline. */
#define LEARN_SYNTHETIC_DEFECTS 0.5f
#define LEARN_MAX_BYTES ((gsize) 512 << 20)
/* Online learning scores like the recommended offline recipe
 * (docs/inspection.md): the peak of the smoothed map. */
#define LEARN_AGGREGATE "max"
#define LEARN_SMOOTH_RADIUS 4
#define LEARN_BORDER 8

enum
{
  PROP_0,
  PROP_MODEL,
  PROP_THRESHOLD,
  PROP_PIXEL_THRESHOLD,
  PROP_INTERVAL,
  PROP_ROI,
  PROP_OUTPUT,
  PROP_MIN_REGION_AREA,
  PROP_POST_MESSAGES,
  PROP_EVENTS_LOCATION,
  PROP_EVENT_FRAMES,
  PROP_EVENT_GAP,
  PROP_LEARN_FRAMES,
  PROP_LEARN_EPOCHS,
  PROP_LEARN_MAP,
  PROP_LEARN_LOSS,
  PROP_LEARN_CONTRAST,
  PROP_SAVE_MODEL,
  PROP_AGGREGATE,
  PROP_SMOOTH_RADIUS,
  PROP_BORDER,
  PROP_MAP_LOCATION,
  PROP_THREADS,
};

typedef struct
{
  gint x, y, w, h, area;
  gdouble score; /* peak of the smoothed map inside */
} GstAeRegion;

/* The result of the last analysed frame; skipped frames carry it. */
typedef struct
{
  gboolean valid;
  guint64 frame;
  gdouble score, threshold, pixel_threshold;
  gboolean anomalous;
  guint n_regions;
  GstAeRegion regions[GST_AE_ANOMALY_MAX_REGIONS];
} GstAeResult;

/* Where a buffer sits in time, for messages. */
typedef struct
{
  guint64 frame;
  GstClockTime pts, duration, stream_time, running_time;
} GstAeMark;

/* How frames map onto the network input. */
typedef struct
{
  gint fw, fh;           /* frame */
  GstVideoRectangle roi; /* analysed rectangle, frame coordinates */
  gint channels;
  gint aw, ah;       /* network input */
  gboolean resample; /* fixed-size model: the roi is scaled to aw x ah */
} GstAeShape;

/* Work buffers for one shape: allocated on caps or model changes only. */
typedef struct
{
  float *crop;    /* channels x rw x rh (resampling only) */
  float *input;   /* channels x aw x ah */
  float *map_a;   /* aw x ah, the raw map at the network's size */
  float *smooth_a; /* aw x ah, map_a smoothed (resampling only) */
  float *map;     /* rw x rh, raw */
  float *smooth;  /* rw x rh */
  float *tmp;     /* rw x (rh + 1), box filter scratch */
  float *scratch; /* error map and score scratch */
  guint8 *visited;
  gint32 *stack;
} GstAeBuffers;

/* The lost-contrast term of a model's map (ae_map_add_lost_contrast). */
typedef struct
{
  float floor, weight; /* weight 0: no term */
  gint radius;
} GstAeContrast;

/* Properties as one frame sees them. */
typedef struct
{
  gdouble threshold, pixel_threshold; /* in force */
  guint interval, min_area, event_frames, event_gap;
  GstAeAnomalyOutput output;
  gboolean post_messages;
  float top_fraction; /* aggregation, as ae_aggregate_from_name gives it */
  gint smooth_radius;
  gint border;
} GstAeSettings;

typedef enum
{
  LEARN_NONE,
  LEARN_COLLECT,
  LEARN_TRAIN,
} GstAeLearnState;

struct _GstAeAnomaly
{
  GstVideoFilter parent;

  GstAeModelSlot slot;

  /* Properties (object lock). */
  gdouble threshold, pixel_threshold;
  guint interval, min_region_area, event_frames, event_gap;
  gint learn_frames, learn_epochs;
  GstAeAnomalyLearnMap learn_map;
  GstAeAnomalyLearnLoss learn_loss;
  gdouble learn_contrast;
  GstAeAnomalyOutput output;
  gboolean post_messages;
  gchar *events_location, *save_model, *roi_str, *aggregate, *map_location;
  gint smooth_radius, border, threads;
  gboolean roi_set, roi_changed;
  GstVideoRectangle roi_prop;
  /* Shared with getters and the hot-swap check (object lock). */
  gdouble model_threshold; /* NaN: none */
  gchar *model_aggregate;  /* the model's anomaly.aggregate, or the default */
  gint model_smooth_radius;
  gint model_border;
  gboolean calibration_warned; /* the uncalibrated-settings warning is out */
  gboolean latent_score;     /* the model's frame score uses its latent */
  gdouble model_map_threshold; /* then: anomaly.map_threshold, the map's own; NaN: none */
  gboolean running, have_caps;
  gint caps_rw, caps_rh;

  /* Streaming thread. */
  GstAeShape shape;
  GstAeBuffers buf;
  ae_stripes *stripes;
  ae_session *encoder;     /* latent scores: the latent of the network input */
  float *latent_scratch;   /* latent scores: ae_latent_mahalanobis scratch */
  float *latent_shift;     /* latent scores of the shift: ae_latent_vectors' output */
  ae_elbo *elbo;           /* elbo score: the map over posterior samples, and the KL */
  ae_frame_scoring scoring; /* the model's frame score */
  ae_loss loss;
  gint ssim_window;
  float mix_scale[2]; /* anomaly.score mix-mse-ssim: the two maps' scales; else 0 */
  GstAeContrast contrast; /* anomaly.contrast_*: the lost-contrast term; weight 0: none */
  guint64 next_frame, frame_index, since_model;
  GstAeResult result;
  gboolean in_event;
  guint run_above, run_below;
  GstAeMark run_start, gap_start, last_mark;
  guint64 event_begin_frame;
  gdouble event_peak;
  FILE *events, *maps;

  /* Online learning (streaming thread; the trainer owns its job). */
  GstAeLearnState learn_state;
  float *learn_x;
  guint learn_count, learn_capacity;
  GThread *trainer;
  gint cancel;
};

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink", GST_PAD_SINK,
    GST_PAD_ALWAYS, GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (GST_AE_VIDEO_FORMATS)));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src", GST_PAD_SRC,
    GST_PAD_ALWAYS, GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (GST_AE_VIDEO_FORMATS)));

#define gst_ae_anomaly_parent_class parent_class
G_DEFINE_TYPE (GstAeAnomaly, gst_ae_anomaly, GST_TYPE_VIDEO_FILTER);
GST_ELEMENT_REGISTER_DEFINE (aeanomaly, "aeanomaly", GST_RANK_NONE, GST_TYPE_AE_ANOMALY);

GType
gst_ae_anomaly_output_get_type (void)
{
  static gsize id = 0;
  static const GEnumValue values[] = {
    { GST_AE_ANOMALY_OUTPUT_PASSTHROUGH, "Frames unchanged", "passthrough" },
    { GST_AE_ANOMALY_OUTPUT_OVERLAY, "Heat map blended in red, regions boxed", "overlay" },
    { GST_AE_ANOMALY_OUTPUT_HEATMAP, "Frame replaced by the anomaly map (luma)", "heatmap" },
    { 0, NULL, NULL },
  };
  if (g_once_init_enter (&id))
    g_once_init_leave (&id, g_enum_register_static ("GstAeAnomalyOutput", values));
  return (GType) id;
}

GType
gst_ae_anomaly_learn_map_get_type (void)
{
  static gsize id = 0;
  static const GEnumValue values[] = {
    { GST_AE_ANOMALY_LEARN_MAP_MSE, "Squared error", "mse" },
    { GST_AE_ANOMALY_LEARN_MAP_SSIM, "1 - SSIM", "ssim" },
    { GST_AE_ANOMALY_LEARN_MAP_MIX, "Squared error and 1 - SSIM, each over its normal mean",
      "mix" },
    { 0, NULL, NULL },
  };
  if (g_once_init_enter (&id))
    g_once_init_leave (&id, g_enum_register_static ("GstAeAnomalyLearnMap", values));
  return (GType) id;
}

GType
gst_ae_anomaly_learn_loss_get_type (void)
{
  static gsize id = 0;
  static const GEnumValue values[] = {
    { GST_AE_ANOMALY_LEARN_LOSS_MSE, "Mean squared error", "mse" },
    { GST_AE_ANOMALY_LEARN_LOSS_SSIM, "1 - SSIM (regular patterns)", "ssim" },
    { 0, NULL, NULL },
  };
  if (g_once_init_enter (&id))
    g_once_init_leave (&id, g_enum_register_static ("GstAeAnomalyLearnLoss", values));
  return (GType) id;
}

/* Tagged "video" only, so GstVideoFilter subclasses downstream copy it. */
static void
register_meta (void)
{
  static gsize done = 0;
  if (g_once_init_enter (&done)) {
    static const gchar *tags[] = { GST_META_TAG_VIDEO_STR, NULL };
    gst_meta_register_custom (GST_AE_ANOMALY_META_NAME, tags, NULL, NULL, NULL);
    g_once_init_leave (&done, 1);
  }
}

/* ---- Small helpers ------------------------------------------------------------------ */

static gint
round_up (gint v, gint k)
{
  return k > 1 ? (v + k - 1) / k * k : v;
}

static void
mark_init (GstAeMark *m)
{
  m->frame = 0;
  m->pts = m->duration = m->stream_time = m->running_time = GST_CLOCK_TIME_NONE;
}

static void
make_mark (GstAeAnomaly *self, GstBuffer *buffer, GstAeMark *m)
{
  const GstSegment *seg = &GST_BASE_TRANSFORM (self)->segment;
  mark_init (m);
  m->frame = self->frame_index;
  m->pts = GST_BUFFER_PTS (buffer);
  m->duration = GST_BUFFER_DURATION (buffer);
  if (seg->format == GST_FORMAT_TIME && GST_CLOCK_TIME_IS_VALID (m->pts)) {
    m->stream_time = gst_segment_to_stream_time (seg, GST_FORMAT_TIME, m->pts);
    m->running_time = gst_segment_to_running_time (seg, GST_FORMAT_TIME, m->pts);
  }
}

/* Object lock held. Both names were validated when they were set. */
static float
aggregate_in_force (GstAeAnomaly *self)
{
  float top = 1.0f;
  ae_aggregate_from_name (self->aggregate ? self->aggregate : self->model_aggregate, &top);
  return top;
}

static gdouble
pixel_factor (float top_fraction)
{
  return top_fraction >= 1.0f ? PIXEL_THRESHOLD_FACTOR_MEAN : PIXEL_THRESHOLD_FACTOR_PEAK;
}

/* What the default pixel threshold scales: the frame threshold when the
 * frame score is the map's; with a latent score (other units) the map's own
 * calibrated threshold, NaN (no regions) when the model has none. Object lock. */
static gdouble
map_threshold_base (GstAeAnomaly *self, gdouble frame_threshold)
{
  return self->latent_score ? self->model_map_threshold : frame_threshold;
}

static void
read_settings (GstAeAnomaly *self, GstAeSettings *s)
{
  GST_OBJECT_LOCK (self);
  /* NaN and negative values mean "unset". */
  s->threshold = self->threshold >= 0 ? self->threshold : self->model_threshold;
  s->top_fraction = aggregate_in_force (self);
  s->smooth_radius = self->smooth_radius >= 0 ? self->smooth_radius : self->model_smooth_radius;
  s->border = self->border >= 0 ? self->border : self->model_border;
  s->pixel_threshold = self->pixel_threshold > 0 ? self->pixel_threshold
                                                  : pixel_factor (s->top_fraction)
                                                        * map_threshold_base (self, s->threshold);
  s->interval = self->interval;
  s->min_area = self->min_region_area;
  s->event_frames = self->event_frames;
  s->event_gap = self->event_gap;
  s->output = self->output;
  s->post_messages = self->post_messages;
  GST_OBJECT_UNLOCK (self);
  /* No threshold at all (property cleared on a model without one): no
   * regions. A zero threshold flags everything; keep the heat map finite. */
  if (isnan (s->pixel_threshold))
    s->pixel_threshold = G_MAXFLOAT;
  else if (!(s->pixel_threshold > 1e-12))
    s->pixel_threshold = 1e-12;
}

/* The model's thresholds were calibrated on scores made with its own
 * aggregation (and smoothing, which the mean of the raw map ignores): with
 * others in force and no threshold of the user's, the scores and the
 * threshold no longer match. Says so once per such setting. */
static void
warn_if_uncalibrated (GstAeAnomaly *self, const GstAeSettings *s)
{
  GST_OBJECT_LOCK (self);
  float model_top = 1.0f;
  ae_aggregate_from_name (self->model_aggregate, &model_top);
  gboolean differs = s->top_fraction != model_top
                     || (s->top_fraction < 1.0f && s->smooth_radius != self->model_smooth_radius)
                     || s->border != self->model_border;
  gboolean uncalibrated = differs && !(self->threshold >= 0) && !isnan (self->model_threshold);
  gboolean warn = uncalibrated && !self->calibration_warned;
  self->calibration_warned = uncalibrated;
  /* Copied only to warn: no allocation per frame. */
  gchar *model_aggregate = warn ? g_strdup (self->model_aggregate) : NULL;
  gint model_radius = self->model_smooth_radius, model_border = self->model_border;
  GST_OBJECT_UNLOCK (self);
  if (warn)
    GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
                         ("The model's threshold does not apply to these aggregate, "
                          "smooth-radius and border settings."),
                         ("it was calibrated with aggregate=%s smooth-radius=%d border=%d; set "
                          "threshold (and pixel-threshold) for the new settings, or train with "
                          "them (ae-train --aggregate, --smooth, --border)",
                          model_aggregate, model_radius, model_border));
  g_free (model_aggregate);
}

/* ---- Shapes and buffers ----------------------------------------------------------------- */

/* Fully convolutional models run on the roi padded up to their size
 * multiple; dense ones on the roi scaled to their input size. */
static void
shape_for_model (const ae_model *m, gint rw, gint rh, GstAeShape *s)
{
  int c, h, w;
  ae_model_input_shape (m, &c, &h, &w);
  s->channels = c;
  s->resample = !ae_model_is_fully_convolutional (m);
  if (s->resample) {
    s->aw = w;
    s->ah = h;
  } else {
    s->aw = round_up (rw, ae_model_size_multiple (m));
    s->ah = round_up (rh, ae_model_size_multiple (m));
  }
}

/* Online learning collects luma at the size the learned model will run at. */
static void
shape_for_learning (gint rw, gint rh, GstAeShape *s)
{
  s->channels = 1;
  s->resample = FALSE;
  s->aw = round_up (rw, LEARN_MULTIPLE);
  s->ah = round_up (rh, LEARN_MULTIPLE);
}

static void
buffers_free (GstAeBuffers *b)
{
  g_free (b->crop);
  g_free (b->input);
  g_free (b->map_a);
  g_free (b->smooth_a);
  g_free (b->map);
  g_free (b->smooth);
  g_free (b->tmp);
  g_free (b->scratch);
  g_free (b->visited);
  g_free (b->stack);
  memset (b, 0, sizeof *b);
}

static void
buffers_alloc (GstAeBuffers *b, const GstAeShape *s)
{
  gsize roi = (gsize) s->roi.w * s->roi.h;
  gsize net = (gsize) s->aw * s->ah;
  b->crop = s->resample ? g_new (float, s->channels * roi) : NULL;
  b->input = g_new (float, s->channels * net);
  b->map_a = g_new (float, net);
  b->map = g_new0 (float, roi);
  b->smooth = g_new0 (float, roi);
  b->smooth_a = s->resample ? g_new (float, net) : NULL;
  b->tmp = g_new (float, MAX (roi + s->roi.w, net + s->aw));
  /* SSIM maps need 8 planes; scores and percentiles one of either size. */
  b->scratch = g_new (float, MAX (8 * net, roi));
  b->visited = g_new (guint8, roi);
  b->stack = g_new (gint32, roi);
}

/* ---- Models ------------------------------------------------------------------------------ */

static ae_loss
model_loss (const ae_model *m, gint *window)
{
  int64_t w = DEFAULT_SSIM_WINDOW;
  ae_model_get_int (m, "anomaly.ssim_window", &w);
  *window = w > 0 && w < 1000 ? (gint) w : DEFAULT_SSIM_WINDOW;
  return g_strcmp0 (ae_model_get_str (m, "anomaly.score"), "mean-ssim") == 0 ? AE_LOSS_SSIM
                                                                             : AE_LOSS_MSE;
}

static gdouble
model_threshold (const ae_model *m)
{
  double t;
  return ae_model_get_float (m, "anomaly.threshold", &t) && isfinite (t) ? t : NAN;
}

/* The aggregation the threshold was calibrated with; models that predate
 * anomaly.aggregate scored the mean. */
static const gchar *
model_aggregate (const ae_model *m)
{
  const gchar *name = ae_model_get_str (m, "anomaly.aggregate");
  return name ? name : MODEL_DEFAULT_AGGREGATE;
}

static gdouble
model_map_threshold (const ae_model *m)
{
  double t;
  return ae_model_get_float (m, "anomaly.map_threshold", &t) && isfinite (t) ? t : NAN;
}

/* The model's frame score; the loader has checked it, recon if not. */
static ae_frame_scoring
model_scoring (const ae_model *m)
{
  ae_frame_scoring fs;
  if (ae_model_frame_scoring (m, &fs, NULL) != AE_OK)
    fs.kind = AE_SCORE_RECON;
  return fs;
}

/* A mix-mse-ssim model's two map scales (ae_error_map_mix); FALSE for
 * other models, or when a scale is missing or not positive. */
static gboolean
model_mix_scale (const ae_model *m, float scale[2])
{
  double s[2];
  scale[0] = scale[1] = 0.0f;
  if (g_strcmp0 (ae_model_get_str (m, "anomaly.score"), "mix-mse-ssim") != 0
      || !ae_model_get_float (m, "anomaly.mix_scale_mse", &s[0])
      || !ae_model_get_float (m, "anomaly.mix_scale_ssim", &s[1]) || !(s[0] > 0)
      || !(s[1] > 0) || !isfinite (s[0]) || !isfinite (s[1]))
    return FALSE;
  scale[0] = (float) s[0];
  scale[1] = (float) s[1];
  return TRUE;
}

/* The model's lost-contrast term (ae_map_add_lost_contrast): FALSE when
 * it has a weight but no positive floor or a bad window. Without a weight,
 * or with 0, TRUE with weight 0 (no term). */
static gboolean
model_contrast (const ae_model *m, GstAeContrast *c)
{
  double weight = 0, floor_sigma = 0;
  int64_t window = 2 * AE_CONTRAST_RADIUS + 1;
  *c = (GstAeContrast) { 0 };
  if (!ae_model_get_float (m, "anomaly.contrast_weight", &weight) || weight == 0)
    return TRUE;
  ae_model_get_int (m, "anomaly.contrast_window", &window);
  if (!(weight >= 0) || !isfinite (weight)
      || !ae_model_get_float (m, "anomaly.contrast_floor", &floor_sigma) || !(floor_sigma > 0)
      || !isfinite (floor_sigma) || window < 1 || window > MAX_CONTRAST_WINDOW || window % 2 == 0)
    return FALSE;
  *c = (GstAeContrast) { (float) floor_sigma, (float) weight, (gint) (window / 2) };
  return TRUE;
}

static gint
model_border (const ae_model *m)
{
  int64_t b;
  return ae_model_get_int (m, "anomaly.border", &b) && b >= 0 && b <= MAX_BORDER ? (gint) b : 0;
}

static gint
model_smooth_radius (const ae_model *m)
{
  int64_t r;
  return ae_model_get_int (m, "anomaly.smooth_radius", &r) && r >= 0 && r <= MAX_SMOOTH_RADIUS
             ? (gint) r : MODEL_DEFAULT_SMOOTH_RADIUS;
}

/* GstAeModelCheck: runs at start and, for hot-swaps, on the loader thread. */
static gboolean
gst_ae_anomaly_check_model (GstElement *element, const ae_model *m, GError **error)
{
  GstAeAnomaly *self = GST_AE_ANOMALY (element);
  GST_OBJECT_LOCK (self);
  gboolean have_caps = self->have_caps, have_threshold = self->threshold >= 0;
  gint rw = self->caps_rw, rh = self->caps_rh;
  GST_OBJECT_UNLOCK (self);

  GstAeShape s = { 0 };
  int c, h, w;
  ae_model_input_shape (m, &c, &h, &w);
  if (c != 1 && c != 3) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
                 "the model takes %d channels; aeanomaly needs 1 (luma) or 3 (RGB)", c);
    return FALSE;
  }
  float top, mix[2];
  GstAeContrast contrast;
  if (!model_contrast (m, &contrast)) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
                 "the model's anomaly.contrast_weight (finite, at least 0) needs a positive "
                 "anomaly.contrast_floor and an odd anomaly.contrast_window up to %d",
                 MAX_CONTRAST_WINDOW);
    return FALSE;
  }
  if (g_strcmp0 (ae_model_get_str (m, "anomaly.score"), "mix-mse-ssim") == 0
      && !model_mix_scale (m, mix)) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
                 "the model's mix-mse-ssim map needs positive anomaly.mix_scale_mse and "
                 "anomaly.mix_scale_ssim");
    return FALSE;
  }
  if (!ae_aggregate_from_name (model_aggregate (m), &top)) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
                 "the model's anomaly.aggregate \"%s\" is not mean, max or top:P",
                 model_aggregate (m));
    return FALSE;
  }
  if (!have_threshold && isnan (model_threshold (m))) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
                 "the model has no anomaly.threshold (train it with ae-train --task anomaly) "
                 "and the threshold property is not set");
    return FALSE;
  }
  shape_for_model (m, have_caps ? rw : w, have_caps ? rh : h, &s);
  ae_error err = { AE_OK, "" };
  ae_session *session = ae_session_new (m, 1, s.ah, s.aw, &err);
  if (!session) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
                 "the model cannot run on %dx%d: %s", s.aw, s.ah, err.message);
    return FALSE;
  }
  gsize latent = ae_session_latent_size (session);
  ae_session_free (session);
  ae_frame_scoring fs = model_scoring (m);
  gboolean trained_size = fs.kind == AE_SCORE_ELBO ? s.aw == w && s.ah == h
                          : latent == (gsize) ae_model_latent_gaussian (m);
  if (fs.kind != AE_SCORE_RECON && !trained_size) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
                 "the model's %s score needs its latent at the trained size %dx%d, not %dx%d",
                 ae_score_kind_name (fs.kind), w, h, s.aw, s.ah);
    return FALSE;
  }
  if (ae_model_has_map_mean (m) && (s.aw != w || s.ah != h)) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
                 "the model's per-pixel mean map (map.mean) is for the trained size %dx%d, not "
                 "%dx%d", w, h, s.aw, s.ah);
    return FALSE;
  }
  return TRUE;
}

/* Called whenever a model becomes active. */
static void
adopt_model_facts (GstAeAnomaly *self)
{
  const ae_model *m = self->slot.active;
  self->loss = model_loss (m, &self->ssim_window);
  model_mix_scale (m, self->mix_scale);
  model_contrast (m, &self->contrast);
  self->scoring = model_scoring (m);
  GST_OBJECT_LOCK (self);
  self->model_threshold = model_threshold (m);
  self->latent_score = self->scoring.kind != AE_SCORE_RECON;
  self->model_map_threshold = model_map_threshold (m);
  g_free (self->model_aggregate);
  self->model_aggregate = g_strdup (model_aggregate (m));
  self->model_smooth_radius = model_smooth_radius (m);
  self->model_border = model_border (m);
  self->calibration_warned = FALSE;
  GST_OBJECT_UNLOCK (self);
  self->since_model = 0;
  GST_INFO_OBJECT (self, "model %s, %s map, %s frame score, threshold %g", ae_model_spec (m),
                   ae_loss_name (self->loss), ae_score_kind_name (self->scoring.kind),
                   self->model_threshold);
}

/* The model's runners; they point at the model, so they go first. */
static void
free_runners (GstAeAnomaly *self)
{
  ae_stripes_free (self->stripes);
  self->stripes = NULL;
  ae_session_free (self->encoder);
  self->encoder = NULL;
  g_clear_pointer (&self->latent_scratch, g_free);
  g_clear_pointer (&self->latent_shift, g_free);
  ae_elbo_free (self->elbo);
  self->elbo = NULL;
}

/* Adopts a pending model. A session points at its model, so it goes
 * before the old model is freed. */
static gboolean
swap_model (GstAeAnomaly *self)
{
  gboolean changed;
  ae_model *old = gst_ae_model_slot_swap (&self->slot, &changed);
  if (!changed)
    return FALSE;
  free_runners (self);
  ae_model_free (old);
  return TRUE;
}

/* ---- Analysis ------------------------------------------------------------------------------ */

/* The network input for a frame, in buf.input. */
static void
read_input (GstAeAnomaly *self, const GstVideoFrame *frame)
{
  const GstAeShape *s = &self->shape;
  gst_ae_frame_read_network_input (frame, s->channels, &s->roi, self->buf.crop, self->buf.input,
                                   s->aw, s->ah);
}

/* How a map becomes a score: the model's settings, or the properties. */
typedef struct
{
  ae_loss loss;
  gint window;
  float top_fraction;
  gint smooth_radius;
  gint border; /* ae_map_clear_border before smoothing */
  const float *mix_scale; /* ae_error_map_mix with these scales; NULL: the loss's map */
  GstAeContrast contrast; /* weight > 0: ae_map_add_lost_contrast after map_norm */
  const ae_model *map_norm; /* its mean map divides the raw map (ae_map_normalise); NULL: none */
} GstAeScoring;

/* From the raw map of `input` at the network's size in b->map_a: the map
 * over the roi in b->map, smoothed in b->smooth, and the map's frame score
 * in *score, aggregated at the network's size without padding — exactly
 * what ae-train calibrates the threshold on. */
static void
score_map (const GstAeShape *s, const GstAeScoring *sc, const float *input, GstAeBuffers *b,
           gdouble *score)
{
  gint rw = s->roi.w, rh = s->roi.h;
  if (sc->map_norm)
    ae_map_normalise (sc->map_norm, b->map_a, s->aw, s->ah); /* the build size: checked */
  if (sc->contrast.weight > 0) /* floor and weight checked with the model */
    ae_map_add_lost_contrast (input, s->channels, s->ah, s->aw, sc->contrast.radius,
                              sc->contrast.floor, sc->contrast.weight, b->map_a, b->scratch);
  if (s->resample) {
    ae_map_clear_border (b->map_a, s->aw, s->ah, sc->border);
    ae_map_smooth (b->map_a, b->smooth_a, s->aw, s->ah, sc->smooth_radius, b->tmp);
    *score = ae_map_score (b->map_a, b->smooth_a, (size_t) s->aw * s->ah, sc->top_fraction,
                           b->scratch);
    gst_ae_resample (b->map_a, s->aw, s->ah, b->map, rw, rh, 1);
  } else {
    for (gint y = 0; y < rh; y++)
      memcpy (b->map + (gsize) y * rw, b->map_a + (gsize) y * s->aw, (gsize) rw * sizeof (float));
    ae_map_clear_border (b->map, rw, rh, sc->border);
  }
  ae_map_smooth (b->map, b->smooth, rw, rh, sc->smooth_radius, b->tmp);
  if (!s->resample)
    *score = ae_map_score (b->map, b->smooth, (size_t) rw * rh, sc->top_fraction, b->scratch);
}

/* The raw error map between an input and its reconstruction, in b->map_a. */
static gboolean
error_map (const GstAeShape *s, const GstAeScoring *sc, const float *input, const float *recon,
           GstAeBuffers *b)
{
  if (!recon)
    return FALSE;
  ae_status st = sc->mix_scale ? ae_error_map_mix (input, recon, s->channels, s->ah, s->aw,
                                                   sc->window, sc->mix_scale, b->map_a, b->scratch)
                               : ae_error_map (sc->loss, input, recon, s->channels, s->ah, s->aw,
                                               sc->window, b->map_a, b->scratch);
  return st == AE_OK;
}

/* score_map of the error map between an input and its reconstruction.
 * Online learning calibrates with this same function. */
static gboolean
score_input (const GstAeShape *s, const GstAeScoring *sc, const float *input,
             const float *recon, GstAeBuffers *b, gdouble *score)
{
  if (!error_map (s, sc, input, recon, b))
    return FALSE;
  score_map (s, sc, input, b, score);
  return TRUE;
}

/* The elbo score: the map averaged over the posterior samples, its score,
 * plus the weighted KL divergence (ae_frame_score). */
static gboolean
score_elbo (GstAeAnomaly *self, const GstAeScoring *sc, gdouble *score)
{
  GstAeBuffers *b = &self->buf;
  double kl = ae_elbo_map (self->elbo, sc->loss, sc->window, b->input, b->map_a);
  if (kl < 0)
    return FALSE;
  score_map (&self->shape, sc, b->input, b, score);
  *score = ae_frame_score (&self->scoring, *score, kl);
  return TRUE;
}

/* Inserts a region into the result's list, kept sorted by score and
 * capped: when full, a region only enters by pushing out the weakest. */
static void
keep_region (GstAeResult *res, const GstAeRegion *r)
{
  guint n = res->n_regions;
  if (n == GST_AE_ANOMALY_MAX_REGIONS && r->score <= res->regions[n - 1].score)
    return;
  guint i = n < GST_AE_ANOMALY_MAX_REGIONS ? n++ : n - 1;
  for (; i > 0 && res->regions[i - 1].score < r->score; i--)
    res->regions[i] = res->regions[i - 1];
  res->regions[i] = *r;
  res->n_regions = n;
}

/* The 8-connected component of pixels above `thr` that contains `seed`,
 * grown with an explicit stack; each pixel is pushed at most once, so a
 * stack of w*h entries never overflows. */
static void
grow_region (const float *map, gint w, gint h, float thr, guint8 *visited, gint32 *stack,
             gint32 seed, GstAeRegion *r)
{
  gint sp = 0, x0 = w, y0 = h, x1 = -1, y1 = -1;
  r->area = 0;
  r->score = map[seed];
  stack[sp++] = seed;
  visited[seed] = 1;
  while (sp > 0) {
    gint32 p = stack[--sp];
    gint x = p % w, y = p / w;
    x0 = MIN (x0, x), x1 = MAX (x1, x), y0 = MIN (y0, y), y1 = MAX (y1, y);
    r->area++;
    r->score = MAX (r->score, map[p]);
    for (gint ny = MAX (y - 1, 0); ny <= MIN (y + 1, h - 1); ny++)
      for (gint nx = MAX (x - 1, 0); nx <= MIN (x + 1, w - 1); nx++) {
        gint32 q = ny * w + nx;
        if (!visited[q] && map[q] > thr) {
          visited[q] = 1;
          stack[sp++] = q;
        }
      }
  }
  r->x = x0;
  r->y = y0;
  r->w = x1 - x0 + 1;
  r->h = y1 - y0 + 1;
}

static void
find_regions (GstAeAnomaly *self, const GstAeSettings *set, GstAeResult *res)
{
  const GstVideoRectangle *roi = &self->shape.roi;
  GstAeBuffers *b = &self->buf;
  gint32 n = roi->w * roi->h;
  float thr = (float) set->pixel_threshold;
  memset (b->visited, 0, (gsize) n);
  res->n_regions = 0;
  for (gint32 p = 0; p < n; p++) {
    if (b->visited[p] || !(b->smooth[p] > thr))
      continue;
    GstAeRegion r;
    grow_region (b->smooth, roi->w, roi->h, thr, b->visited, b->stack, p, &r);
    if ((guint) r.area < set->min_area)
      continue;
    r.x += roi->x;
    r.y += roi->y;
    keep_region (res, &r);
  }
}

static gboolean
analyse_frame (GstAeAnomaly *self, const GstVideoFrame *frame, const GstAeSettings *set)
{
  GstAeBuffers *b = &self->buf;
  GstAeResult *res = &self->result;
  const ae_model *m = self->slot.active;
  GstAeScoring sc = { self->loss, self->ssim_window, set->top_fraction, set->smooth_radius,
                      set->border, self->mix_scale[0] > 0 ? self->mix_scale : NULL,
                      self->contrast,
                      ae_model_has_map_mean (m) ? m : NULL };
  read_input (self, frame);
  if (self->elbo ? !score_elbo (self, &sc, &res->score)
                 : !score_input (&self->shape, &sc, b->input,
                                 ae_stripes_forward (self->stripes, b->input), b, &res->score)) {
    GST_ELEMENT_ERROR (self, LIBRARY, FAILED, ("Could not compute the anomaly map."),
                       ("ae_error_map failed for a %dx%d input", self->shape.aw,
                        self->shape.ah));
    return FALSE;
  }
  if (self->encoder) {
    const float *z = ae_latent_vectors (m, self->encoder, b->input,
                                        ae_stripes_output (self->stripes), self->latent_shift);
    double d = ae_latent_mahalanobis (m, z, self->latent_scratch);
    res->score = ae_frame_score (&self->scoring, res->score, d);
  }
  res->valid = TRUE;
  res->frame = self->frame_index;
  res->threshold = set->threshold;
  res->pixel_threshold = set->pixel_threshold;
  res->anomalous = res->score > set->threshold;
  find_regions (self, set, res);
  return TRUE;
}

/* ---- Online learning ------------------------------------------------------------------------ */

typedef struct
{
  GstAeAnomaly *self;
  float *x; /* count inputs of shape.aw x shape.ah luma */
  guint count;
  GstAeShape shape;
  GstAeScoring scoring;
  GstAeAnomalyLearnMap map;
  ae_loss loss; /* training */
  float mix_scale[2]; /* GST_AE_ANOMALY_LEARN_MAP_MIX: fitted by learn_calibrate */
  gdouble contrast_weight; /* learn-contrast, in map means; learn_contrast fits the term */
  gdouble contrast_map_mean; /* the unit it found */
  gchar *aggregate; /* its name, for the metadata */
  gint epochs;
  gint threads; /* training workers (ae_train_opts.threads) */
  gchar *save_path;
} GstAeTrainJob;

typedef struct
{
  ae_train_result train;
  gint crop_w, crop_h, repeat;
  gboolean on_training; /* too few frames to hold any out */
  gsize calib_count;
  gdouble threshold, mean, std, max, seconds;
} GstAeLearnReport;

static void
train_job_free (GstAeTrainJob *job)
{
  g_free (job->x);
  g_free (job->aggregate);
  g_free (job->save_path);
  g_free (job);
}

/* The fconv preset trained on random crops of the collected frames. */
static ae_model *
learn_train (GstAeTrainJob *job, gsize nval, GstAeLearnReport *rep, ae_error *err)
{
  const GstAeShape *s = &job->shape;
  char spec[1024];
  rep->crop_w = MIN (LEARN_CROP, s->aw);
  rep->crop_h = MIN (LEARN_CROP, s->ah);
  if (ae_arch_preset ("fconv", 1, rep->crop_h, rep->crop_w, LEARN_LATENT, spec, sizeof spec,
                      err) != AE_OK)
    return NULL;
  ae_model *m = ae_model_new (spec, 1, rep->crop_h, rep->crop_w, LEARN_SEED, err);
  if (!m)
    return NULL;

  gsize ntrain = MAX (job->count - nval, 1);
  ae_dataset data = { job->x, NULL, job->count, 1, s->ah, s->aw };
  ae_train_opts o;
  ae_train_opts_init (&o);
  o.epochs = job->epochs;
  o.batch = LEARN_BATCH;
  o.lr = LEARN_LR;
  o.val_split = LEARN_VAL_SPLIT;
  o.seed = LEARN_SEED;
  o.synthetic_defects = LEARN_SYNTHETIC_DEFECTS;
  o.loss = job->loss;
  if (rep->crop_w != s->aw || rep->crop_h != s->ah) {
    o.crop_width = rep->crop_w;
    o.crop_height = rep->crop_h;
  }
  o.repeat = rep->repeat
      = (gint) MAX ((LEARN_MIN_SAMPLES_PER_EPOCH + ntrain - 1) / ntrain, LEARN_REPEAT);
  o.threads = job->threads;
  o.cancel = (const volatile int *) &job->self->cancel;
  if (ae_train (m, &data, &o, &rep->train, err) != AE_OK) {
    ae_model_free (m);
    return NULL;
  }
  return m;
}

/* The mixed map's scales: each map's mean over the n calibration frames
 * (val when nval, else the first n), as ae-train --map mix fits them. */
static gboolean
learn_mix_scale (GstAeTrainJob *job, ae_session *session, const gsize *val, gsize n, gsize nval,
                 GstAeBuffers *b)
{
  const GstAeShape *s = &job->shape;
  gsize net = (gsize) s->aw * s->ah;
  double sum[2] = { 0, 0 }, means[2];
  for (gsize k = 0; k < n; k++) {
    const float *x = job->x + (nval ? val[k] : k) * net;
    if (ae_error_map_means (x, ae_session_forward (session, x), 1, s->ah, s->aw,
                            job->scoring.window, means, b->map_a, b->scratch) != AE_OK)
      return FALSE;
    sum[0] += means[0];
    sum[1] += means[1];
  }
  job->mix_scale[0] = (float) (sum[0] / (double) n);
  job->mix_scale[1] = (float) (sum[1] / (double) n);
  job->scoring.mix_scale = job->mix_scale;
  return job->mix_scale[0] > 0.0f && job->mix_scale[1] > 0.0f;
}

/* The lost-contrast term, as ae-train --lost-contrast fits it: the floor
 * of the n calibration frames' local contrast, and learn-contrast times the
 * map's mean on them (the map in force, without the term). */
static gboolean
learn_contrast (GstAeTrainJob *job, ae_session *session, const gsize *val, gsize n, gsize nval,
                GstAeBuffers *b)
{
  const GstAeShape *s = &job->shape;
  gsize net = (gsize) s->aw * s->ah;
  GstAeContrast *c = &job->scoring.contrast;
  *c = (GstAeContrast) { ae_contrast_floor (job->x, nval ? val : NULL, n, 1, s->ah, s->aw), 0.0f,
                         AE_CONTRAST_RADIUS };
  double sum = 0;
  for (gsize k = 0; k < n; k++) {
    const float *x = job->x + (nval ? val[k] : k) * net;
    if (!error_map (s, &job->scoring, x, ae_session_forward (session, x), b))
      return FALSE;
    for (gsize i = 0; i < net; i++)
      sum += b->map_a[i];
  }
  job->contrast_map_mean = sum / ((double) n * (double) net);
  c->weight = (float) (job->contrast_weight * job->contrast_map_mean);
  return c->floor > 0 && c->weight > 0;
}

/* Percentile LEARN_PERCENTILE of the held-out frames' scores, as
 * ae-train --calibrate does; all frames when none were held out. */
static gboolean
learn_calibrate (GstAeTrainJob *job, const ae_model *m, const gsize *val, gsize nval,
                 GstAeLearnReport *rep, ae_error *err)
{
  const GstAeShape *s = &job->shape;
  gsize n = nval ? nval : job->count, net = (gsize) s->aw * s->ah;
  ae_session *session = ae_session_new (m, 1, s->ah, s->aw, err);
  if (!session)
    return FALSE;
  GstAeBuffers b;
  buffers_alloc (&b, s);
  float *scores = g_new (float, n), *sorted = g_new (float, n);
  gboolean ok = job->map != GST_AE_ANOMALY_LEARN_MAP_MIX
                || learn_mix_scale (job, session, val, n, nval, &b);
  if (ok && job->contrast_weight > 0)
    ok = learn_contrast (job, session, val, n, nval, &b);
  gdouble sum = 0, sq = 0, max = -G_MAXDOUBLE;
  for (gsize k = 0; k < n && ok; k++) {
    gdouble v = 0;
    const float *x = job->x + (nval ? val[k] : k) * net;
    ok = score_input (s, &job->scoring, x, ae_session_forward (session, x), &b, &v);
    scores[k] = (float) v;
    sum += v;
    max = MAX (max, v);
  }
  if (ok) {
    rep->mean = sum / (gdouble) n;
    for (gsize k = 0; k < n; k++)
      sq += (scores[k] - rep->mean) * (scores[k] - rep->mean);
    rep->std = sqrt (sq / (gdouble) n);
    rep->max = max;
    rep->calib_count = n;
    rep->on_training = nval == 0;
    rep->threshold = ae_percentile (scores, n, LEARN_PERCENTILE, sorted);
  } else if (err) {
    err->status = AE_E_NUMERIC;
    g_strlcpy (err->message, "calibration: cannot compute the error map", sizeof err->message);
  }
  g_free (sorted);
  g_free (scores);
  buffers_free (&b);
  ae_session_free (session);
  return ok;
}

/* Metadata as ae-train writes it, so the saved model works everywhere an
 * ae-train anomaly model does. */
static ae_status
learn_write_metadata (ae_model *m, const GstAeTrainJob *job, const GstAeLearnReport *r)
{
  const GstAeShape *s = &job->shape;
  GDateTime *now = g_date_time_new_now_utc ();
  gchar *date = g_date_time_format (now, "%Y-%m-%dT%H:%M:%SZ");
  gchar *data = g_strdup_printf ("aeanomaly online learning: %u frames, roi %d,%d,%d,%d of %dx%d",
                                 job->count, s->roi.x, s->roi.y, s->roi.w, s->roi.h, s->fw, s->fh);
  gchar *crop = g_strdup_printf ("%dx%d", r->crop_w, r->crop_h);
  ae_status st = AE_OK;
#define PUT(call) \
  if (st == AE_OK) \
  st = (call)
  PUT (ae_model_set_str (m, "task", "anomaly"));
  PUT (ae_model_set_int (m, "input.width", s->roi.w));
  PUT (ae_model_set_int (m, "input.height", s->roi.h));
  PUT (ae_model_set_int (m, "input.channels", 1));
  PUT (ae_model_set_str (m, "input.format", "GRAY8"));
  PUT (ae_model_set_float (m, "norm.scale", 1.0 / 255.0));
  PUT (ae_model_set_float (m, "norm.offset", 0.0));
  PUT (ae_model_set_int (m, "latent.size", (int64_t) ae_model_latent_size (m, s->ah, s->aw)));
  PUT (ae_model_set_str (m, "train.data", data));
  PUT (ae_model_set_int (m, "train.frames", job->count));
  PUT (ae_model_set_str (m, "train.arch", "fconv"));
  PUT (ae_model_set_int (m, "train.epochs", r->train.epochs_run));
  PUT (ae_model_set_int (m, "train.best_epoch", r->train.best_epoch));
  PUT (ae_model_set_str (m, "train.loss", ae_loss_name (job->loss)));
  PUT (ae_model_set_int (m, "train.seed", LEARN_SEED));
  PUT (ae_model_set_float (m, "train.lr", LEARN_LR));
  PUT (ae_model_set_int (m, "train.batch", LEARN_BATCH));
  PUT (ae_model_set_str (m, "train.noise", "0:0"));
  if (r->crop_w != s->aw || r->crop_h != s->ah)
    PUT (ae_model_set_str (m, "train.crop", crop));
  PUT (ae_model_set_int (m, "train.flip", 0));
  PUT (ae_model_set_int (m, "train.repeat", r->repeat));
  PUT (ae_model_set_float (m, "train.synthetic_defects", LEARN_SYNTHETIC_DEFECTS));
  PUT (ae_model_set_float (m, "train.val_split", LEARN_VAL_SPLIT));
  PUT (ae_model_set_float (m, "train.final_train_loss", r->train.final_train_loss));
  PUT (ae_model_set_float (m, "train.final_val_loss", r->train.final_val_loss));
  PUT (ae_model_set_str (m, "train.tool", "aeanomaly " PACKAGE_VERSION));
  PUT (ae_model_set_str (m, "train.date", date));
  static const char *const scores[] = { "mean-mse", "mean-ssim", "mix-mse-ssim" };
  PUT (ae_model_set_str (m, "anomaly.score", scores[job->map]));
  if (job->map != GST_AE_ANOMALY_LEARN_MAP_MSE)
    PUT (ae_model_set_int (m, "anomaly.ssim_window", job->scoring.window));
  if (job->map == GST_AE_ANOMALY_LEARN_MAP_MIX) {
    PUT (ae_model_set_float (m, "anomaly.mix_scale_mse", job->mix_scale[0]));
    PUT (ae_model_set_float (m, "anomaly.mix_scale_ssim", job->mix_scale[1]));
  }
  PUT (ae_model_set_str (m, "anomaly.aggregate", job->aggregate));
  PUT (ae_model_set_int (m, "anomaly.smooth_radius", job->scoring.smooth_radius));
  PUT (ae_model_set_int (m, "anomaly.border", job->scoring.border));
  if (job->scoring.contrast.weight > 0) {
    PUT (ae_model_set_float (m, "anomaly.contrast_weight", job->scoring.contrast.weight));
    PUT (ae_model_set_float (m, "anomaly.contrast_floor", job->scoring.contrast.floor));
    PUT (ae_model_set_float (m, "anomaly.contrast_map_mean", job->contrast_map_mean));
    PUT (ae_model_set_int (m, "anomaly.contrast_window", 2 * job->scoring.contrast.radius + 1));
  }
  PUT (ae_model_set_float (m, "anomaly.threshold", r->threshold));
  PUT (ae_model_set_float (m, "anomaly.calibrate_percentile", LEARN_PERCENTILE));
  PUT (ae_model_set_str (m, "anomaly.calibration_set", r->on_training ? "training" : "validation"));
  PUT (ae_model_set_float (m, "anomaly.val_score_mean", r->mean));
  PUT (ae_model_set_float (m, "anomaly.val_score_std", r->std));
  PUT (ae_model_set_float (m, "anomaly.val_score_max", r->max));
  PUT (ae_model_set_int (m, "anomaly.val_count", (int64_t) r->calib_count));
#undef PUT
  g_free (crop);
  g_free (data);
  g_free (date);
  g_date_time_unref (now);
  return st;
}

/* Gives the model to the streaming thread unless it is being cancelled or
 * a model the user loaded meanwhile is waiting (the user's wins). */
static gboolean
learn_hand_over (GstAeTrainJob *job, ae_model *m)
{
  GstAeModelSlot *slot = &job->self->slot;
  gboolean taken = FALSE;
  g_mutex_lock (&slot->lock);
  if (!g_atomic_int_get (&job->self->cancel) && !slot->pending) {
    slot->pending = m;
    taken = TRUE;
  }
  g_mutex_unlock (&slot->lock);
  return taken;
}

static void
post_learned (GstAeTrainJob *job, const GstAeLearnReport *r)
{
  GstStructure *s = gst_structure_new ("aeanomaly-learned",
      "threshold", G_TYPE_DOUBLE, r->threshold,
      "frames", G_TYPE_UINT, job->count,
      "epochs", G_TYPE_INT, r->train.epochs_run,
      "train-loss", G_TYPE_DOUBLE, r->train.final_train_loss,
      "val-loss", G_TYPE_DOUBLE, r->train.final_val_loss,
      "seconds", G_TYPE_DOUBLE, r->seconds,
      "location", G_TYPE_STRING, job->save_path, NULL);
  gst_element_post_message (GST_ELEMENT (job->self),
                            gst_message_new_element (GST_OBJECT (job->self), s));
}

/* Saving is best effort: detection goes on with the model in memory. */
static void
learn_save (GstAeTrainJob *job, const ae_model *m)
{
  ae_error err = { AE_OK, "" };
  if (!job->save_path || !*job->save_path)
    return;
  if (ae_model_save (m, job->save_path, &err) != AE_OK) {
    GST_ELEMENT_WARNING (job->self, RESOURCE, WRITE,
                         ("Could not save the learned model: %s", err.message),
                         ("save-model=%s", job->save_path));
    g_clear_pointer (&job->save_path, g_free);
  }
}

static gpointer
learn_thread (gpointer data)
{
  GstAeTrainJob *job = data;
  GstAeLearnReport rep = { 0 };
  ae_error err = { AE_OK, "" };
  gint64 t0 = g_get_monotonic_time ();
  gsize *val = g_new (gsize, job->count);
  gsize nval = ae_validation_indices (job->count, LEARN_VAL_SPLIT, LEARN_SEED, val);

  ae_model *m = learn_train (job, nval, &rep, &err);
  if (m && (!learn_calibrate (job, m, val, nval, &rep, &err)
            || learn_write_metadata (m, job, &rep) != AE_OK)) {
    ae_model_free (m);
    m = NULL;
  }
  rep.seconds = (g_get_monotonic_time () - t0) / (gdouble) G_USEC_PER_SEC;
  if (m) {
    GST_INFO_OBJECT (job->self, "learned from %u frames in %.1f s, threshold %g", job->count,
                     rep.seconds, rep.threshold);
    learn_save (job, m);
    if (learn_hand_over (job, m))
      post_learned (job, &rep);
    else
      ae_model_free (m);
  } else if (err.status != AE_E_CANCELLED && !g_atomic_int_get (&job->self->cancel)) {
    GST_ELEMENT_ERROR (job->self, LIBRARY, FAILED, ("Online learning failed: %s", err.message),
                       ("%u frames of %dx%d", job->count, job->shape.aw, job->shape.ah));
  }
  g_free (val);
  train_job_free (job);
  return NULL;
}

/* Streaming thread: the collection is complete, train in the background. */
static gboolean
learn_start_training (GstAeAnomaly *self)
{
  GstAeTrainJob *job = g_new0 (GstAeTrainJob, 1);
  GError *error = NULL;
  job->self = self;
  job->x = self->learn_x;
  job->count = self->learn_count;
  job->shape = self->shape;
  GST_OBJECT_LOCK (self);
  job->save_path = g_strdup (self->save_model);
  job->epochs = self->learn_epochs;
  gint threads = self->threads;
  /* The properties, when set, decide how the learned model scores. */
  job->aggregate = g_strdup (self->aggregate ? self->aggregate : LEARN_AGGREGATE);
  job->map = self->learn_map;
  job->loss = self->learn_loss == GST_AE_ANOMALY_LEARN_LOSS_SSIM ? AE_LOSS_SSIM : AE_LOSS_MSE;
  job->contrast_weight = self->learn_contrast;
  job->scoring.loss = job->map == GST_AE_ANOMALY_LEARN_MAP_SSIM ? AE_LOSS_SSIM : AE_LOSS_MSE;
  job->scoring.window = DEFAULT_SSIM_WINDOW;
  ae_aggregate_from_name (job->aggregate, &job->scoring.top_fraction);
  job->scoring.smooth_radius = self->smooth_radius >= 0 ? self->smooth_radius
                                                         : LEARN_SMOOTH_RADIUS;
  job->scoring.border = self->border >= 0 ? self->border : LEARN_BORDER;
  GST_OBJECT_UNLOCK (self);
  /* The threads property's workers, as the stripes will use after, with
   * OpenBLAS on one thread: OpenBLAS's own threads under one worker
   * trained 400 frames of 256x256 in 91 s where ae-train's 2 workers
   * took 45. */
  job->threads = gst_ae_stripe_threads (threads, MAX_THREADS);
  self->learn_x = NULL;
  self->learn_count = 0;
  g_atomic_int_set (&self->cancel, 0);
  self->trainer = g_thread_try_new ("aeanomaly-learn", learn_thread, job, &error);
  if (!self->trainer) {
    GST_ELEMENT_ERROR (self, RESOURCE, FAILED, ("Could not start online learning."),
                       ("%s", error->message));
    g_error_free (error);
    train_job_free (job);
    return FALSE;
  }
  self->learn_state = LEARN_TRAIN;
  GST_INFO_OBJECT (self, "training on %u frames of %dx%d", job->count, self->shape.aw,
                   self->shape.ah);
  return TRUE;
}

/* Streaming thread, before a model exists: frames pass unflagged. */
static gboolean
learn_collect (GstAeAnomaly *self, const GstVideoFrame *frame)
{
  gsize net = (gsize) self->shape.aw * self->shape.ah;
  if (self->learn_state != LEARN_COLLECT || !self->learn_x)
    return TRUE;
  read_input (self, frame);
  memcpy (self->learn_x + self->learn_count * net, self->buf.input, net * sizeof (float));
  if (++self->learn_count < self->learn_capacity)
    return TRUE;
  return learn_start_training (self);
}

/* (Re)starts the collection for the current shape; bounded in memory. */
static void
learn_reset (GstAeAnomaly *self)
{
  gsize frame_bytes = (gsize) self->shape.aw * self->shape.ah * sizeof (float);
  GST_OBJECT_LOCK (self);
  guint wanted = (guint) self->learn_frames;
  GST_OBJECT_UNLOCK (self);
  guint cap = (guint) MIN ((gsize) wanted, MAX (LEARN_MAX_BYTES / frame_bytes, 2));
  if (cap < wanted)
    GST_ELEMENT_WARNING (self, RESOURCE, SETTINGS,
                         ("Learning from %u frames instead of %u.", cap, wanted),
                         ("%u frames of %dx%d would need more than %" G_GSIZE_FORMAT
                          " MiB; set a smaller roi", wanted, self->shape.aw, self->shape.ah,
                          LEARN_MAX_BYTES >> 20));
  g_free (self->learn_x);
  self->learn_x = g_new (float, cap * (frame_bytes / sizeof (float)));
  self->learn_capacity = cap;
  self->learn_count = 0;
}

/* Cancels and joins the trainer; the collection is dropped. */
static void
learn_stop (GstAeAnomaly *self)
{
  if (self->trainer) {
    g_atomic_int_set (&self->cancel, 1);
    g_thread_join (self->trainer);
    self->trainer = NULL;
  }
  g_clear_pointer (&self->learn_x, g_free);
  self->learn_count = 0;
  self->learn_state = LEARN_NONE;
}

/* ---- Configuration -------------------------------------------------------------------------- */

static gboolean
resolve_roi (GstAeAnomaly *self, GstAeShape *s)
{
  GST_OBJECT_LOCK (self);
  gboolean set = self->roi_set;
  GstVideoRectangle r = self->roi_prop;
  self->roi_changed = FALSE;
  GST_OBJECT_UNLOCK (self);
  if (!set) {
    s->roi = (GstVideoRectangle) { 0, 0, s->fw, s->fh };
    return TRUE;
  }
  if ((gint64) r.x + r.w > s->fw || (gint64) r.y + r.h > s->fh) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS,
                       ("The roi %d,%d,%d,%d does not fit the %dx%d frames.", r.x, r.y, r.w, r.h,
                        s->fw, s->fh), (NULL));
    return FALSE;
  }
  s->roi = r;
  return TRUE;
}

/* The elbo score: its scorer, which runs at the trained size only. On
 * failure the stripes go too (negotiation fails with err). */
static void
start_elbo (GstAeAnomaly *self, const ae_model *m, const GstAeShape *s, ae_error *err)
{
  int c, h, w;
  ae_model_input_shape (m, &c, &h, &w);
  if (s->aw == w && s->ah == h)
    self->elbo = ae_elbo_new_for (m, &self->scoring, err);
  else
    g_snprintf (err->message, sizeof err->message, "the model's elbo score needs the trained "
                "size %dx%d, not %dx%d", w, h, s->aw, s->ah);
  if (!self->elbo)
    free_runners (self);
}

/* Latent scores: an encoder session at the network size, whose latent must
 * be the one the model's Gaussian was fitted on. On failure the stripes go
 * too (negotiation fails with err). */
static void
start_encoder (GstAeAnomaly *self, const ae_model *m, const GstAeShape *s, ae_error *err)
{
  self->encoder = ae_session_new (m, 1, s->ah, s->aw, err);
  gsize k = (gsize) ae_model_latent_gaussian (m);
  if (self->encoder && ae_session_latent_size (self->encoder) == k && k > 0) {
    self->latent_scratch = g_new (float, k);
    self->latent_shift = g_new (float, k);
    return;
  }
  if (self->encoder)
    g_snprintf (err->message, sizeof err->message, "the model's %s score needs its latent at "
                "the trained size, not at %dx%d", ae_score_kind_name (self->scoring.kind),
                s->aw, s->ah);
  free_runners (self);
}

/* Everything that depends on caps, roi and model is (re)built here, so
 * the per-frame path never allocates. */
static gboolean
gst_ae_anomaly_configure (GstAeAnomaly *self, const GstVideoInfo *info)
{
  const ae_model *m = self->slot.active;
  GstAeShape s = { 0 };
  s.fw = GST_VIDEO_INFO_WIDTH (info);
  s.fh = GST_VIDEO_INFO_HEIGHT (info);
  if (!resolve_roi (self, &s))
    return FALSE;
  if (m)
    shape_for_model (m, s.roi.w, s.roi.h, &s);
  else
    shape_for_learning (s.roi.w, s.roi.h, &s);
  GST_OBJECT_LOCK (self);
  self->have_caps = TRUE;
  self->caps_rw = s.roi.w;
  self->caps_rh = s.roi.h;
  GST_OBJECT_UNLOCK (self);

  free_runners (self);
  buffers_free (&self->buf);
  self->shape = s;
  self->result.valid = FALSE;
  buffers_alloc (&self->buf, &s);
  GST_DEBUG_OBJECT (self, "frames %dx%d, roi %d,%d,%d,%d, network %dx%dx%d%s", s.fw, s.fh,
                    s.roi.x, s.roi.y, s.roi.w, s.roi.h, s.channels, s.aw, s.ah,
                    s.resample ? " (resampled)" : "");
  if (!m) {
    if (self->learn_state == LEARN_COLLECT)
      learn_reset (self);
    return TRUE;
  }
  ae_error err = { AE_OK, "" };
  GST_OBJECT_LOCK (self);
  gint threads = self->threads;
  GST_OBJECT_UNLOCK (self);
  self->stripes = ae_stripes_new (m, s.ah, s.aw, gst_ae_stripe_threads (threads, MAX_THREADS),
                                  &err);
  /* The stripes also mark a running model (no online learning) for elbo,
   * whose own scorer makes the map. */
  if (self->stripes && ae_score_kind_uses_gaussian (self->scoring.kind))
    start_encoder (self, m, &s, &err);
  else if (self->stripes && self->scoring.kind == AE_SCORE_ELBO)
    start_elbo (self, m, &s, &err);
  if (self->stripes && ae_model_has_map_mean (m)) {
    int c, h, w;
    ae_model_input_shape (m, &c, &h, &w);
    if (s.aw != w || s.ah != h) {
      g_snprintf (err.message, sizeof err.message, "the model's per-pixel mean map is for the "
                  "trained size %dx%d, not %dx%d", w, h, s.aw, s.ah);
      free_runners (self);
    }
  }
  if (!self->stripes) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION,
                       ("The model cannot run on %dx%d frames: %s", s.roi.w, s.roi.h,
                        err.message), (NULL));
    return FALSE;
  }
  return TRUE;
}

/* Streaming thread, before each frame: adopts a hot-swapped or learned
 * model and a changed roi. */
static gboolean
update_model (GstAeAnomaly *self)
{
  gboolean swapped = swap_model (self);
  GST_OBJECT_LOCK (self);
  gboolean roi_changed = self->roi_changed;
  GST_OBJECT_UNLOCK (self);
  if (swapped) {
    learn_stop (self);
    adopt_model_facts (self);
  }
  if (!swapped && !roi_changed)
    return TRUE;
  return gst_ae_anomaly_configure (self, &GST_VIDEO_FILTER (self)->in_info);
}

/* ---- Results out ------------------------------------------------------------------------------ */

/* regions: a GstValueArray of "anomaly-region" structures. */
static void
regions_value (const GstAeResult *r, GValue *out)
{
  g_value_init (out, GST_TYPE_ARRAY);
  for (guint i = 0; i < r->n_regions; i++) {
    const GstAeRegion *g = &r->regions[i];
    GValue v = G_VALUE_INIT;
    g_value_init (&v, GST_TYPE_STRUCTURE);
    g_value_take_boxed (&v, gst_structure_new ("anomaly-region",
        "x", G_TYPE_INT, g->x, "y", G_TYPE_INT, g->y, "w", G_TYPE_INT, g->w,
        "h", G_TYPE_INT, g->h, "score", G_TYPE_DOUBLE, g->score,
        "area", G_TYPE_INT, g->area, NULL));
    gst_value_array_append_and_take_value (out, &v);
  }
}

/* Fields every message shares, as the level element posts them. */
static GstStructure *
mark_structure (const gchar *name, const GstAeMark *m)
{
  return gst_structure_new (name,
      "timestamp", G_TYPE_UINT64, m->pts,
      "stream-time", G_TYPE_UINT64, m->stream_time,
      "running-time", G_TYPE_UINT64, m->running_time,
      "duration", G_TYPE_UINT64, m->duration,
      "frame", G_TYPE_UINT64, m->frame, NULL);
}

static void
post_structure (GstAeAnomaly *self, GstStructure *s)
{
  gst_element_post_message (GST_ELEMENT (self), gst_message_new_element (GST_OBJECT (self), s));
}

static void
set_result_fields (GstStructure *s, const GstAeResult *r)
{
  GValue regions = G_VALUE_INIT;
  regions_value (r, &regions);
  gst_structure_set (s, "score", G_TYPE_DOUBLE, r->score,
      "threshold", G_TYPE_DOUBLE, r->threshold,
      "pixel-threshold", G_TYPE_DOUBLE, r->pixel_threshold,
      "anomalous", G_TYPE_BOOLEAN, r->anomalous, NULL);
  gst_structure_take_value (s, "regions", &regions);
}

/* The result on the buffer: the custom meta (also on skipped frames, then
 * with analysed=FALSE and the analysed frame's number) and ROI metas. */
static void
attach_metas (GstAeAnomaly *self, GstBuffer *buffer)
{
  const GstAeResult *r = &self->result;
  GstCustomMeta *meta = gst_buffer_add_custom_meta (buffer, GST_AE_ANOMALY_META_NAME);
  GstStructure *s = gst_custom_meta_get_structure (meta);
  set_result_fields (s, r);
  gst_structure_set (s, "frame", G_TYPE_UINT64, r->frame,
      "analysed", G_TYPE_BOOLEAN, r->frame == self->frame_index, NULL);
  for (guint i = 0; i < r->n_regions; i++) {
    const GstAeRegion *g = &r->regions[i];
    GstVideoRegionOfInterestMeta *roi = gst_buffer_add_video_region_of_interest_meta (buffer,
        "anomaly", (guint) g->x, (guint) g->y, (guint) g->w, (guint) g->h);
    roi->id = (gint) i;
    gst_video_region_of_interest_meta_add_param (roi, gst_structure_new ("aeanomaly",
        "score", G_TYPE_DOUBLE, g->score, "area", G_TYPE_INT, g->area, NULL));
  }
}

static void
post_result (GstAeAnomaly *self, const GstAeMark *m)
{
  GstStructure *s = mark_structure ("aeanomaly", m);
  set_result_fields (s, &self->result);
  post_structure (self, s);
}

static void
end_event (GstAeAnomaly *self, const GstAeMark *at, gboolean eos, gboolean post)
{
  self->in_event = FALSE;
  self->run_above = self->run_below = 0;
  if (!post)
    return;
  GstStructure *s = mark_structure ("aeanomaly-end", at);
  gst_structure_set (s, "begin-frame", G_TYPE_UINT64, self->event_begin_frame,
      "peak-score", G_TYPE_DOUBLE, self->event_peak, "eos", G_TYPE_BOOLEAN, eos, NULL);
  post_structure (self, s);
}

/* Hysteresis over analysed frames, as motioncells does it: an event begins
 * after event-frames anomalous frames in a row (stamped with the first of
 * them) and ends after event-gap normal ones (stamped with the first). */
static void
update_events (GstAeAnomaly *self, const GstAeSettings *set, const GstAeMark *m)
{
  const GstAeResult *r = &self->result;
  if (r->anomalous)
    self->event_peak = self->run_above || self->in_event ? MAX (self->event_peak, r->score)
                                                         : r->score;
  if (!self->in_event) {
    if (!r->anomalous) {
      self->run_above = 0;
      return;
    }
    if (self->run_above++ == 0)
      self->run_start = *m;
    if (self->run_above < set->event_frames)
      return;
    self->in_event = TRUE;
    self->run_below = 0;
    self->event_begin_frame = self->run_start.frame;
    if (set->post_messages) {
      GstStructure *s = mark_structure ("aeanomaly-begin", &self->run_start);
      gst_structure_set (s, "score", G_TYPE_DOUBLE, r->score, "threshold", G_TYPE_DOUBLE,
                         r->threshold, NULL);
      post_structure (self, s);
    }
    return;
  }
  if (r->anomalous) {
    self->run_below = 0;
    return;
  }
  if (self->run_below++ == 0)
    self->gap_start = *m;
  if (self->run_below >= set->event_gap)
    end_event (self, &self->gap_start, FALSE, set->post_messages);
}

/* JSON has no NaN or infinity. */
static void
json_number (FILE *f, gdouble v)
{
  gchar buf[G_ASCII_DTOSTR_BUF_SIZE];
  fputs (isfinite (v) ? g_ascii_formatd (buf, sizeof buf, "%.9g", v) : "null", f);
}

static gboolean
write_event_line (GstAeAnomaly *self, const GstAeMark *m)
{
  FILE *f = self->events;
  const GstAeResult *r = &self->result;
  fprintf (f, "{\"frame\":%" G_GUINT64_FORMAT ",\"pts\":", m->frame);
  if (GST_CLOCK_TIME_IS_VALID (m->pts))
    fprintf (f, "%" G_GUINT64_FORMAT, m->pts);
  else
    fputs ("null", f);
  fputs (",\"score\":", f);
  json_number (f, r->score);
  fputs (",\"threshold\":", f);
  json_number (f, r->threshold);
  fprintf (f, ",\"anomalous\":%s,\"regions\":[", r->anomalous ? "true" : "false");
  for (guint i = 0; i < r->n_regions; i++)
    fprintf (f, "%s[%d,%d,%d,%d]", i ? "," : "", r->regions[i].x, r->regions[i].y,
             r->regions[i].w, r->regions[i].h);
  fputs ("]}\n", f);
  return fflush (f) == 0 && !ferror (f);
}

static gboolean
write_map (GstAeAnomaly *self)
{
  gsize n = (gsize) self->shape.roi.w * self->shape.roi.h;
  return fwrite (self->buf.smooth, sizeof (float), n, self->maps) == n;
}

/* Messages, events, the JSON line and the map of an analysed frame. */
static gboolean
publish (GstAeAnomaly *self, GstBuffer *buffer, const GstAeSettings *set)
{
  GstAeMark m;
  make_mark (self, buffer, &m);
  self->last_mark = m;
  if (set->post_messages)
    post_result (self, &m);
  update_events (self, set, &m);
  if (self->events && !write_event_line (self, &m)) {
    GST_ELEMENT_ERROR (self, RESOURCE, WRITE, ("Could not write to the events file."),
                       GST_ERROR_SYSTEM);
    return FALSE;
  }
  if (self->maps && !write_map (self)) {
    GST_ELEMENT_ERROR (self, RESOURCE, WRITE, ("Could not write to the map file."),
                       GST_ERROR_SYSTEM);
    return FALSE;
  }
  return TRUE;
}

/* ---- Drawing ----------------------------------------------------------------------------------- */

/* Colour components only: alpha stays as it is. */
static gint
colour_components (const GstVideoFrame *f)
{
  return MIN ((gint) GST_VIDEO_FRAME_N_COMPONENTS (f), 3);
}

/* The same red in RGB and in BT.601 YUV; white on gray. */
static void
overlay_colour (const GstVideoFrame *f, guint8 col[3])
{
  static const guint8 rgb[3] = { 255, 48, 32 }, yuv[3] = { 109, 90, 220 };
  memcpy (col, GST_VIDEO_INFO_IS_RGB (&f->info) ? rgb : yuv, 3);
  if (GST_VIDEO_INFO_IS_GRAY (&f->info))
    col[0] = 255;
}

/* Pixels below half the pixel threshold stay clear; the tint grows to
 * 70% at twice the threshold. */
static inline float
overlay_alpha (float ratio)
{
  return CLAMP ((ratio - 0.5f) / 1.5f, 0.0f, 1.0f) * 0.7f;
}

static inline guint8 *
comp_sample (GstVideoFrame *f, gint c, gint x, gint y)
{
  const GstVideoFormatInfo *fi = f->info.finfo;
  gint cx = x >> GST_VIDEO_FORMAT_INFO_W_SUB (fi, c), cy = y >> GST_VIDEO_FORMAT_INFO_H_SUB (fi, c);
  return (guint8 *) GST_VIDEO_FRAME_COMP_DATA (f, c) + cy * GST_VIDEO_FRAME_COMP_STRIDE (f, c)
       + cx * GST_VIDEO_FRAME_COMP_PSTRIDE (f, c);
}

/* Blends every component sample covering the roi towards the overlay
 * colour; subsampled chroma takes the map at its top-left luma pixel. */
static void
blend_map (GstVideoFrame *f, const GstVideoRectangle *r, const float *map, float pthr)
{
  const GstVideoFormatInfo *fi = f->info.finfo;
  guint8 col[3];
  overlay_colour (f, col);
  for (gint c = 0; c < colour_components (f); c++) {
    gint ws = GST_VIDEO_FORMAT_INFO_W_SUB (fi, c), hs = GST_VIDEO_FORMAT_INFO_H_SUB (fi, c);
    gint ps = GST_VIDEO_FRAME_COMP_PSTRIDE (f, c);
    for (gint cy = r->y >> hs; cy <= (r->y + r->h - 1) >> hs; cy++) {
      gint y = CLAMP (cy << hs, r->y, r->y + r->h - 1) - r->y;
      guint8 *row = comp_sample (f, c, 0, cy << hs);
      for (gint cx = r->x >> ws; cx <= (r->x + r->w - 1) >> ws; cx++) {
        gint x = CLAMP (cx << ws, r->x, r->x + r->w - 1) - r->x;
        float a = overlay_alpha (map[(gsize) y * r->w + x] / pthr);
        guint8 *p = row + cx * ps;
        if (a > 0.0f)
          *p = (guint8) (*p + a * (float) (col[c] - *p) + 0.5f);
      }
    }
  }
}

static void
draw_boxes (GstVideoFrame *f, const GstAeResult *res)
{
  guint8 col[3];
  gint n = colour_components (f);
  overlay_colour (f, col);
  for (guint i = 0; i < res->n_regions; i++) {
    const GstAeRegion *g = &res->regions[i];
    gint x1 = g->x + g->w - 1, y1 = g->y + g->h - 1;
    for (gint c = 0; c < n; c++) {
      for (gint x = g->x; x <= x1; x++)
        *comp_sample (f, c, x, g->y) = *comp_sample (f, c, x, y1) = col[c];
      for (gint y = g->y; y <= y1; y++)
        *comp_sample (f, c, g->x, y) = *comp_sample (f, c, x1, y) = col[c];
    }
  }
}

/* luma = clamp (128 * map / pixel_threshold): mid-gray is the pixel
 * threshold, black outside the roi; chroma neutral. */
static void
paint_heatmap (GstVideoFrame *f, const GstVideoRectangle *r, const float *map, float pthr)
{
  gboolean rgb = GST_VIDEO_INFO_IS_RGB (&f->info);
  for (gint c = 0; c < colour_components (f); c++) {
    gint w = GST_VIDEO_FRAME_COMP_WIDTH (f, c), h = GST_VIDEO_FRAME_COMP_HEIGHT (f, c);
    gint ps = GST_VIDEO_FRAME_COMP_PSTRIDE (f, c);
    gboolean luma = rgb || c == 0; /* never subsampled */
    for (gint y = 0; y < h; y++) {
      guint8 *row = (guint8 *) GST_VIDEO_FRAME_COMP_DATA (f, c) + y * GST_VIDEO_FRAME_COMP_STRIDE (f, c);
      gboolean in_y = luma && y >= r->y && y < r->y + r->h;
      for (gint x = 0; x < w; x++) {
        float v = 0.0f;
        if (!luma)
          v = 128.0f;
        else if (in_y && x >= r->x && x < r->x + r->w)
          v = CLAMP (128.0f * map[(gsize) (y - r->y) * r->w + (x - r->x)] / pthr, 0.0f, 255.0f);
        row[x * ps] = (guint8) (v + 0.5f);
      }
    }
  }
}

static void
draw_output (GstAeAnomaly *self, GstVideoFrame *frame, GstAeAnomalyOutput output)
{
  const GstAeResult *r = &self->result;
  float pthr = (float) r->pixel_threshold;
  if (output == GST_AE_ANOMALY_OUTPUT_OVERLAY) {
    blend_map (frame, &self->shape.roi, self->buf.smooth, pthr);
    draw_boxes (frame, r);
  } else if (output == GST_AE_ANOMALY_OUTPUT_HEATMAP) {
    paint_heatmap (frame, &self->shape.roi, self->buf.smooth, pthr);
  }
}

/* ---- GstBaseTransform / GstVideoFilter ------------------------------------------------------ */

/* Opens (truncates) an output file named by a property, if it is set. */
static gboolean
open_output (GstAeAnomaly *self, gchar *const *location, const gchar *what, FILE **out)
{
  GST_OBJECT_LOCK (self);
  gchar *path = g_strdup (*location);
  GST_OBJECT_UNLOCK (self);
  if (path && *path) {
    *out = g_fopen (path, "wb");
    if (!*out)
      GST_ELEMENT_ERROR (self, RESOURCE, OPEN_WRITE,
                         ("Could not open %s file \"%s\" for writing.", what, path),
                         GST_ERROR_SYSTEM);
  }
  gboolean ok = !(path && *path) || *out;
  g_free (path);
  return ok;
}

static gboolean
open_outputs (GstAeAnomaly *self)
{
  if (open_output (self, &self->events_location, "events", &self->events)
      && open_output (self, &self->map_location, "map", &self->maps))
    return TRUE;
  g_clear_pointer (&self->events, fclose);
  return FALSE;
}

static void
reset_stream_state (GstAeAnomaly *self)
{
  self->next_frame = self->frame_index = self->since_model = 0;
  self->result.valid = FALSE;
  self->in_event = FALSE;
  self->run_above = self->run_below = 0;
  mark_init (&self->last_mark);
  g_atomic_int_set (&self->cancel, 0);
}

static gboolean
gst_ae_anomaly_start (GstBaseTransform *trans)
{
  GstAeAnomaly *self = GST_AE_ANOMALY (trans);
  GError *error = NULL;
  reset_stream_state (self);
  if (!open_outputs (self))
    return FALSE;
  GST_OBJECT_LOCK (self);
  self->running = TRUE;
  GST_OBJECT_UNLOCK (self);
  gchar *location = gst_ae_model_slot_dup_location (&self->slot);
  gboolean learn = !location || !*location;
  if (learn) {
    self->learn_state = LEARN_COLLECT;
    GST_INFO_OBJECT (self, "no model: learning online");
  } else if (gst_ae_model_slot_load (&self->slot, GST_ELEMENT (self), &error)) {
    self->learn_state = LEARN_NONE;
    adopt_model_facts (self);
  } else {
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
                       ("Could not load the anomaly model: %s", error->message),
                       ("model=%s", location));
    g_error_free (error);
    g_free (location);
    GST_OBJECT_LOCK (self);
    self->running = FALSE;
    GST_OBJECT_UNLOCK (self);
    g_clear_pointer (&self->events, fclose);
    g_clear_pointer (&self->maps, fclose);
    return FALSE;
  }
  g_free (location);
  return TRUE;
}

static gboolean
gst_ae_anomaly_stop (GstBaseTransform *trans)
{
  GstAeAnomaly *self = GST_AE_ANOMALY (trans);
  learn_stop (self);
  GST_OBJECT_LOCK (self);
  self->running = FALSE;
  self->have_caps = FALSE;
  self->model_threshold = NAN;
  self->latent_score = FALSE;
  GST_OBJECT_UNLOCK (self);
  /* Sessions point at their model: free them first. */
  free_runners (self);
  gst_ae_model_slot_unload (&self->slot);
  buffers_free (&self->buf);
  g_clear_pointer (&self->events, fclose);
  g_clear_pointer (&self->maps, fclose);
  return TRUE;
}

static gboolean
gst_ae_anomaly_set_info (GstVideoFilter *filter, GstCaps *incaps, GstVideoInfo *in_info,
                         GstCaps *outcaps, GstVideoInfo *out_info)
{
  (void) incaps;
  (void) outcaps;
  (void) out_info;
  return gst_ae_anomaly_configure (GST_AE_ANOMALY (filter), in_info);
}

/* Runs for every buffer, also those QoS then drops, so `frame` counts
 * all buffers; also drives the controllable threshold. */
static void
gst_ae_anomaly_before_transform (GstBaseTransform *trans, GstBuffer *buffer)
{
  GstAeAnomaly *self = GST_AE_ANOMALY (trans);
  GstClockTime st = gst_segment_to_stream_time (&trans->segment, GST_FORMAT_TIME,
                                                GST_BUFFER_PTS (buffer));
  self->frame_index = self->next_frame++;
  if (GST_CLOCK_TIME_IS_VALID (st))
    gst_object_sync_values (GST_OBJECT (self), st);
}

static GstFlowReturn
gst_ae_anomaly_transform_frame_ip (GstVideoFilter *filter, GstVideoFrame *frame)
{
  GstAeAnomaly *self = GST_AE_ANOMALY (filter);
  GstAeSettings set;
  if (!update_model (self))
    return GST_FLOW_ERROR;
  if (!self->stripes)
    return learn_collect (self, frame) ? GST_FLOW_OK : GST_FLOW_ERROR;
  read_settings (self, &set);
  warn_if_uncalibrated (self, &set);
  /* Skipped frames really skip: no read, no network, only the last result. */
  if (!self->result.valid || self->since_model % set.interval == 0) {
    if (!analyse_frame (self, frame, &set) || !publish (self, frame->buffer, &set))
      return GST_FLOW_ERROR;
  }
  self->since_model++;
  attach_metas (self, frame->buffer);
  draw_output (self, frame, set.output);
  return GST_FLOW_OK;
}

/* An event still open at the end of the stream ends there. */
static gboolean
gst_ae_anomaly_sink_event (GstBaseTransform *trans, GstEvent *event)
{
  GstAeAnomaly *self = GST_AE_ANOMALY (trans);
  if (GST_EVENT_TYPE (event) == GST_EVENT_EOS && self->in_event) {
    GST_OBJECT_LOCK (self);
    gboolean post = self->post_messages;
    GST_OBJECT_UNLOCK (self);
    end_event (self, &self->last_mark, TRUE, post);
  }
  return GST_BASE_TRANSFORM_CLASS (parent_class)->sink_event (trans, event);
}

/* ---- Properties ----------------------------------------------------------------------------- */

static void
set_model (GstAeAnomaly *self, const gchar *location)
{
  GST_OBJECT_LOCK (self);
  /* Clearing the model while running cannot start a collection midway:
   * it only takes effect (online learning) at the next start. */
  gboolean load_now = self->running && location && *location;
  GST_OBJECT_UNLOCK (self);
  gst_ae_model_slot_set_location (&self->slot, GST_ELEMENT (self), location, load_now);
}

static void
set_aggregate (GstAeAnomaly *self, const gchar *name)
{
  float top;
  if (name && *name && !ae_aggregate_from_name (name, &top)) {
    g_warning ("aeanomaly: ignoring aggregate \"%s\": expected mean, max or top:P "
               "(0 < P < 100)", name);
    return;
  }
  GST_OBJECT_LOCK (self);
  g_free (self->aggregate);
  self->aggregate = name && *name ? g_strdup (name) : NULL;
  GST_OBJECT_UNLOCK (self);
}

static void
set_roi (GstAeAnomaly *self, const gchar *str)
{
  gboolean set;
  GstVideoRectangle r = { 0, 0, 0, 0 };
  if (!gst_ae_parse_roi (str, &set, &r)) {
    g_warning ("aeanomaly: ignoring roi \"%s\": expected \"x,y,w,h\" with w, h > 0", str);
    return;
  }
  GST_OBJECT_LOCK (self);
  g_free (self->roi_str);
  self->roi_str = set ? g_strdup_printf ("%d,%d,%d,%d", r.x, r.y, r.w, r.h) : NULL;
  self->roi_set = set;
  self->roi_prop = r;
  self->roi_changed = TRUE;
  GST_OBJECT_UNLOCK (self);
}

/* The threshold in force: the property, else the model's calibration,
 * else -1. */
static gdouble
threshold_in_force (GstAeAnomaly *self)
{
  if (self->threshold >= 0)
    return self->threshold;
  return isnan (self->model_threshold) ? -1.0 : self->model_threshold;
}

static void
gst_ae_anomaly_set_property (GObject *object, guint prop_id, const GValue *value,
                             GParamSpec *pspec)
{
  GstAeAnomaly *self = GST_AE_ANOMALY (object);
  if (prop_id == PROP_MODEL) {
    set_model (self, g_value_get_string (value));
    return;
  }
  if (prop_id == PROP_ROI) {
    set_roi (self, g_value_get_string (value));
    return;
  }
  if (prop_id == PROP_AGGREGATE) {
    set_aggregate (self, g_value_get_string (value));
    return;
  }
  GST_OBJECT_LOCK (self);
  switch (prop_id) {
  case PROP_THRESHOLD:
    self->threshold = g_value_get_double (value);
    break;
  case PROP_PIXEL_THRESHOLD:
    self->pixel_threshold = g_value_get_double (value);
    break;
  case PROP_INTERVAL:
    self->interval = g_value_get_uint (value);
    break;
  case PROP_OUTPUT:
    self->output = (GstAeAnomalyOutput) g_value_get_enum (value);
    break;
  case PROP_MIN_REGION_AREA:
    self->min_region_area = g_value_get_uint (value);
    break;
  case PROP_POST_MESSAGES:
    self->post_messages = g_value_get_boolean (value);
    break;
  case PROP_EVENTS_LOCATION:
    g_free (self->events_location);
    self->events_location = g_value_dup_string (value);
    break;
  case PROP_EVENT_FRAMES:
    self->event_frames = g_value_get_uint (value);
    break;
  case PROP_EVENT_GAP:
    self->event_gap = g_value_get_uint (value);
    break;
  case PROP_LEARN_EPOCHS:
    self->learn_epochs = g_value_get_int (value);
    break;
  case PROP_LEARN_MAP:
    self->learn_map = (GstAeAnomalyLearnMap) g_value_get_enum (value);
    break;
  case PROP_LEARN_LOSS:
    self->learn_loss = (GstAeAnomalyLearnLoss) g_value_get_enum (value);
    break;
  case PROP_LEARN_CONTRAST:
    self->learn_contrast = g_value_get_double (value);
    break;
  case PROP_LEARN_FRAMES:
    self->learn_frames = g_value_get_int (value);
    break;
  case PROP_SAVE_MODEL:
    g_free (self->save_model);
    self->save_model = g_value_dup_string (value);
    break;
  case PROP_SMOOTH_RADIUS:
    self->smooth_radius = g_value_get_int (value);
    break;
  case PROP_BORDER:
    self->border = g_value_get_int (value);
    break;
  case PROP_MAP_LOCATION:
    g_free (self->map_location);
    self->map_location = g_value_dup_string (value);
    break;
  case PROP_THREADS:
    self->threads = g_value_get_int (value);
    break;
  default:
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_ae_anomaly_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  GstAeAnomaly *self = GST_AE_ANOMALY (object);
  if (prop_id == PROP_MODEL) {
    g_value_take_string (value, gst_ae_model_slot_dup_location (&self->slot));
    return;
  }
  GST_OBJECT_LOCK (self);
  switch (prop_id) {
  case PROP_THRESHOLD:
    g_value_set_double (value, threshold_in_force (self));
    break;
  case PROP_PIXEL_THRESHOLD: {
    gdouble t = map_threshold_base (self, threshold_in_force (self));
    g_value_set_double (value, self->pixel_threshold > 0 ? self->pixel_threshold
                               : t >= 0 ? pixel_factor (aggregate_in_force (self)) * t : -1.0);
    break;
  }
  case PROP_INTERVAL:
    g_value_set_uint (value, self->interval);
    break;
  case PROP_ROI:
    g_value_set_string (value, self->roi_str);
    break;
  case PROP_OUTPUT:
    g_value_set_enum (value, self->output);
    break;
  case PROP_MIN_REGION_AREA:
    g_value_set_uint (value, self->min_region_area);
    break;
  case PROP_POST_MESSAGES:
    g_value_set_boolean (value, self->post_messages);
    break;
  case PROP_EVENTS_LOCATION:
    g_value_set_string (value, self->events_location);
    break;
  case PROP_EVENT_FRAMES:
    g_value_set_uint (value, self->event_frames);
    break;
  case PROP_EVENT_GAP:
    g_value_set_uint (value, self->event_gap);
    break;
  case PROP_LEARN_EPOCHS:
    g_value_set_int (value, self->learn_epochs);
    break;
  case PROP_LEARN_MAP:
    g_value_set_enum (value, self->learn_map);
    break;
  case PROP_LEARN_LOSS:
    g_value_set_enum (value, self->learn_loss);
    break;
  case PROP_LEARN_CONTRAST:
    g_value_set_double (value, self->learn_contrast);
    break;
  case PROP_LEARN_FRAMES:
    g_value_set_int (value, self->learn_frames);
    break;
  case PROP_SAVE_MODEL:
    g_value_set_string (value, self->save_model);
    break;
  case PROP_AGGREGATE:
    g_value_set_string (value, self->aggregate ? self->aggregate : self->model_aggregate);
    break;
  case PROP_SMOOTH_RADIUS:
    g_value_set_int (value, self->smooth_radius >= 0 ? self->smooth_radius
                            : self->model_aggregate ? self->model_smooth_radius : -1);
    break;
  case PROP_BORDER:
    g_value_set_int (value, self->border >= 0 ? self->border
                            : self->model_aggregate ? self->model_border : -1);
    break;
  case PROP_MAP_LOCATION:
    g_value_set_string (value, self->map_location);
    break;
  case PROP_THREADS:
    g_value_set_int (value, self->threads);
    break;
  default:
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    break;
  }
  GST_OBJECT_UNLOCK (self);
}

static void
gst_ae_anomaly_finalize (GObject *object)
{
  GstAeAnomaly *self = GST_AE_ANOMALY (object);
  learn_stop (self);
  free_runners (self);
  buffers_free (&self->buf);
  gst_ae_model_slot_clear (&self->slot);
  g_clear_pointer (&self->events, fclose);
  g_clear_pointer (&self->maps, fclose);
  g_free (self->events_location);
  g_free (self->save_model);
  g_free (self->roi_str);
  g_free (self->aggregate);
  g_free (self->model_aggregate);
  g_free (self->map_location);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

#define RW_FLAGS (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS)

static void
install_detection_properties (GObjectClass *oc)
{
  g_object_class_install_property (oc, PROP_MODEL,
      g_param_spec_string ("model", "Model",
          "Anomaly model (.aem, e.g. from ae-train --task anomaly); unset: learn online from "
          "the first learn-frames frames. Can be changed while PLAYING (loaded in the "
          "background; a model that does not load or fit is refused with a warning)",
          NULL, RW_FLAGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (oc, PROP_THRESHOLD,
      g_param_spec_double ("threshold", "Threshold",
          "Frame score above which a frame is anomalous; -1 (or NaN): the model's calibrated "
          "anomaly.threshold. Reads back the threshold in force (-1 if none yet)",
          -1.0, G_MAXDOUBLE, DEFAULT_THRESHOLD,
          RW_FLAGS | GST_PARAM_MUTABLE_PLAYING | GST_PARAM_CONTROLLABLE));
  g_object_class_install_property (oc, PROP_PIXEL_THRESHOLD,
      g_param_spec_double ("pixel-threshold", "Pixel threshold",
          "Smoothed per-pixel error above which pixels form regions; <= 0: 4 x threshold. "
          "Reads back the value in force",
          -1.0, G_MAXDOUBLE, DEFAULT_PIXEL_THRESHOLD, RW_FLAGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (oc, PROP_INTERVAL,
      g_param_spec_uint ("interval", "Interval",
          "Analyse every Nth frame; the others carry the last result and cost nothing",
          1, 1000000, DEFAULT_INTERVAL, RW_FLAGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (oc, PROP_ROI,
      g_param_spec_string ("roi", "Region of interest",
          "Analyse only this rectangle, \"x,y,w,h\" in pixels (also \"<x,y,w,h>\"); empty: the "
          "whole frame. Regions are reported in full-frame coordinates",
          NULL, RW_FLAGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (oc, PROP_OUTPUT,
      g_param_spec_enum ("output", "Output", "What the outgoing frames show",
          GST_TYPE_AE_ANOMALY_OUTPUT, DEFAULT_OUTPUT, RW_FLAGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (oc, PROP_MIN_REGION_AREA,
      g_param_spec_uint ("min-region-area", "Minimum region area",
          "Regions with fewer pixels are not reported", 1, G_MAXINT,
          DEFAULT_MIN_REGION_AREA, RW_FLAGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (oc, PROP_AGGREGATE,
      g_param_spec_string ("aggregate", "Aggregate",
          "How the anomaly map becomes the frame score: \"mean\" (of the raw map), \"max\" "
          "(of the smoothed map) or \"top:P\" (mean of its largest P %); unset: the model's "
          "anomaly.aggregate (the threshold was calibrated with it). Reads back the one in force",
          NULL, RW_FLAGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (oc, PROP_SMOOTH_RADIUS,
      g_param_spec_int ("smooth-radius", "Smooth radius",
          "Radius of the box that smooths the anomaly map (0: none); -1: the model's "
          "anomaly.smooth_radius, else 2. Reads back the one in force",
          -1, MAX_SMOOTH_RADIUS, DEFAULT_SMOOTH_RADIUS, RW_FLAGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (oc, PROP_BORDER,
      g_param_spec_int ("border", "Border",
          "Pixels at the edges of the analysed area left out of the frame score and regions "
          "(fully convolutional models err more there on normal frames too); -1: the model's "
          "anomaly.border, else 0. Reads back the one in force",
          -1, MAX_BORDER, DEFAULT_BORDER, RW_FLAGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (oc, PROP_THREADS,
      g_param_spec_int ("threads", "Threads",
          "Worker threads, each running the model over a horizontal stripe of the frame; 0: one "
          "per CPU. With more than one, OpenBLAS is set to one thread (process-wide)",
          0, MAX_THREADS, DEFAULT_THREADS, RW_FLAGS | GST_PARAM_MUTABLE_READY));
}

static void
install_report_properties (GObjectClass *oc)
{
  g_object_class_install_property (oc, PROP_POST_MESSAGES,
      g_param_spec_boolean ("post-messages", "Post messages",
          "Post \"aeanomaly\" element messages for analysed frames and "
          "\"aeanomaly-begin\"/\"aeanomaly-end\" for events",
          DEFAULT_POST_MESSAGES, RW_FLAGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (oc, PROP_EVENTS_LOCATION,
      g_param_spec_string ("events-location", "Events location",
          "Write one JSON Lines record per analysed frame to this file (truncated at start)",
          NULL, RW_FLAGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (oc, PROP_MAP_LOCATION,
      g_param_spec_string ("map-location", "Map location",
          "Append each analysed frame's smoothed anomaly map to this file as float32 (native "
          "byte order), roi width x height values in rows (truncated at start)",
          NULL, RW_FLAGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (oc, PROP_EVENT_FRAMES,
      g_param_spec_uint ("event-frames", "Event frames",
          "Consecutive anomalous analysed frames that begin an event", 1, 100000,
          DEFAULT_EVENT_FRAMES, RW_FLAGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (oc, PROP_EVENT_GAP,
      g_param_spec_uint ("event-gap", "Event gap",
          "Consecutive normal analysed frames that end an event", 1, 100000,
          DEFAULT_EVENT_GAP, RW_FLAGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (oc, PROP_LEARN_FRAMES,
      g_param_spec_int ("learn-frames", "Learn frames",
          "Without a model: frames to collect before training online", 2, 100000,
          DEFAULT_LEARN_FRAMES, RW_FLAGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (oc, PROP_LEARN_EPOCHS,
      g_param_spec_int ("learn-epochs", "Learn epochs",
          "Without a model: training epochs over the collected frames (fewer: detecting "
          "sooner, with a weaker model)", 1, 1000, DEFAULT_LEARN_EPOCHS,
          RW_FLAGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (oc, PROP_LEARN_MAP,
      g_param_spec_enum ("learn-map", "Learn map",
          "Without a model: the learned model's anomaly map (mse: squared error; ssim: "
          "1 - SSIM; mix: both, each over its mean on the held-out frames)",
          GST_TYPE_AE_ANOMALY_LEARN_MAP, DEFAULT_LEARN_MAP, RW_FLAGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (oc, PROP_LEARN_LOSS,
      g_param_spec_enum ("learn-loss", "Learn loss",
          "Without a model: the learned model's training loss (mse; ssim: for regular "
          "patterns such as circuit boards, with learn-map=ssim)",
          GST_TYPE_AE_ANOMALY_LEARN_LOSS, DEFAULT_LEARN_LOSS, RW_FLAGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (oc, PROP_LEARN_CONTRAST,
      g_param_spec_double ("learn-contrast", "Learn contrast",
          "Without a model: the learned map's lost-contrast weight, in units of the map's mean "
          "on the held-out frames, added per halving of the local contrast below their floor "
          "(texture worn flat; 0: off)", 0.0, MAX_LEARN_CONTRAST, DEFAULT_LEARN_CONTRAST,
          RW_FLAGS | GST_PARAM_MUTABLE_READY));
  g_object_class_install_property (oc, PROP_SAVE_MODEL,
      g_param_spec_string ("save-model", "Save model",
          "Write the model learned online to this file (with ae-train's metadata)",
          NULL, RW_FLAGS | GST_PARAM_MUTABLE_PLAYING));
}

static void
gst_ae_anomaly_class_init (GstAeAnomalyClass *klass)
{
  GObjectClass *oc = G_OBJECT_CLASS (klass);
  GstElementClass *ec = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *bt = GST_BASE_TRANSFORM_CLASS (klass);
  GstVideoFilterClass *vf = GST_VIDEO_FILTER_CLASS (klass);

  GST_DEBUG_CATEGORY_INIT (gst_ae_anomaly_debug, "aeanomaly", 0, "autoencoder anomaly detector");
  register_meta ();

  oc->set_property = gst_ae_anomaly_set_property;
  oc->get_property = gst_ae_anomaly_get_property;
  oc->finalize = gst_ae_anomaly_finalize;
  install_detection_properties (oc);
  install_report_properties (oc);

  gst_element_class_add_static_pad_template (ec, &sink_template);
  gst_element_class_add_static_pad_template (ec, &src_template);
  gst_element_class_set_static_metadata (ec, "Autoencoder anomaly detector",
      "Filter/Analyzer/Video",
      "Scores frames by an autoencoder's reconstruction error and reports anomalous regions",
      "gst-autoencoder developers");

  bt->start = GST_DEBUG_FUNCPTR (gst_ae_anomaly_start);
  bt->stop = GST_DEBUG_FUNCPTR (gst_ae_anomaly_stop);
  bt->before_transform = GST_DEBUG_FUNCPTR (gst_ae_anomaly_before_transform);
  bt->sink_event = GST_DEBUG_FUNCPTR (gst_ae_anomaly_sink_event);
  vf->set_info = GST_DEBUG_FUNCPTR (gst_ae_anomaly_set_info);
  vf->transform_frame_ip = GST_DEBUG_FUNCPTR (gst_ae_anomaly_transform_frame_ip);

  gst_type_mark_as_plugin_api (GST_TYPE_AE_ANOMALY_OUTPUT, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_AE_ANOMALY_LEARN_MAP, 0);
  gst_type_mark_as_plugin_api (GST_TYPE_AE_ANOMALY_LEARN_LOSS, 0);
}

static void
gst_ae_anomaly_init (GstAeAnomaly *self)
{
  gst_ae_model_slot_init (&self->slot, NULL, gst_ae_anomaly_check_model);
  self->threshold = DEFAULT_THRESHOLD;
  self->pixel_threshold = DEFAULT_PIXEL_THRESHOLD;
  self->interval = DEFAULT_INTERVAL;
  self->output = DEFAULT_OUTPUT;
  self->min_region_area = DEFAULT_MIN_REGION_AREA;
  self->post_messages = DEFAULT_POST_MESSAGES;
  self->event_frames = DEFAULT_EVENT_FRAMES;
  self->event_gap = DEFAULT_EVENT_GAP;
  self->learn_frames = DEFAULT_LEARN_FRAMES;
  self->learn_epochs = DEFAULT_LEARN_EPOCHS;
  self->learn_map = DEFAULT_LEARN_MAP;
  self->learn_loss = DEFAULT_LEARN_LOSS;
  self->learn_contrast = DEFAULT_LEARN_CONTRAST;
  self->smooth_radius = DEFAULT_SMOOTH_RADIUS;
  self->border = DEFAULT_BORDER;
  self->threads = DEFAULT_THREADS;
  self->model_map_threshold = NAN;
  self->model_threshold = NAN;
  mark_init (&self->last_mark);
}
