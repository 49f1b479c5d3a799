/* aeanomaly element tests: GstHarness around the element from the build
 * tree (GST_PLUGIN_PATH), with small models trained here by libae on
 * synthetic textures, so no external data is needed.
 *
 * One "ok"/"not ok" line per check; the exit status is the failure count. */
#include "check.h"
#include "element_test.h"

#include <ae.h>
#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gst/video/video.h>

#include <glib/gstdio.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define W 32
#define H 32
#define DEFECT 5
#define META "AeAnomalyMeta"

static gchar *workdir;
static gchar *model_path;  /* fconv, luma, mean-mse */
static gchar *model2_path; /* the same weights, twice the threshold */
static gchar *ssim_path;   /* fconv, luma, mean-ssim */
static gchar *dense_path;  /* fixed 16x16 input: frames are resampled */
static gchar *vae_path;    /* a 16x16 VAE (conv preset with a sample layer) */
static gchar *rgb_path;    /* 3 channels, untrained */
static gdouble model_threshold;

static GstStaticPadTemplate src_templ = GST_STATIC_PAD_TEMPLATE ("src", GST_PAD_SRC,
    GST_PAD_ALWAYS, GST_STATIC_CAPS_ANY);
static GstStaticPadTemplate sink_templ = GST_STATIC_PAD_TEMPLATE ("sink", GST_PAD_SINK,
    GST_PAD_ALWAYS, GST_STATIC_CAPS_ANY);

/* ---- Synthetic data ------------------------------------------------------------------- */

/* A product of sines with a random phase: easy to learn, never repeats. */
static void
texture (guint8 *dst, gint w, gint h, GRand *rng)
{
  double px = g_rand_double_range (rng, 0, 8), py = g_rand_double_range (rng, 0, 8);
  for (gint y = 0; y < h; y++)
    for (gint x = 0; x < w; x++) {
      double v = 0.5 + 0.3 * sin (2 * G_PI * (x + px) / 8) * sin (2 * G_PI * (y + py) / 8);
      dst[y * w + x] = (guint8) lround (v * 255);
    }
}

/* A bright square: the defect every test looks for. */
static void
add_defect_sized (guint8 *dst, gint w, gint x0, gint y0, gint size)
{
  for (gint y = y0; y < y0 + size; y++)
    for (gint x = x0; x < x0 + size; x++)
      dst[y * w + x] = 255;
}

static void
add_defect (guint8 *dst, gint w, gint x0, gint y0)
{
  add_defect_sized (dst, w, x0, y0, DEFECT);
}

static void
to_float (const guint8 *src, float *dst, gsize n)
{
  for (gsize i = 0; i < n; i++)
    dst[i] = src[i] / 255.0f;
}

/* The element's definition of the frame score for an unpadded luma input. */
static double
reference_score (const ae_model *m, const guint8 *luma, gint w, gint h, ae_loss loss)
{
  gsize n = (gsize) w * h;
  float *x = g_new (float, n), *map = g_new (float, n), *scratch = g_new (float, 8 * n);
  ae_session *s = ae_session_new (m, 1, h, w, NULL);
  to_float (luma, x, n);
  ae_error_map (loss, x, ae_session_forward (s, x), 1, h, w, 7, map, scratch);
  double score = ae_score_top_mean (map, n, 1.0f, scratch);
  ae_session_free (s);
  g_free (scratch);
  g_free (map);
  g_free (x);
  return score;
}

/* `count` textures of h x w as network input (float luma). */
static float *
texture_set (gint h, gint w, gint count, guint32 seed)
{
  gsize n = (gsize) h * w;
  guint8 *img = g_new (guint8, n);
  float *x = g_new (float, count * n);
  GRand *rng = g_rand_new_with_seed (seed);
  for (gint i = 0; i < count; i++) {
    texture (img, w, h, rng);
    to_float (img, x + i * n, n);
  }
  g_rand_free (rng);
  g_free (img);
  return x;
}

static ae_model *
train_model (const char *arch, gint h, gint w, ae_loss loss, gint epochs)
{
  const gint count = 64;
  float *x = texture_set (h, w, count, 7);
  char spec[1024];
  ae_error err;
  ae_arch_preset (arch, 1, h, w, 16, spec, sizeof spec, &err);
  ae_model *m = ae_model_new (spec, 1, h, w, 3, &err);
  ae_train_opts o;
  ae_train_opts_init (&o);
  o.epochs = epochs;
  o.batch = 16;
  o.lr = 3e-3f;
  o.val_split = 0;
  o.loss = loss;
  ae_train_result r;
  ae_status st = ae_train (m, &(ae_dataset) { x, NULL, count, 1, h, w }, &o, &r, &err);
  CHECK (st == AE_OK, "train %s model (%s), final loss %.5f", arch, ae_loss_name (loss),
         r.final_train_loss);
  g_free (x);
  return m;
}

/* Threshold = `margin` times the largest score of fresh normal textures. */
static double
calibrate (const ae_model *m, gint h, gint w, ae_loss loss, double margin)
{
  guint8 *img = g_new (guint8, (gsize) h * w);
  GRand *rng = g_rand_new_with_seed (99);
  double max = 0;
  for (gint i = 0; i < 16; i++) {
    texture (img, w, h, rng);
    max = MAX (max, reference_score (m, img, w, h, loss));
  }
  g_rand_free (rng);
  g_free (img);
  return margin * max;
}

static gchar *
save_anomaly_model (ae_model *m, const char *name, const char *score, double threshold)
{
  gchar *path = g_build_filename (workdir, name, NULL);
  ae_model_set_str (m, "task", "anomaly");
  ae_model_set_str (m, "anomaly.score", score);
  ae_model_set_float (m, "anomaly.threshold", threshold);
  ae_error err;
  CHECK (ae_model_save (m, path, &err) == AE_OK, "save %s", name);
  return path;
}

static void
make_models (void)
{
  ae_model *m = train_model ("fconv", H, W, AE_LOSS_MSE, 15);
  model_threshold = calibrate (m, H, W, AE_LOSS_MSE, 2.0);
  model_path = save_anomaly_model (m, "fconv.aem", "mean-mse", model_threshold);
  model2_path = save_anomaly_model (m, "fconv2.aem", "mean-mse", 2 * model_threshold);
  ae_model_free (m);

  m = train_model ("fconv", H, W, AE_LOSS_SSIM, 8);
  ssim_path = save_anomaly_model (m, "ssim.aem", "mean-ssim", calibrate (m, H, W, AE_LOSS_SSIM, 1.25));
  ae_model_free (m);

  m = train_model ("conv", 16, 16, AE_LOSS_MSE, 10);
  dense_path = save_anomaly_model (m, "dense.aem", "mean-mse", 0.01);
  ae_model_free (m);

  m = train_model ("vae", 16, 16, AE_LOSS_MSE, 10);
  vae_path = save_anomaly_model (m, "vae.aem", "mean-mse", 0.01);
  ae_model_free (m);

  char spec[1024];
  ae_arch_preset ("fconv", 3, 16, 16, 8, spec, sizeof spec, NULL);
  m = ae_model_new (spec, 3, 16, 16, 1, NULL);
  rgb_path = save_anomaly_model (m, "rgb.aem", "mean-mse", 0.01);
  ae_model_free (m);
}

/* ---- Frames ----------------------------------------------------------------------------- */

/* Writes a luma image into any accepted format: Y (chroma neutral) or
 * R = G = B, alpha opaque. Strides come from GstVideoInfo, so odd widths
 * get padded rows. */
static void
fill_frame (GstVideoFrame *f, const guint8 *luma)
{
  gboolean rgb = GST_VIDEO_INFO_IS_RGB (&f->info);
  for (guint c = 0; c < GST_VIDEO_FRAME_N_COMPONENTS (f); c++) {
    gint cw = GST_VIDEO_FRAME_COMP_WIDTH (f, c), ch = GST_VIDEO_FRAME_COMP_HEIGHT (f, c);
    gint ps = GST_VIDEO_FRAME_COMP_PSTRIDE (f, c), stride = GST_VIDEO_FRAME_COMP_STRIDE (f, c);
    guint8 *data = GST_VIDEO_FRAME_COMP_DATA (f, c);
    for (gint y = 0; y < ch; y++)
      for (gint x = 0; x < cw; x++) {
        guint8 v = c == 3 ? 255 : (rgb || c == 0) ? luma[y * GST_VIDEO_FRAME_WIDTH (f) + x] : 128;
        data[y * stride + x * ps] = v;
      }
  }
}

static GstBuffer *
make_buffer (const gchar *format, gint w, gint h, guint64 index, const guint8 *luma)
{
  GstVideoInfo info;
  GstVideoFrame f;
  gst_video_info_set_format (&info, gst_video_format_from_string (format), w, h);
  GstBuffer *buf = gst_buffer_new_allocate (NULL, info.size, NULL);
  gst_video_frame_map (&f, &info, buf, GST_MAP_WRITE);
  fill_frame (&f, luma);
  gst_video_frame_unmap (&f);
  GST_BUFFER_PTS (buf) = index * GST_SECOND / 30;
  GST_BUFFER_DURATION (buf) = GST_SECOND / 30;
  return buf;
}

static gchar *
caps_string (const gchar *format, gint w, gint h)
{
  return g_strdup_printf ("video/x-raw,format=%s,width=%d,height=%d,framerate=30/1", format, w,
                          h);
}

/* The element, its properties set before it starts, on a bus of its own. */
static GstHarness *
harness_new (GstBus **bus, const gchar *caps, const gchar *first, ...)
{
  GstElement *e = gst_element_factory_make ("aeanomaly", NULL);
  if (!e) {
    fprintf (stderr, "aeanomaly not found: is GST_PLUGIN_PATH set?\n");
    exit (1);
  }
  va_list ap;
  va_start (ap, first);
  g_object_set_valist (G_OBJECT (e), first, ap);
  va_end (ap);
  *bus = gst_bus_new ();
  gst_element_set_bus (e, *bus);
  GstHarness *h = gst_harness_new_full (e, &src_templ, "sink", &sink_templ, "src");
  gst_object_unref (e);
  if (caps)
    gst_harness_set_src_caps_str (h, caps);
  return h;
}

static void
harness_free (GstHarness *h, GstBus *bus)
{
  gst_harness_teardown (h);
  gst_bus_set_flushing (bus, TRUE);
  gst_object_unref (bus);
}

/* Pushes one frame and returns what comes out (NULL on a flow error). */
static GstBuffer *
push_frame (GstHarness *h, const gchar *format, gint w, gint hh, guint64 index,
            const guint8 *luma)
{
  if (gst_harness_push (h, make_buffer (format, w, hh, index, luma)) != GST_FLOW_OK)
    return NULL;
  return gst_harness_pull (h);
}

static const GstStructure *
result_of (GstBuffer *buf)
{
  GstCustomMeta *m = buf ? gst_buffer_get_custom_meta (buf, META) : NULL;
  return m ? gst_custom_meta_get_structure (m) : NULL;
}

static gboolean
is_anomalous (GstBuffer *buf)
{
  gboolean a = FALSE;
  const GstStructure *s = result_of (buf);
  return s && gst_structure_get_boolean (s, "anomalous", &a) && a;
}

static double
score_of (GstBuffer *buf)
{
  double v = NAN;
  const GstStructure *s = result_of (buf);
  if (s)
    gst_structure_get_double (s, "score", &v);
  return v;
}

static double
threshold_of (GstBuffer *buf)
{
  double v = NAN;
  const GstStructure *s = result_of (buf);
  if (s)
    gst_structure_get_double (s, "threshold", &v);
  return v;
}

static guint
n_regions (const GstStructure *s)
{
  const GValue *v = s ? gst_structure_get_value (s, "regions") : NULL;
  return v && GST_VALUE_HOLDS_ARRAY (v) ? gst_value_array_get_size (v) : 0;
}

static const GstStructure *
region_at (const GstStructure *s, guint i)
{
  return gst_value_get_structure (gst_value_array_get_value (gst_structure_get_value (s,
                                                                 "regions"), i));
}

/* Does some region contain pixel (x, y)? */
static gboolean
region_covers (const GstStructure *s, gint x, gint y)
{
  for (guint i = 0; i < n_regions (s); i++) {
    gint rx, ry, rw, rh;
    const GstStructure *r = region_at (s, i);
    gst_structure_get (r, "x", G_TYPE_INT, &rx, "y", G_TYPE_INT, &ry, "w", G_TYPE_INT, &rw, "h",
                       G_TYPE_INT, &rh, NULL);
    if (x >= rx && x < rx + rw && y >= ry && y < ry + rh)
      return TRUE;
  }
  return FALSE;
}

static guint
count_roi_metas (GstBuffer *buf, gboolean *params_ok)
{
  gpointer state = NULL;
  GstMeta *meta;
  guint n = 0;
  *params_ok = TRUE;
  while ((meta = gst_buffer_iterate_meta_filtered (buf, &state,
              GST_VIDEO_REGION_OF_INTEREST_META_API_TYPE))) {
    GstVideoRegionOfInterestMeta *roi = (GstVideoRegionOfInterestMeta *) meta;
    GstStructure *p = gst_video_region_of_interest_meta_get_param (roi, "aeanomaly");
    double score;
    *params_ok &= roi->roi_type == g_quark_from_string ("anomaly") && p
                  && gst_structure_get_double (p, "score", &score);
    n++;
  }
  return n;
}

/* Element messages named `name` waiting on the bus, oldest first. */
static GList *
take_messages (GstBus *bus, const gchar *name)
{
  GList *out = NULL;
  GstMessage *msg;
  GQueue keep = G_QUEUE_INIT;
  while ((msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ELEMENT))) {
    if (gst_structure_has_name (gst_message_get_structure (msg), name))
      out = g_list_append (out, msg);
    else
      g_queue_push_tail (&keep, msg);
  }
  while ((msg = g_queue_pop_head (&keep))) {
    gst_bus_post (bus, msg);
  }
  return out;
}

static void
free_messages (GList *l)
{
  g_list_free_full (l, (GDestroyNotify) gst_message_unref);
}

static guint64
msg_frame (GstMessage *m)
{
  guint64 f = G_MAXUINT64;
  gst_structure_get_uint64 (gst_message_get_structure (m), "frame", &f);
  return f;
}

/* Waits for a message of `types` (element messages: named `name`). */
static GstMessage *
wait_message (GstBus *bus, GstMessageType types, const gchar *name, gint seconds)
{
  gint64 end = g_get_monotonic_time () + seconds * G_USEC_PER_SEC;
  while (g_get_monotonic_time () < end) {
    GstMessage *m = gst_bus_timed_pop_filtered (bus, 100 * GST_MSECOND, types);
    if (!m)
      continue;
    if (!name || (GST_MESSAGE_TYPE (m) == GST_MESSAGE_ELEMENT
                  && gst_structure_has_name (gst_message_get_structure (m), name)))
      return m;
    gst_message_unref (m);
  }
  return NULL;
}

/* ---- Tests -------------------------------------------------------------------------------- */

static const gchar *const formats[] = { "GRAY8", "I420", "YV12", "NV12", "Y444", "RGB", "BGR",
                                        "RGBx", "BGRx", "xRGB", "xBGR", "RGBA", "BGRA" };

/* Every format, an even and an odd size, luma and RGB models, every output. */
static void
test_formats (void)
{
  static const gint sizes[][2] = { { 32, 32 }, { 33, 17 } };
  GRand *rng = g_rand_new_with_seed (1);
  guint8 img[33 * 32];
  for (guint f = 0; f < G_N_ELEMENTS (formats); f++)
    for (guint s = 0; s < G_N_ELEMENTS (sizes); s++) {
      gint w = sizes[s][0], h = sizes[s][1];
      gchar *caps = caps_string (formats[f], w, h);
      const gchar *model = (f + s) % 2 ? rgb_path : model_path;
      GstBus *bus;
      GstHarness *hn = harness_new (&bus, caps, "model", model, "output", (gint) (f % 3), NULL);
      texture (img, w, h, rng);
      GstBuffer *out = push_frame (hn, formats[f], w, h, 0, img);
      double score = score_of (out);
      CHECK (out && isfinite (score) && score >= 0, "%s %dx%d (%s model, output %u): score %g",
             formats[f], w, h, model == rgb_path ? "RGB" : "luma", f % 3, score);
      if (out)
        gst_buffer_unref (out);
      harness_free (hn, bus);
      g_free (caps);
    }
  g_rand_free (rng);
}

/* Normal frame: not anomalous. Defect: anomalous, a region over it, ROI metas,
 * and the score is exactly the calibration's definition. */
static void
test_meta (void)
{
  GstBus *bus;
  gchar *caps = caps_string ("GRAY8", W, H);
  GstHarness *h = harness_new (&bus, caps, "model", model_path, NULL);
  GRand *rng = g_rand_new_with_seed (2);
  guint8 img[W * H];
  ae_model *m = ae_model_load (model_path, NULL);

  texture (img, W, H, rng);
  GstBuffer *out = push_frame (h, "GRAY8", W, H, 0, img);
  const GstStructure *s = result_of (out);
  gboolean params_ok;
  CHECK (s && !is_anomalous (out), "normal frame: anomalous FALSE (score %g, threshold %g)",
         score_of (out), threshold_of (out));
  CHECK (fabs (score_of (out) - reference_score (m, img, W, H, AE_LOSS_MSE)) < 1e-6,
         "score = mean of the MSE map, as ae-train calibrates (%g vs %g)", score_of (out),
         reference_score (m, img, W, H, AE_LOSS_MSE));
  CHECK (fabs (threshold_of (out) - model_threshold) < 1e-12, "threshold from the model");
  gst_buffer_unref (out);

  add_defect (img, W, 20, 8);
  out = push_frame (h, "GRAY8", W, H, 1, img);
  s = result_of (out);
  guint64 frame = 0;
  gboolean analysed = FALSE;
  CHECK (is_anomalous (out), "defect frame: anomalous TRUE (score %g, threshold %g)",
         score_of (out), threshold_of (out));
  CHECK (s && gst_structure_get_uint64 (s, "frame", &frame) && frame == 1
         && gst_structure_get_boolean (s, "analysed", &analysed) && analysed,
         "meta frame %" G_GUINT64_FORMAT ", analysed", frame);
  CHECK (n_regions (s) >= 1 && region_covers (s, 22, 10), "a region covers the defect (%u)",
         n_regions (s));
  CHECK (count_roi_metas (out, &params_ok) == n_regions (s) && params_ok,
         "one ROI meta of type anomaly with an aeanomaly score per region");
  gst_buffer_unref (out);
  ae_model_free (m);
  g_rand_free (rng);
  harness_free (h, bus);
  g_free (caps);
}

static void
test_ssim_score (void)
{
  GstBus *bus;
  gchar *caps = caps_string ("GRAY8", W, H);
  GstHarness *h = harness_new (&bus, caps, "model", ssim_path, NULL);
  GRand *rng = g_rand_new_with_seed (3);
  guint8 img[W * H];
  ae_model *m = ae_model_load (ssim_path, NULL);
  texture (img, W, H, rng);
  /* SSIM spreads a defect over its window but saturates: a larger one. */
  add_defect_sized (img, W, 4, 16, 10);
  GstBuffer *out = push_frame (h, "GRAY8", W, H, 0, img);
  double ref = reference_score (m, img, W, H, AE_LOSS_SSIM);
  CHECK (fabs (score_of (out) - ref) < 1e-5, "mean-ssim model: score is the mean SSIM map "
         "(%g vs %g)", score_of (out), ref);
  CHECK (is_anomalous (out), "mean-ssim model flags the defect (score %g, threshold %g)",
         score_of (out), threshold_of (out));
  gst_buffer_unref (out);
  ae_model_free (m);
  g_rand_free (rng);
  harness_free (h, bus);
  g_free (caps);
}

/* Fixed-size model: the frame is resampled in, the map resampled out. */
static void
check_fixed_size_model (const gchar *path, const gchar *what)
{
  GstBus *bus;
  gchar *caps = caps_string ("I420", 40, 30);
  GstHarness *h = harness_new (&bus, caps, "model", path, "output", 2, NULL);
  GRand *rng = g_rand_new_with_seed (4);
  guint8 img[40 * 30];
  texture (img, 40, 30, rng);
  add_defect (img, 40, 10, 10);
  GstBuffer *out = push_frame (h, "I420", 40, 30, 0, img);
  const GstStructure *s = result_of (out);
  gboolean inside = TRUE;
  for (guint i = 0; i < n_regions (s); i++) {
    gint x, y, w, hh;
    gst_structure_get (region_at (s, i), "x", G_TYPE_INT, &x, "y", G_TYPE_INT, &y, "w",
                       G_TYPE_INT, &w, "h", G_TYPE_INT, &hh, NULL);
    inside &= x >= 0 && y >= 0 && x + w <= 40 && y + hh <= 30;
  }
  CHECK (s && isfinite (score_of (out)) && inside, "%s 16x16 model on 40x30 frames: score %g, "
         "%u regions inside the frame", what, score_of (out), n_regions (s));
  if (out)
    gst_buffer_unref (out);
  g_rand_free (rng);
  harness_free (h, bus);
  g_free (caps);
}

static void
test_dense_model (void)
{
  check_fixed_size_model (dense_path, "dense");
  check_fixed_size_model (vae_path, "VAE");
}

static gboolean
has_fields (const GstStructure *s, const gchar *const *fields)
{
  for (; *fields; fields++)
    if (!gst_structure_has_field (s, *fields))
      return FALSE;
  return TRUE;
}

static void
test_messages (void)
{
  static const gchar *const fields[] = { "timestamp", "stream-time", "running-time", "duration",
                                         "frame", "score", "threshold", "anomalous", "regions",
                                         NULL };
  GstBus *bus;
  gchar *caps = caps_string ("GRAY8", W, H);
  GstHarness *h = harness_new (&bus, caps, "model", model_path, NULL);
  GRand *rng = g_rand_new_with_seed (5);
  guint8 img[W * H];
  for (guint i = 0; i < 3; i++) {
    texture (img, W, H, rng);
    if (i == 2)
      add_defect (img, W, 10, 10);
    gst_buffer_unref (push_frame (h, "GRAY8", W, H, i, img));
  }
  GList *msgs = take_messages (bus, "aeanomaly");
  CHECK (g_list_length (msgs) == 3, "3 aeanomaly messages for 3 frames (%u)",
         g_list_length (msgs));
  gboolean ok = msgs != NULL;
  guint i = 0;
  for (GList *l = msgs; l; l = l->next, i++) {
    const GstStructure *s = gst_message_get_structure (l->data);
    guint64 ts = 0, rt = 0, dur = 0;
    gboolean anomalous = FALSE;
    ok &= has_fields (s, fields) && msg_frame (l->data) == i;
    ok &= gst_structure_get_uint64 (s, "timestamp", &ts) && ts == i * GST_SECOND / 30;
    ok &= gst_structure_get_uint64 (s, "running-time", &rt) && rt == ts;
    ok &= gst_structure_get_uint64 (s, "duration", &dur) && dur == GST_SECOND / 30;
    ok &= gst_structure_get_boolean (s, "anomalous", &anomalous) && anomalous == (i == 2);
    ok &= GST_MESSAGE_SRC (l->data) == GST_OBJECT (h->element);
  }
  CHECK (ok, "messages carry timestamp, stream-time, running-time, duration, frame, score, "
         "threshold, anomalous, regions");
  free_messages (msgs);

  g_object_set (h->element, "post-messages", FALSE, NULL);
  gst_buffer_unref (push_frame (h, "GRAY8", W, H, 3, img));
  msgs = take_messages (bus, "aeanomaly");
  CHECK (msgs == NULL, "post-messages=false: no message");
  free_messages (msgs);
  g_rand_free (rng);
  harness_free (h, bus);
  g_free (caps);
}

/* N N D D D N N N D D with event-frames=2, event-gap=2: an event from
 * frame 2 (posted on frame 3) to frame 5 (posted on frame 6); a second
 * from frame 8 (posted on 9) that EOS ends. */
static void
test_events (void)
{
  static const gboolean pattern[] = { 0, 0, 1, 1, 1, 0, 0, 0, 1, 1 };
  GstBus *bus;
  gchar *caps = caps_string ("GRAY8", W, H);
  GstHarness *h = harness_new (&bus, caps, "model", model_path, "event-frames", 2,
                               "event-gap", 2, NULL);
  GRand *rng = g_rand_new_with_seed (6);
  guint8 img[W * H];
  gboolean first_begin = FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (pattern); i++) {
    texture (img, W, H, rng);
    if (pattern[i])
      add_defect (img, W, 12, 12);
    gst_buffer_unref (push_frame (h, "GRAY8", W, H, i, img));
    if (i == 8) { /* one anomalous frame (8) is not an event yet */
      GList *b = take_messages (bus, "aeanomaly-begin");
      first_begin = g_list_length (b) == 1 && msg_frame (b->data) == 2;
      free_messages (b);
    }
  }
  CHECK (first_begin, "one aeanomaly-begin by frame 8, stamped with its first anomalous frame "
         "(2); a single anomalous frame begins nothing");
  gst_harness_push_event (h, gst_event_new_eos ());
  GList *begin = take_messages (bus, "aeanomaly-begin"), *end = take_messages (bus, "aeanomaly-end");
  CHECK (g_list_length (begin) == 1 && msg_frame (begin->data) == 8,
         "the second aeanomaly-begin is stamped with its first anomalous frame (8)");
  guint64 begin_frame = 0;
  gboolean eos = TRUE, eos2 = FALSE;
  const GstStructure *e1 = end ? gst_message_get_structure (end->data) : NULL;
  CHECK (g_list_length (end) == 2 && msg_frame (end->data) == 5
         && gst_structure_get_uint64 (e1, "begin-frame", &begin_frame) && begin_frame == 2
         && gst_structure_get_boolean (e1, "eos", &eos) && !eos,
         "aeanomaly-end at the first normal frame (5), with begin-frame 2");
  CHECK (g_list_length (end) == 2
         && gst_structure_get_boolean (gst_message_get_structure (end->next->data), "eos", &eos2)
         && eos2, "EOS ends the open event (eos=TRUE)");
  free_messages (begin);
  free_messages (end);
  g_rand_free (rng);
  harness_free (h, bus);
  g_free (caps);
}

/* aggregate=max with smooth-radius 3: the score is the peak of the smoothed
 * map, regions use the frame threshold itself, and map-location receives
 * exactly the smoothed map. */
static void
test_aggregate (void)
{
  GstBus *bus;
  gchar *caps = caps_string ("GRAY8", W, H);
  gchar *maps = g_build_filename (workdir, "maps.f32", NULL);
  GstHarness *h = harness_new (&bus, caps, "model", model_path, "aggregate", "max",
                               "smooth-radius", 3, "map-location", maps, NULL);
  GRand *rng = g_rand_new_with_seed (12);
  guint8 img[W * H];
  float x[W * H], map[W * H], smooth[W * H], scratch[8 * W * H];
  ae_model *m = ae_model_load (model_path, NULL);
  ae_session *s = ae_session_new (m, 1, H, W, NULL);
  texture (img, W, H, rng);
  add_defect (img, W, 14, 6);
  to_float (img, x, W * H);
  ae_error_map (AE_LOSS_MSE, x, ae_session_forward (s, x), 1, H, W, 7, map, scratch);
  ae_map_smooth (map, smooth, W, H, 3, scratch);
  double peak = ae_map_score (map, smooth, W * H, 0.0f, scratch);
  GstBuffer *out = push_frame (h, "GRAY8", W, H, 0, img);
  gdouble pthr = 0;
  gchar *agg = NULL;
  g_object_get (h->element, "pixel-threshold", &pthr, "aggregate", &agg, NULL);
  CHECK (fabs (score_of (out) - peak) < 1e-6 * MAX (peak, 1e-3),
         "aggregate=max: score is the peak of the smoothed map (%g vs %g)", score_of (out), peak);
  CHECK (fabs (pthr - threshold_of (out)) < 1e-12 && g_strcmp0 (agg, "max") == 0,
         "with max, the pixel threshold in force is the frame threshold (%g, %s)", pthr, agg);
  gst_buffer_unref (out);
  GstMessage *warn = wait_message (bus, GST_MESSAGE_WARNING, NULL, 5);
  GError *gerr = NULL;
  gchar *debug = NULL;
  if (warn)
    gst_message_parse_warning (warn, &gerr, &debug);
  CHECK (debug && strstr (debug, "calibrated with aggregate=mean"),
         "max on a model calibrated with mean, no threshold given: a WARNING says so (%s)",
         debug ? debug : "none");
  g_clear_error (&gerr);
  g_free (debug);
  if (warn)
    gst_message_unref (warn);
  harness_free (h, bus);
  /* With a threshold of the user's, nothing to warn about. */
  h = harness_new (&bus, caps, "model", model_path, "aggregate", "max", "threshold", 0.5, NULL);
  gst_buffer_unref (push_frame (h, "GRAY8", W, H, 0, img));
  warn = wait_message (bus, GST_MESSAGE_WARNING, NULL, 1);
  CHECK (warn == NULL, "... and none once threshold is set");
  if (warn)
    gst_message_unref (warn);
  harness_free (h, bus);
  gsize len = 0;
  gchar *data = NULL;
  gboolean read = g_file_get_contents (maps, &data, &len, NULL);
  double worst = read && len == sizeof smooth ? 0 : INFINITY;
  for (gsize i = 0; isfinite (worst) && i < W * H; i++)
    worst = MAX (worst, fabs (((const float *) data)[i] - smooth[i]));
  /* Stripes on worker threads round differently from one whole frame. */
  CHECK (worst < 1e-5 * peak, "map-location holds the smoothed map as float32 (%" G_GSIZE_FORMAT
         " bytes, worst difference %g)", len, worst);
  g_free (data);
  g_free (agg);
  ae_session_free (s);
  ae_model_free (m);
  g_rand_free (rng);
  g_free (maps);
  g_free (caps);
}

/* border=3: a defect on the frame's edge leaves the score (max, unsmoothed)
 * as if the outer 3 pixels were error-free; the property reads back the
 * one in force, the model's (0 without anomaly.border) when unset. */
static void
test_border (void)
{
  GstBus *bus;
  gchar *caps = caps_string ("GRAY8", W, H);
  GRand *rng = g_rand_new_with_seed (13);
  guint8 img[W * H];
  float x[W * H], map[W * H], smooth[W * H], scratch[8 * W * H];
  ae_model *m = ae_model_load (model_path, NULL);
  ae_session *s = ae_session_new (m, 1, H, W, NULL);
  texture (img, W, H, rng);
  add_defect_sized (img, W, 0, 12, 2); /* columns 0-1: inside the border */
  to_float (img, x, W * H);
  ae_error_map (AE_LOSS_MSE, x, ae_session_forward (s, x), 1, H, W, 7, map, scratch);
  ae_map_smooth (map, smooth, W, H, 0, scratch);
  double whole = ae_map_score (map, smooth, W * H, 0.0f, scratch);
  ae_map_clear_border (map, W, H, 3);
  ae_map_smooth (map, smooth, W, H, 0, scratch);
  double inner = ae_map_score (map, smooth, W * H, 0.0f, scratch);
  gint border = -2, unset = -2;
  GstHarness *h = harness_new (&bus, caps, "model", model_path, NULL);
  gst_buffer_unref (push_frame (h, "GRAY8", W, H, 0, img));
  g_object_get (h->element, "border", &unset, NULL);
  harness_free (h, bus);
  h = harness_new (&bus, caps, "model", model_path, "aggregate", "max", "smooth-radius", 0,
                   "border", 3, "threshold", 1.0, NULL);
  GstBuffer *out = push_frame (h, "GRAY8", W, H, 0, img);
  g_object_get (h->element, "border", &border, NULL);
  CHECK (whole > 1.5 * inner, "the edge defect is the frame's peak without a border (%g, %g)",
         whole, inner);
  /* Stripes on worker threads round differently from one whole frame. */
  CHECK (fabs (score_of (out) - inner) < 1e-5 * MAX (inner, 1e-3),
         "border=3: the score leaves the edge out (%g vs %g)", score_of (out), inner);
  CHECK (border == 3 && unset == 0, "border reads back 3, and 0 from a model without one (%d)",
         unset);
  gst_buffer_unref (out);
  harness_free (h, bus);
  ae_session_free (s);
  ae_model_free (m);
  g_rand_free (rng);
  g_free (caps);
}

static void expect_start_error (const gchar *what, const gchar *prop, const gchar *value,
                                const gchar *text);

/* The element's score of one GRAY8 frame with the model at `path`: the
 * peak of its map (aggregate max, no smoothing; threshold 1). */
static double
element_peak_score (const gchar *path, const guint8 *img)
{
  GstBus *bus;
  gchar *caps = caps_string ("GRAY8", W, H);
  GstHarness *h = harness_new (&bus, caps, "model", path, "aggregate", "max", "smooth-radius", 0,
                               "threshold", 1.0, NULL);
  GstBuffer *out = push_frame (h, "GRAY8", W, H, 0, img);
  double score = score_of (out);
  gst_buffer_unref (out);
  harness_free (h, bus);
  g_free (caps);
  return score;
}

/* libae's peak of an unsmoothed W x H map: what element_peak_score reads. */
static double
map_peak (const float *map)
{
  float smooth[W * H], scratch[W * H];
  ae_map_smooth (map, smooth, W, H, 0, scratch);
  return ae_map_score (map, smooth, W * H, 0.0f, scratch);
}

/* A mix-mse-ssim model: the score is the peak of libae's mixed map
 * (ae_error_map_mix with the model's scales); without its scales the
 * model is refused at start. */
static void
test_map_mix (void)
{
  const float scale[2] = { 0.01f, 0.2f };
  ae_model *m = ae_model_load (model_path, NULL);
  ae_model_set_float (m, "anomaly.mix_scale_mse", scale[0]);
  ae_model_set_float (m, "anomaly.mix_scale_ssim", scale[1]);
  ae_model_set_int (m, "anomaly.ssim_window", 7);
  gchar *path = save_anomaly_model (m, "mix.aem", "mix-mse-ssim", 1.0);
  ae_model_set_float (m, "anomaly.mix_scale_ssim", 0.0);
  gchar *bad = save_anomaly_model (m, "mix-noscale.aem", "mix-mse-ssim", 1.0);
  GRand *rng = g_rand_new_with_seed (14);
  guint8 img[W * H];
  float x[W * H], map[W * H], scratch[8 * W * H];
  ae_session *s = ae_session_new (m, 1, H, W, NULL);
  texture (img, W, H, rng);
  add_defect (img, W, 14, 6);
  to_float (img, x, W * H);
  ae_status st = ae_error_map_mix (x, ae_session_forward (s, x), 1, H, W, 7, scale, map, scratch);
  double want = map_peak (map), got = element_peak_score (path, img);
  /* Stripes on worker threads round differently from one whole frame. */
  CHECK (st == AE_OK && fabs (got - want) < 1e-5 * MAX (want, 1e-3),
         "mix-mse-ssim: the score is the mixed map's peak (%g vs %g)", got, want);
  expect_start_error ("mix-mse-ssim model without its scales", "model", bad, "mix_scale");
  ae_session_free (s);
  ae_model_free (m);
  g_rand_free (rng);
  g_free (bad);
  g_free (path);
}

/* A model with the lost-contrast term: the texture flattened to its mean
 * in a square is what raises the score (the reconstruction map alone barely
 * moves there), and the score is libae's: error map plus
 * ae_map_add_lost_contrast, peak. A weight without a floor is refused. */
static void
test_lost_contrast (void)
{
  const float floor_sigma = 0.1f, weight = 2.0f;
  ae_model *m = ae_model_load (model_path, NULL);
  ae_model_set_float (m, "anomaly.contrast_weight", weight);
  ae_model_set_float (m, "anomaly.contrast_floor", floor_sigma);
  ae_model_set_int (m, "anomaly.contrast_window", 7);
  gchar *path = save_anomaly_model (m, "contrast.aem", "mean-mse", 1.0);
  ae_model_set_float (m, "anomaly.contrast_floor", 0.0);
  gchar *bad = save_anomaly_model (m, "contrast-nofloor.aem", "mean-mse", 1.0);
  GRand *rng = g_rand_new_with_seed (15);
  guint8 img[W * H];
  float x[W * H], map[W * H], scratch[8 * W * H];
  texture (img, W, H, rng);
  for (gint y = 10; y < 22; y++) /* the sine texture's mean, 0.5 */
    memset (img + y * W + 10, 128, 12);
  to_float (img, x, W * H);
  ae_session *s = ae_session_new (m, 1, H, W, NULL);
  ae_status st = ae_error_map (AE_LOSS_MSE, x, ae_session_forward (s, x), 1, H, W, 7, map, scratch);
  double plain = map_peak (map);
  if (st == AE_OK)
    st = ae_map_add_lost_contrast (x, 1, H, W, 3, floor_sigma, weight, map, scratch);
  double want = map_peak (map), got = element_peak_score (path, img);
  CHECK (st == AE_OK && fabs (got - want) < 1e-5 * MAX (want, 1e-3),
         "lost contrast: the score is the map plus the lost-contrast term's peak (%g vs %g)",
         got, want);
  /* Flat: sigma near 0, so the term is capped (AE_CONTRAST_MAX_HALVINGS). */
  CHECK (want > plain + weight * 4, "lost contrast: the flat patch lifts the peak from %g to %g",
         plain, want);
  expect_start_error ("lost-contrast model without its floor", "model", bad, "contrast_floor");
  ae_session_free (s);
  ae_model_free (m);
  g_rand_free (rng);
  g_free (bad);
  g_free (path);
}

/* interval=3: frames 0, 3, 6 analysed; the rest carry the last result. */
static void
test_interval (void)
{
  GstBus *bus;
  gchar *caps = caps_string ("GRAY8", W, H);
  GstHarness *h = harness_new (&bus, caps, "model", model_path, "interval", 3, NULL);
  GRand *rng = g_rand_new_with_seed (8);
  guint8 img[W * H];
  guint carried = 0, with_meta = 0;
  for (guint i = 0; i < 9; i++) {
    texture (img, W, H, rng);
    if (i == 1) /* skipped: the defect must go unseen */
      add_defect (img, W, 12, 12);
    GstBuffer *out = push_frame (h, "GRAY8", W, H, i, img);
    const GstStructure *s = result_of (out);
    guint64 frame;
    gboolean analysed = TRUE;
    if (s && gst_structure_get_uint64 (s, "frame", &frame)
        && gst_structure_get_boolean (s, "analysed", &analysed)) {
      with_meta++;
      carried += !analysed && frame == i - i % 3;
    }
    if (i == 1)
      CHECK (!is_anomalous (out), "a defect on a skipped frame is not analysed");
    gst_buffer_unref (out);
  }
  GList *msgs = take_messages (bus, "aeanomaly");
  CHECK (g_list_length (msgs) == 3 && msg_frame (msgs->data) == 0
         && msg_frame (msgs->next->data) == 3 && msg_frame (msgs->next->next->data) == 6,
         "3 messages for 9 frames, frames 0, 3, 6");
  CHECK (with_meta == 9 && carried == 6, "every buffer has the meta; 6 carry the last result");
  free_messages (msgs);
  g_rand_free (rng);
  harness_free (h, bus);
  g_free (caps);
}

static void
test_roi (void)
{
  GstBus *bus;
  gchar *caps = caps_string ("GRAY8", W, H);
  GstHarness *h = harness_new (&bus, caps, "model", model_path, "roi", "8,4,16,24", NULL);
  GRand *rng = g_rand_new_with_seed (9);
  guint8 img[W * H];
  gchar *roi = NULL;
  g_object_get (h->element, "roi", &roi, NULL);
  CHECK (g_strcmp0 (roi, "8,4,16,24") == 0, "roi reads back");
  g_free (roi);

  texture (img, W, H, rng);
  add_defect (img, W, 26, 0); /* outside the roi */
  GstBuffer *out = push_frame (h, "GRAY8", W, H, 0, img);
  CHECK (!is_anomalous (out) && n_regions (result_of (out)) == 0,
         "a defect outside the roi is not reported");
  gst_buffer_unref (out);

  texture (img, W, H, rng);
  add_defect (img, W, 14, 20); /* inside */
  out = push_frame (h, "GRAY8", W, H, 1, img);
  const GstStructure *s = result_of (out);
  CHECK (is_anomalous (out) && region_covers (s, 16, 22),
         "a defect inside is reported in full-frame coordinates");
  gst_buffer_unref (out);

  /* A roi that does not fit: a clean error on the next frame. */
  g_object_set (h->element, "roi", "20,20,16,16", NULL);
  CHECK (gst_harness_push (h, make_buffer ("GRAY8", W, H, 2, img)) == GST_FLOW_ERROR,
         "a roi outside the frame fails the stream");
  GstMessage *err = wait_message (bus, GST_MESSAGE_ERROR, NULL, 1);
  CHECK (err != NULL, "... with an error message");
  if (err)
    gst_message_unref (err);
  g_rand_free (rng);
  harness_free (h, bus);
  g_free (caps);
}

static void
test_threshold (void)
{
  GstBus *bus;
  gchar *caps = caps_string ("GRAY8", W, H);
  GstHarness *h = harness_new (&bus, caps, "model", model_path, NULL);
  GRand *rng = g_rand_new_with_seed (10);
  guint8 img[W * H];
  gdouble t = 0;
  texture (img, W, H, rng);
  add_defect (img, W, 6, 6);
  GstBuffer *out = push_frame (h, "GRAY8", W, H, 0, img);
  CHECK (is_anomalous (out), "defect flagged at the model's threshold");
  gst_buffer_unref (out);
  g_object_get (h->element, "threshold", &t, NULL);
  CHECK (fabs (t - model_threshold) < 1e-12, "threshold reads back the model's (%g)", t);

  g_object_set (h->element, "threshold", 1e6, NULL);
  out = push_frame (h, "GRAY8", W, H, 1, img);
  CHECK (!is_anomalous (out) && threshold_of (out) == 1e6,
         "threshold=1e6 while PLAYING: not anomalous on the next frame");
  gst_buffer_unref (out);
  g_object_get (h->element, "threshold", &t, NULL);
  CHECK (t == 1e6, "threshold reads back 1e6");

  g_object_set (h->element, "threshold", -1.0, NULL);
  out = push_frame (h, "GRAY8", W, H, 2, img);
  g_object_get (h->element, "threshold", &t, NULL);
  CHECK (is_anomalous (out) && fabs (t - model_threshold) < 1e-12,
         "threshold=-1: back to the model's");
  gst_buffer_unref (out);
  g_rand_free (rng);
  harness_free (h, bus);
  g_free (caps);
}

static double
mean_luma (GstBuffer *buf, const gchar *format, gint x0, gint y0, gint w, gint h)
{
  GstVideoInfo info;
  GstVideoFrame f;
  gst_video_info_set_format (&info, gst_video_format_from_string (format), W, H);
  gst_video_frame_map (&f, &info, buf, GST_MAP_READ);
  double sum = 0;
  for (gint y = y0; y < y0 + h; y++)
    for (gint x = x0; x < x0 + w; x++)
      sum += ((guint8 *) GST_VIDEO_FRAME_COMP_DATA (&f, 0))[y * GST_VIDEO_FRAME_COMP_STRIDE (&f, 0)
                                                            + x * GST_VIDEO_FRAME_COMP_PSTRIDE (&f, 0)];
  gst_video_frame_unmap (&f);
  return sum / (w * h);
}

static gboolean
chroma_neutral (GstBuffer *buf)
{
  GstVideoInfo info;
  GstVideoFrame f;
  gboolean ok = TRUE;
  gst_video_info_set_format (&info, GST_VIDEO_FORMAT_I420, W, H);
  gst_video_frame_map (&f, &info, buf, GST_MAP_READ);
  for (guint c = 1; c < 3; c++)
    for (gint y = 0; y < GST_VIDEO_FRAME_COMP_HEIGHT (&f, c); y++)
      for (gint x = 0; x < GST_VIDEO_FRAME_COMP_WIDTH (&f, c); x++)
        ok &= ((guint8 *) GST_VIDEO_FRAME_COMP_DATA (&f, c))[y * GST_VIDEO_FRAME_COMP_STRIDE (&f, c) + x] == 128;
  gst_video_frame_unmap (&f);
  return ok;
}

static void
test_outputs (void)
{
  GstBus *bus;
  gchar *caps = caps_string ("I420", W, H);
  GstHarness *h = harness_new (&bus, caps, "model", model_path, "output", 2, NULL);
  GRand *rng = g_rand_new_with_seed (11);
  guint8 img[W * H];
  texture (img, W, H, rng);
  add_defect (img, W, 20, 20);
  GstBuffer *out = push_frame (h, "I420", W, H, 0, img);
  double in_defect = mean_luma (out, "I420", 20, 20, DEFECT, DEFECT);
  double elsewhere = mean_luma (out, "I420", 0, 0, 12, 12);
  CHECK (in_defect > 128 && elsewhere < 64 && chroma_neutral (out),
         "heatmap: defect above the threshold's 128 (%.0f), normal area dark (%.0f), chroma 128",
         in_defect, elsewhere);
  gst_buffer_unref (out);

  g_object_set (h->element, "output", 1, NULL);
  out = push_frame (h, "I420", W, H, 1, img);
  GstBuffer *ref = make_buffer ("I420", W, H, 1, img);
  GstMapInfo a, b;
  gst_buffer_map (out, &a, GST_MAP_READ);
  gst_buffer_map (ref, &b, GST_MAP_READ);
  gboolean changed = a.size == b.size && memcmp (a.data, b.data, a.size) != 0;
  gst_buffer_unmap (ref, &b);
  gst_buffer_unmap (out, &a);
  CHECK (changed, "overlay: the frame is modified");
  gst_buffer_unref (ref);
  gst_buffer_unref (out);

  g_object_set (h->element, "output", 0, NULL);
  out = push_frame (h, "I420", W, H, 2, img);
  ref = make_buffer ("I420", W, H, 2, img);
  gst_buffer_map (out, &a, GST_MAP_READ);
  gst_buffer_map (ref, &b, GST_MAP_READ);
  CHECK (a.size == b.size && memcmp (a.data, b.data, a.size) == 0,
         "passthrough: the frame is unchanged");
  gst_buffer_unmap (ref, &b);
  gst_buffer_unmap (out, &a);
  gst_buffer_unref (ref);
  gst_buffer_unref (out);
  g_rand_free (rng);
  harness_free (h, bus);
  g_free (caps);
}

/* One JSON line per analysed frame, fields in the documented order. */
static void
test_json (void)
{
  GstBus *bus;
  gchar *path = g_build_filename (workdir, "events.jsonl", NULL);
  gchar *caps = caps_string ("GRAY8", W, H);
  GstHarness *h = harness_new (&bus, caps, "model", model_path, "interval", 2,
                               "events-location", path, NULL);
  GRand *rng = g_rand_new_with_seed (12);
  guint8 img[W * H];
  for (guint i = 0; i < 5; i++) {
    texture (img, W, H, rng);
    if (i == 4)
      add_defect (img, W, 3, 3);
    gst_buffer_unref (push_frame (h, "GRAY8", W, H, i, img));
  }
  gchar *text = NULL;
  g_file_get_contents (path, &text, NULL, NULL);
  gchar **lines = text ? g_strsplit (text, "\n", -1) : NULL;
  guint n = 0, parsed = 0;
  gboolean last_anomalous = FALSE;
  for (guint i = 0; lines && lines[i] && *lines[i]; i++, n++) {
    guint64 frame, pts;
    double score, thr;
    char flag[8] = "";
    int x, y, w, hh;
    int k = sscanf (lines[i], "{\"frame\":%" G_GUINT64_FORMAT ",\"pts\":%" G_GUINT64_FORMAT
                    ",\"score\":%lf,\"threshold\":%lf,\"anomalous\":%5[a-z],\"regions\":[[%d,%d,%d,%d]",
                    &frame, &pts, &score, &thr, flag, &x, &y, &w, &hh);
    parsed += k >= 5 && frame == 2 * i && pts == frame * GST_SECOND / 30
              && g_str_has_suffix (lines[i], "]}");
    last_anomalous = strcmp (flag, "true") == 0 && k == 9 && x <= 5 && x + w >= 5;
  }
  CHECK (n == 3 && parsed == 3, "3 JSON lines for 5 frames at interval 2 (%u lines, %u parsed)",
         n, parsed);
  CHECK (last_anomalous, "the defect frame's line is anomalous with its region");
  g_strfreev (lines);
  g_free (text);
  g_rand_free (rng);
  harness_free (h, bus);
  g_free (caps);
  g_free (path);
}

/* No model: collect 20 frames, train in the background while frames keep
 * flowing, post aeanomaly-learned, then flag a defect; save-model loads. */
static void
test_learning (void)
{
  GstBus *bus;
  gchar *saved = g_build_filename (workdir, "learned.aem", NULL);
  gchar *caps = caps_string ("GRAY8", W, H);
  GstHarness *h = harness_new (&bus, caps, "learn-frames", 20, "learn-epochs", 7, "save-model",
                               saved, NULL);
  GRand *rng = g_rand_new_with_seed (13);
  guint8 img[W * H];
  guint with_meta = 0, i;
  for (i = 0; i < 20; i++) {
    texture (img, W, H, rng);
    GstBuffer *out = push_frame (h, "GRAY8", W, H, i, img);
    with_meta += result_of (out) != NULL;
    gst_buffer_unref (out);
  }
  CHECK (with_meta == 0, "frames pass unflagged while collecting");
  gint64 t0 = g_get_monotonic_time ();
  /* Frames keep flowing while the model trains. */
  texture (img, W, H, rng);
  GstBuffer *out = push_frame (h, "GRAY8", W, H, i++, img);
  CHECK (out && result_of (out) == NULL, "a frame passes during training");
  if (out)
    gst_buffer_unref (out);
  GstMessage *learned = wait_message (bus, GST_MESSAGE_ELEMENT | GST_MESSAGE_ERROR,
                                      "aeanomaly-learned", 100);
  gdouble threshold = -1, t = 0;
  gint epochs = 0;
  CHECK (learned && gst_structure_get_double (gst_message_get_structure (learned), "threshold",
                                              &threshold) && threshold > 0,
         "aeanomaly-learned after %.1f s, threshold %g",
         (g_get_monotonic_time () - t0) / 1e6, threshold);
  CHECK (learned && gst_structure_get_int (gst_message_get_structure (learned), "epochs", &epochs)
             && epochs == 7,
         "learn-epochs=7 trained %d epochs", epochs);

  texture (img, W, H, rng);
  GstBuffer *normal = push_frame (h, "GRAY8", W, H, i++, img);
  add_defect (img, W, 16, 8);
  GstBuffer *defect = push_frame (h, "GRAY8", W, H, i++, img);
  CHECK (is_anomalous (defect) && score_of (defect) > 3 * score_of (normal),
         "after learning a defect is flagged (score %g, normal %g, threshold %g)",
         score_of (defect), score_of (normal), threshold_of (defect));
  CHECK (region_covers (result_of (defect), 18, 10), "... and located");
  g_object_get (h->element, "threshold", &t, NULL);
  CHECK (t == threshold, "threshold reads back the learned one");

  ae_error err;
  ae_model *m = ae_model_load (saved, &err);
  double saved_threshold = 0, scale[2] = { 0, 0 }, weight = 0, floor_sigma = 0, unit = 0;
  CHECK (m && g_strcmp0 (ae_model_get_str (m, "task"), "anomaly") == 0
         && ae_model_get_float (m, "anomaly.threshold", &saved_threshold)
         && saved_threshold == threshold,
         "save-model wrote a loadable anomaly model with the threshold (%s)",
         m ? "loaded" : err.message);
  CHECK (m && g_strcmp0 (ae_model_get_str (m, "anomaly.score"), "mix-mse-ssim") == 0
         && ae_model_get_float (m, "anomaly.mix_scale_mse", &scale[0]) && scale[0] > 0
         && ae_model_get_float (m, "anomaly.mix_scale_ssim", &scale[1]) && scale[1] > 0,
         "by default the learned model scores with the mixed map, its scales fitted (%g, %g)",
         scale[0], scale[1]);
  /* The mix's two parts each average 1 on the frames their scales came
   * from, so the map's mean there, the term's unit, is 2. */
  CHECK (m && ae_model_get_float (m, "anomaly.contrast_weight", &weight)
             && ae_model_get_float (m, "anomaly.contrast_map_mean", &unit)
             && fabs (unit - 2.0) < 1e-3 && fabs (weight - 4.0 * unit) < 1e-5 * weight
             && ae_model_get_float (m, "anomaly.contrast_floor", &floor_sigma) && floor_sigma > 0,
         "by default the learned model has the lost-contrast term: 4 x the map's mean %g = %g, "
         "its floor fitted (%g)", unit, weight, floor_sigma);
  ae_model_free (m);
  if (learned)
    gst_message_unref (learned);
  gst_buffer_unref (normal);
  gst_buffer_unref (defect);
  g_rand_free (rng);
  harness_free (h, bus);
  g_free (caps);
  g_free (saved);
}

/* The nick of an enum property's value. */
static const gchar *
enum_nick (GstElement *e, const gchar *name)
{
  GParamSpec *ps = g_object_class_find_property (G_OBJECT_GET_CLASS (e), name);
  GValue v = G_VALUE_INIT;
  g_value_init (&v, ps->value_type);
  g_object_get_property (G_OBJECT (e), name, &v);
  GEnumValue *ev = g_enum_get_value (g_type_class_peek (ps->value_type), g_value_get_enum (&v));
  g_value_unset (&v);
  return ev ? ev->value_nick : NULL;
}

/* learn-map chooses the learned model's map (the default, mix, is checked
 * by test_learning): mse stores the plain squared error without mix
 * scales, ssim 1 - SSIM; the property reads back. learn-contrast=0 (with
 * mse) leaves the lost-contrast term out, 3 (with ssim) stores it.
 * learn-loss (mse by default) trains with its loss: ssim with the ssim map. */
static void
test_learning_map (void)
{
  static const char *const maps[][2] = { { "mse", "mean-mse" }, { "ssim", "mean-ssim" } };
  static const double contrast[] = { 0.0, 3.0 };
  static const char *const losses[] = { "mse", "ssim" };
  for (guint k = 0; k < G_N_ELEMENTS (maps); k++) {
    GstBus *bus;
    gchar *saved = g_build_filename (workdir, "learned-map.aem", NULL);
    gchar *caps = caps_string ("GRAY8", W, H);
    GstHarness *h = harness_new (&bus, caps, "learn-frames", 8, "learn-epochs", 1, "save-model",
                                 saved, NULL);
    CHECK (g_strcmp0 (enum_nick (h->element, "learn-map"), "mix") == 0, "learn-map is mix by "
           "default");
    gst_util_set_object_arg (G_OBJECT (h->element), "learn-map", maps[k][0]);
    CHECK (g_strcmp0 (enum_nick (h->element, "learn-map"), maps[k][0]) == 0,
           "learn-map=%s reads back", maps[k][0]);
    CHECK (g_strcmp0 (enum_nick (h->element, "learn-loss"), "mse") == 0, "learn-loss is mse by "
           "default");
    gst_util_set_object_arg (G_OBJECT (h->element), "learn-loss", losses[k]);
    CHECK (g_strcmp0 (enum_nick (h->element, "learn-loss"), losses[k]) == 0,
           "learn-loss=%s reads back", losses[k]);
    g_object_set (h->element, "learn-contrast", contrast[k], NULL);
    gdouble got = -1;
    g_object_get (h->element, "learn-contrast", &got, NULL);
    CHECK (got == contrast[k], "learn-contrast=%g reads back (%g)", contrast[k], got);
    GRand *rng = g_rand_new_with_seed (17);
    guint8 img[W * H];
    for (guint i = 0; i < 9; i++) {
      texture (img, W, H, rng);
      gst_buffer_unref (push_frame (h, "GRAY8", W, H, i, img));
    }
    GstMessage *learned = wait_message (bus, GST_MESSAGE_ELEMENT | GST_MESSAGE_ERROR,
                                        "aeanomaly-learned", 100);
    ae_error err;
    ae_model *m = learned ? ae_model_load (saved, &err) : NULL;
    double scale = 0;
    CHECK (m && g_strcmp0 (ae_model_get_str (m, "anomaly.score"), maps[k][1]) == 0
           && !ae_model_get_float (m, "anomaly.mix_scale_mse", &scale),
           "learn-map=%s: the learned model's anomaly.score is %s, without mix scales",
           maps[k][0], maps[k][1]);
    double weight = 0, unit = 0;
    gboolean has = m && ae_model_get_float (m, "anomaly.contrast_weight", &weight);
    if (m)
      ae_model_get_float (m, "anomaly.contrast_map_mean", &unit);
    CHECK (contrast[k] ? has && unit > 0 && fabs (weight - contrast[k] * unit) < 1e-5 * weight
                       : !has,
           "learn-contrast=%g: the learned model's contrast weight is %s (%g, map mean %g)",
           contrast[k], has ? "stored" : "absent", weight, unit);
    CHECK (m && g_strcmp0 (ae_model_get_str (m, "train.loss"), losses[k]) == 0,
           "learn-loss=%s: the learned model was trained with %s", losses[k],
           m ? ae_model_get_str (m, "train.loss") : "(no model)");
    ae_model_free (m);
    if (learned)
      gst_message_unref (learned);
    g_rand_free (rng);
    harness_free (h, bus);
    g_free (caps);
    g_free (saved);
  }
}

/* Stopping while training cancels promptly. */
static void
test_learning_cancel (void)
{
  GstBus *bus;
  gchar *caps = caps_string ("GRAY8", 256, 256);
  GstHarness *h = harness_new (&bus, caps, "learn-frames", 4, NULL);
  guint8 *img = g_new (guint8, 256 * 256);
  GRand *rng = g_rand_new_with_seed (14);
  for (guint i = 0; i < 4; i++) {
    texture (img, 256, 256, rng);
    gst_buffer_unref (push_frame (h, "GRAY8", 256, 256, i, img));
  }
  gint64 t0 = g_get_monotonic_time ();
  harness_free (h, bus);
  double s = (g_get_monotonic_time () - t0) / 1e6;
  CHECK (s < 2.0, "stop during training returns in %.2f s", s);
  g_rand_free (rng);
  g_free (img);
  g_free (caps);
}

static gchar *
write_file (const gchar *name, const gchar *contents)
{
  gchar *path = g_build_filename (workdir, name, NULL);
  g_file_set_contents (path, contents, -1, NULL);
  return path;
}

/* Pushes frames until the meta's threshold becomes `want` (a hot-swap is
 * loaded in the background). */
static gboolean
wait_threshold (GstHarness *h, double want, guint64 *index)
{
  guint8 img[W * H];
  GRand *rng = g_rand_new_with_seed (15);
  gboolean ok = FALSE;
  for (gint tries = 0; tries < 250 && !ok; tries++) {
    texture (img, W, H, rng);
    GstBuffer *out = push_frame (h, "GRAY8", W, H, (*index)++, img);
    ok = fabs (threshold_of (out) - want) < 1e-12;
    gst_buffer_unref (out);
    if (!ok)
      g_usleep (20000);
  }
  g_rand_free (rng);
  return ok;
}

static void
test_hot_swap (void)
{
  GstBus *bus;
  gchar *caps = caps_string ("GRAY8", W, H);
  GstHarness *h = harness_new (&bus, caps, "model", model_path, NULL);
  guint64 index = 0;
  CHECK (wait_threshold (h, model_threshold, &index), "model A in use");
  g_object_set (h->element, "model", model2_path, NULL);
  CHECK (wait_threshold (h, 2 * model_threshold, &index), "hot-swap to model B while PLAYING");

  gchar *garbage = write_file ("garbage.aem", "this is not a model");
  g_object_set (h->element, "model", garbage, NULL);
  GstMessage *warn = wait_message (bus, GST_MESSAGE_WARNING, NULL, 10);
  CHECK (warn != NULL, "a bad file while PLAYING posts a WARNING");
  if (warn)
    gst_message_unref (warn);
  CHECK (wait_threshold (h, 2 * model_threshold, &index), "... and model B stays");

  /* Loads, but does not fit: 2 channels. */
  gchar *two = g_build_filename (workdir, "two.aem", NULL);
  ae_model *m = ae_model_new ("conv:4:3:2:1,deconv:2:4:2:1:sigmoid", 2, 8, 8, 1, NULL);
  ae_model_set_float (m, "anomaly.threshold", 1.0);
  ae_model_save (m, two, NULL);
  ae_model_free (m);
  g_object_set (h->element, "model", two, NULL);
  warn = wait_message (bus, GST_MESSAGE_WARNING, NULL, 10);
  CHECK (warn != NULL, "a 2-channel model is refused with a WARNING");
  if (warn)
    gst_message_unref (warn);
  CHECK (wait_threshold (h, 2 * model_threshold, &index), "... and model B stays");
  harness_free (h, bus);
  g_free (two);
  g_free (garbage);
  g_free (caps);
}

/* Starting with a bad model is a clean error, without a crash. */
static void
expect_start_error (const gchar *what, const gchar *prop, const gchar *value, const gchar *text)
{
  GstElement *e = gst_element_factory_make ("aeanomaly", NULL);
  GstBus *bus = gst_bus_new ();
  gst_element_set_bus (e, bus);
  g_object_set (e, prop, value, NULL);
  GstStateChangeReturn ret = gst_element_set_state (e, GST_STATE_PAUSED);
  GstMessage *msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  GError *error = NULL;
  if (msg)
    gst_message_parse_error (msg, &error, NULL);
  CHECK (ret == GST_STATE_CHANGE_FAILURE && error && strstr (error->message, text),
         "%s: error \"%s\"", what, error ? error->message : "(none)");
  g_clear_error (&error);
  if (msg)
    gst_message_unref (msg);
  gst_element_set_state (e, GST_STATE_NULL);
  gst_object_unref (e);
  gst_bus_set_flushing (bus, TRUE);
  gst_object_unref (bus);
}

static void
test_bad_start (void)
{
  gchar *garbage = write_file ("garbage2.aem", "not a model either");
  gchar *missing = g_build_filename (workdir, "missing.aem", NULL);
  gchar *nothr = g_build_filename (workdir, "nothreshold.aem", NULL);
  gchar *baddir = g_build_filename (workdir, "no", "such", "dir", "e.jsonl", NULL);
  ae_model *m = ae_model_load (model_path, NULL);
  ae_model *bare = ae_model_new (ae_model_spec (m), 1, H, W, 1, NULL);
  ae_model_save (bare, nothr, NULL);
  ae_model_free (bare);
  ae_model_free (m);
  expect_start_error ("garbage model", "model", garbage, "Could not load");
  expect_start_error ("missing model", "model", missing, "Could not load");
  expect_start_error ("model without anomaly.threshold", "model", nothr, "anomaly.threshold");
  expect_start_error ("unwritable events-location", "events-location", baddir, "events file");
  g_free (baddir);
  g_free (nothr);
  g_free (missing);
  g_free (garbage);
}

/* ---- Latent scores --------------------------------------------------------------------- */

/* Whether the model at path refuses frames twice its trained W x H size. */
static gboolean
refuses_double_size (const gchar *path)
{
  GstBus *bus;
  gchar *caps = caps_string ("GRAY8", 2 * W, 2 * H);
  GstHarness *h = harness_new (&bus, caps, "model", path, NULL);
  guint8 *img = g_new0 (guint8, 4 * W * H);
  GstBuffer *out = push_frame (h, "GRAY8", 2 * W, 2 * H, 0, img);
  if (out)
    gst_buffer_unref (out);
  harness_free (h, bus);
  g_free (img);
  g_free (caps);
  return out == NULL;
}

/* A copy of the model at `src` with the given frame scoring, saved as
 * `name`: for the Gaussian's scores fitted on `count` fresh textures'
 * latent vectors (codes or shifts), for elbo (a VAE) with 4 posterior
 * samples. */
static gchar *
scored_copy (const gchar *src, const char *name, ae_score_kind kind, ae_latent_vector vector,
             double threshold)
{
  ae_model *m = ae_model_load (src, NULL);
  gint c, h, w;
  ae_model_input_shape (m, &c, &h, &w);
  const gint count = 64;
  float *x = texture_set (h, w, count, 17);
  ae_error err = { AE_OK, "" };
  ae_dataset d = { x, NULL, count, 1, h, w };
  ae_frame_scoring fs = { .kind = kind, .recon_mean = 0.002, .recon_std = 0.001,
                         .mahal_mean = 10.0, .mahal_std = 5.0, .elbo_samples = 4,
                         .elbo_seed = 2, .elbo_beta = 1.0 };
  CHECK ((kind == AE_SCORE_ELBO
          || ae_latent_fit_vector (m, vector, &d, NULL, count, 0.01, &err) == AE_OK)
         && ae_model_set_frame_scoring (m, &fs, &err) == AE_OK, "%s: %s score set (%s)", name,
         ae_score_kind_name (kind), err.message);
  ae_model_set_float (m, "anomaly.map_threshold", 0.004);
  gchar *path = save_anomaly_model (m, name, "mean-mse", threshold);
  g_free (x);
  ae_model_free (m);
  return path;
}

/* The elbo score from libae's parts: the mean of the map over the
 * posterior samples, plus the weighted KL. */
static double
reference_elbo_score (const ae_model *m, const ae_frame_scoring *fs, const float *x, gsize n)
{
  float *map = g_new (float, n), *scratch = g_new (float, n);
  ae_elbo *e = ae_elbo_new_for (m, fs, NULL);
  double kl = ae_elbo_map (e, AE_LOSS_MSE, 7, x, map);
  double score = ae_frame_score (fs, ae_score_top_mean (map, n, 1.0f, scratch), kl);
  ae_elbo_free (e);
  g_free (scratch);
  g_free (map);
  return score;
}

/* The vector the model's Gaussian describes, from the session's own
 * passes: the code z(x), or the shift z(x) - z(x^). Owned by s. */
static const float *
reference_latent_vector (const ae_model *m, ae_session *s, const float *x)
{
  if (ae_model_latent_vector (m) == AE_LATENT_CODE)
    return ae_session_encode (s, x);
  gint c, h, w;
  ae_model_input_shape (m, &c, &h, &w);
  gsize k = ae_session_latent_size (s), n = (gsize) c * h * w;
  float *recon = g_memdup2 (ae_session_forward (s, x), n * sizeof *recon);
  float *code = g_memdup2 (ae_session_encode (s, x), k * sizeof *code);
  float *shift = (float *) ae_session_encode (s, recon); /* the session's latent buffer */
  for (gsize i = 0; i < k; i++)
    shift[i] = code[i] - shift[i];
  g_free (code);
  g_free (recon);
  return shift;
}

/* The frame score from libae's parts, as ae-train calibrates it. */
static double
reference_latent_score (const ae_model *m, const guint8 *luma, gint w, gint h)
{
  gsize n = (gsize) w * h;
  float *x = g_new (float, n), *scratch = g_new (float, MAX (ae_model_latent_gaussian (m), 1));
  ae_session *s = ae_session_new (m, 1, h, w, NULL);
  ae_frame_scoring fs;
  ae_model_frame_scoring (m, &fs, NULL);
  to_float (luma, x, n);
  double score;
  if (fs.kind == AE_SCORE_ELBO) {
    score = reference_elbo_score (m, &fs, x, n);
  } else {
    double d = ae_latent_mahalanobis (m, reference_latent_vector (m, s, x), scratch);
    score = ae_frame_score (&fs, reference_score (m, luma, w, h, AE_LOSS_MSE), d);
  }
  ae_session_free (s);
  g_free (scratch);
  g_free (x);
  return score;
}

static void
check_latent_model (const gchar *path, const gchar *what)
{
  GstBus *bus;
  gchar *caps = caps_string ("GRAY8", 16, 16);
  GstHarness *h = harness_new (&bus, caps, "model", path, NULL);
  ae_model *m = ae_model_load (path, NULL);
  GRand *rng = g_rand_new_with_seed (5);
  guint8 img[16 * 16];
  double normal = 0, worst = 0;
  for (guint i = 0; i < 4; i++) {
    texture (img, 16, 16, rng);
    GstBuffer *out = push_frame (h, "GRAY8", 16, 16, i, img);
    double got = score_of (out), want = reference_latent_score (m, img, 16, 16);
    worst = MAX (worst, fabs (got - want) / MAX (fabs (want), 1e-3));
    normal = MAX (normal, got);
    if (out)
      gst_buffer_unref (out);
  }
  CHECK (worst < 1e-4, "%s score: the element's frame score is the model's (worst relative "
         "difference %.2g)", what, worst);
  add_defect_sized (img, 16, 4, 4, 6);
  GstBuffer *out = push_frame (h, "GRAY8", 16, 16, 4, img);
  CHECK (score_of (out) > normal, "%s score: a defect scores higher (%g > %g)", what,
         score_of (out), normal);
  gdouble pixel;
  g_object_get (h->element, "pixel-threshold", &pixel, NULL);
  CHECK (fabs (pixel - 4 * 0.004) < 1e-9, "%s score: pixel threshold from the map's own "
         "threshold (%g)", what, pixel);
  if (out)
    gst_buffer_unref (out);
  ae_model_free (m);
  g_rand_free (rng);
  harness_free (h, bus);
  g_free (caps);
}

static void
test_latent_score (void)
{
  gchar *mahal = scored_copy (dense_path, "mahal.aem", AE_SCORE_MAHALANOBIS, AE_LATENT_CODE,
                              50.0);
  gchar *combined = scored_copy (dense_path, "combined.aem", AE_SCORE_COMBINED, AE_LATENT_CODE,
                                 5.0);
  gchar *shift = scored_copy (dense_path, "shift.aem", AE_SCORE_COMBINED, AE_LATENT_SHIFT, 5.0);
  gchar *elbo = scored_copy (vae_path, "elbo.aem", AE_SCORE_ELBO, AE_LATENT_CODE, 0.05);
  check_latent_model (mahal, "mahalanobis");
  check_latent_model (combined, "combined");
  check_latent_model (shift, "combined, latent shift");
  check_latent_model (elbo, "elbo");
  check_fixed_size_model (elbo, "VAE with the elbo score");
  /* A fully convolutional model's latent grows with the frame: a latent
   * score only runs at the trained size. */
  gchar *fc = scored_copy (model_path, "fconv-mahal.aem", AE_SCORE_MAHALANOBIS, AE_LATENT_CODE,
                           50.0);
  CHECK (refuses_double_size (fc), "latent score of a fully convolutional model at another "
         "size: refused");
  GstBus *bus;
  gchar *caps = caps_string ("GRAY8", W, H);
  GstHarness *h = harness_new (&bus, caps, "model", fc, NULL);
  guint8 *img = g_new0 (guint8, W * H);
  GstBuffer *out = push_frame (h, "GRAY8", W, H, 0, img);
  CHECK (out && isfinite (score_of (out)), "... and runs at the trained size (score %g)",
         score_of (out));
  if (out)
    gst_buffer_unref (out);
  harness_free (h, bus);
  g_free (caps);
  g_free (img);
  g_free (fc);
  g_free (shift);
  g_free (combined);
  g_free (mahal);
  g_free (elbo);
}

/* ---- Per-pixel standardised maps -------------------------------------------------------- */

/* The fully convolutional model with the mean MSE map of 32 fresh textures
 * at its trained size W x H. */
static gchar *
map_mean_copy (void)
{
  ae_model *m = ae_model_load (model_path, NULL);
  const gint count = 32;
  gsize n = (gsize) W * H;
  float *x = texture_set (H, W, count, 23), *map = g_new (float, n);
  float *scratch = g_new (float, 8 * n), *mean = g_new0 (float, n);
  ae_session *s = ae_session_new (m, 1, H, W, NULL);
  for (gint k = 0; k < count; k++) {
    ae_error_map (AE_LOSS_MSE, x + k * n, ae_session_forward (s, x + k * n), 1, H, W, 7, map,
                  scratch);
    for (gsize i = 0; i < n; i++)
      mean[i] += map[i] / count;
  }
  ae_error err = { AE_OK, "" };
  CHECK (ae_model_set_map_mean (m, mean, H, W, &err) == AE_OK, "mean map set (%s)", err.message);
  gchar *path = save_anomaly_model (m, "map-mean.aem", "mean-mse", 3.0);
  ae_session_free (s);
  g_free (mean);
  g_free (scratch);
  g_free (map);
  g_free (x);
  ae_model_free (m);
  return path;
}

static void
test_map_mean (void)
{
  gchar *path = map_mean_copy ();
  ae_model *m = ae_model_load (path, NULL);
  GstBus *bus;
  gchar *caps = caps_string ("GRAY8", W, H);
  GstHarness *h = harness_new (&bus, caps, "model", path, NULL);
  GRand *rng = g_rand_new_with_seed (31);
  guint8 img[W * H];
  float x[W * H], map[W * H], scratch[8 * W * H];
  ae_session *s = ae_session_new (m, 1, H, W, NULL);
  double worst = 0, normal = 0, defect = 0;
  gboolean flagged = FALSE;
  for (guint i = 0; i < 4; i++) {
    texture (img, W, H, rng);
    if (i == 3)
      add_defect (img, W, 12, 12);
    to_float (img, x, W * H);
    ae_error_map (AE_LOSS_MSE, x, ae_session_forward (s, x), 1, H, W, 7, map, scratch);
    ae_map_normalise (m, map, H, W);
    double want = ae_score_top_mean (map, W * H, 1.0f, scratch);
    GstBuffer *out = push_frame (h, "GRAY8", W, H, i, img);
    worst = MAX (worst, fabs (score_of (out) - want) / want);
    if (i < 3)
      normal = MAX (normal, score_of (out));
    defect = score_of (out);
    flagged = out && is_anomalous (out);
    if (out)
      gst_buffer_unref (out);
  }
  CHECK (worst < 1e-5 && normal > 0.3 && normal < 3, "the frame score is the mean of the map "
         "divided by the mean map (worst relative difference %.2g; normal frames up to %g)",
         worst, normal);
  CHECK (defect > normal && flagged, "a defect scores %g, anomalous at threshold 3", defect);
  harness_free (h, bus);
  g_free (caps);
  CHECK (refuses_double_size (path), "a mean map with frames of another size: refused");
  ae_session_free (s);
  g_rand_free (rng);
  ae_model_free (m);
  g_free (path);
}

/* New caps mid-stream: everything is rebuilt for the new size. */
static void
test_renegotiation (void)
{
  GstBus *bus;
  gchar *caps = caps_string ("GRAY8", W, H), *caps2 = caps_string ("RGBA", 48, 40);
  GstHarness *h = harness_new (&bus, caps, "model", model_path, NULL);
  GRand *rng = g_rand_new_with_seed (16);
  guint8 img[48 * 40];
  texture (img, W, H, rng);
  gst_buffer_unref (push_frame (h, "GRAY8", W, H, 0, img));
  gst_harness_set_src_caps_str (h, caps2);
  texture (img, 48, 40, rng);
  add_defect (img, 48, 40, 30);
  GstBuffer *out = push_frame (h, "RGBA", 48, 40, 1, img);
  const GstStructure *s = result_of (out);
  /* The frame score is a mean: the same defect weighs less in a larger
   * frame, so only its region is checked. */
  CHECK (n_regions (s) == 1 && region_covers (s, 42, 32),
         "after renegotiation to 48x40 RGBA the defect at (40,30) is located (score %g, "
         "threshold %g, %u regions)", score_of (out), threshold_of (out), n_regions (s));
  if (out)
    gst_buffer_unref (out);
  g_rand_free (rng);
  harness_free (h, bus);
  g_free (caps2);
  g_free (caps);
}

static const struct
{
  const char *name;
  void (*run) (void);
  gboolean needs_models;
} tests[] = {
  { "formats", test_formats, TRUE },
  { "meta", test_meta, TRUE },
  { "ssim", test_ssim_score, TRUE },
  { "dense", test_dense_model, TRUE },
  { "messages", test_messages, TRUE },
  { "events", test_events, TRUE },
  { "aggregate", test_aggregate, TRUE },
  { "border", test_border, TRUE },
  { "map mix", test_map_mix, TRUE },
  { "lost contrast", test_lost_contrast, TRUE },
  { "interval", test_interval, TRUE },
  { "roi", test_roi, TRUE },
  { "threshold", test_threshold, TRUE },
  { "outputs", test_outputs, TRUE },
  { "json", test_json, TRUE },
  { "learning", test_learning, FALSE },
  { "learning-map", test_learning_map, FALSE },
  { "learning-cancel", test_learning_cancel, FALSE },
  { "hot-swap", test_hot_swap, TRUE },
  { "bad-start", test_bad_start, TRUE },
  { "renegotiation", test_renegotiation, TRUE },
  { "latent-score", test_latent_score, TRUE },
  { "map-mean", test_map_mean, TRUE },
};

/* test_aeanomaly [NAME...]: all tests, or the named ones. */
int
main (int argc, char **argv)
{
  /* Scan plugins in this process: a forked gst-plugin-scanner has no
   * AddressSanitizer runtime and cannot load a sanitised plugin. */
  g_setenv ("GST_REGISTRY_FORK", "no", TRUE);
  gst_init (&argc, &argv);
  workdir = g_dir_make_tmp ("test-aeanomaly-XXXXXX", NULL);
  gboolean have_models = FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (tests); i++) {
    if (!test_selected (argc, argv, tests[i].name))
      continue;
    if (tests[i].needs_models && !have_models) {
      make_models ();
      have_models = TRUE;
    }
    printf ("# %s\n", tests[i].name);
    tests[i].run ();
  }

  test_remove_dir (workdir);
  g_free (model_path);
  g_free (model2_path);
  g_free (ssim_path);
  g_free (dense_path);
  g_free (vae_path);
  g_free (rgb_path);
  g_free (workdir);
  gst_deinit ();
  return CHECK_DONE ();
}
