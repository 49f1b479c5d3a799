/* aeencode element tests (and VAE models in aedenoise): GstHarness around
 * the elements from the build tree (GST_PLUGIN_PATH); latents are compared
 * with libae run here on small models the test builds itself.
 *
 * One "ok"/"not ok" line per check; the exit status reflects failures.
 * Optional arguments select tests by name. */
#include "check.h"
#include "element_test.h"

#include <ae.h>
#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gst/video/video.h>

#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_D 32

static gchar *workdir;
static gchar *fconv_path;  /* fully convolutional, 1 channel, size multiple 4 */
static gchar *rgb_path;    /* fully convolutional, 3 channels */
static gchar *dense_path;  /* dense 16x16, latent 32 like the default */
static gchar *vae_path;    /* dense VAE 16x16, latent 4 */
static gchar *fvae_path;   /* fully convolutional VAE, for aedenoise */
static gchar *trunc_path;  /* half of fconv_path */
static gchar *two_path;    /* 2 channels: fits no element */

static GstStaticPadTemplate src_templ = GST_STATIC_PAD_TEMPLATE ("src", GST_PAD_SRC,
    GST_PAD_ALWAYS, GST_STATIC_CAPS_ANY);
static GstStaticPadTemplate sink_templ = GST_STATIC_PAD_TEMPLATE ("sink", GST_PAD_SINK,
    GST_PAD_ALWAYS, GST_STATIC_CAPS_ANY);

/* ---- Images and frames --------------------------------------------------------------- */

/* A wave pattern; `phase` makes different frames. */
static void
pattern (guint8 *dst, gint w, gint h, double phase)
{
  for (gint y = 0; y < h; y++)
    for (gint x = 0; x < w; x++)
      dst[y * w + x] = (guint8) lround (127.5 + 100 * sin (0.4 * x + phase) * cos (0.3 * y - phase));
}

/* Writes `planes` (1: luma, R = G = B for RGB; 3: R, G, B) into a frame. */
static GstBuffer *
make_buffer (const gchar *format, gint w, gint h, guint64 index, guint8 *const planes[3])
{
  GstVideoInfo info;
  GstVideoFrame f;
  gst_video_info_set_format (&info, gst_video_format_from_string (format), w, h);
  GstBuffer *buf = gst_buffer_new_allocate (NULL, info.size, NULL);
  gst_video_frame_map (&f, &info, buf, GST_MAP_WRITE);
  gboolean rgb = GST_VIDEO_INFO_IS_RGB (&info);
  for (guint c = 0; c < GST_VIDEO_FRAME_N_COMPONENTS (&f); c++) {
    gint ps = GST_VIDEO_FRAME_COMP_PSTRIDE (&f, c), stride = GST_VIDEO_FRAME_COMP_STRIDE (&f, c);
    guint8 *data = GST_VIDEO_FRAME_COMP_DATA (&f, c);
    for (gint y = 0; y < GST_VIDEO_FRAME_COMP_HEIGHT (&f, c); y++)
      for (gint x = 0; x < GST_VIDEO_FRAME_COMP_WIDTH (&f, c); x++) {
        const guint8 *p = planes[rgb && c < 3 && planes[1] ? c : 0];
        data[y * stride + x * ps] = c == 3 ? 255 : (rgb || c == 0) ? p[y * w + x] : 128;
      }
  }
  gst_video_frame_unmap (&f);
  GST_BUFFER_PTS (buf) = GST_BUFFER_DTS (buf) = index * GST_SECOND / 25;
  GST_BUFFER_DURATION (buf) = GST_SECOND / 25;
  GST_BUFFER_OFFSET (buf) = index;
  GST_BUFFER_OFFSET_END (buf) = index + 1;
  return buf;
}

static GstBuffer *
make_gray (gint w, gint h, guint64 index, guint8 *luma)
{
  guint8 *planes[3] = { luma, NULL, NULL };
  return make_buffer ("GRAY8", w, h, index, planes);
}

static gchar *
caps_string (const gchar *format, gint w, gint h)
{
  return g_strdup_printf ("video/x-raw,format=%s,width=%d,height=%d,framerate=25/1", format, w,
                          h);
}

/* A copy of a buffer's floats (little-endian on the hosts we test). */
static float *
floats_of (GstBuffer *buf, gsize *n)
{
  GstMapInfo map;
  *n = 0;
  if (!buf || !gst_buffer_map (buf, &map, GST_MAP_READ))
    return g_new0 (float, 1);
  *n = map.size / sizeof (float);
  float *v = g_new0 (float, *n + 1);
  memcpy (v, map.data, *n * sizeof (float));
  gst_buffer_unmap (buf, &map);
  return v;
}

static double
max_diff (const float *a, const float *b, gsize n)
{
  double m = 0;
  for (gsize i = 0; i < n; i++)
    m = MAX (m, fabs ((double) a[i] - b[i]));
  return m;
}

/* ---- Harness ------------------------------------------------------------------------------ */

static GstElement *
make_element (const gchar *factory)
{
  GstElement *e = gst_element_factory_make (factory, NULL);
  if (!e) {
    fprintf (stderr, "%s not found: is GST_PLUGIN_PATH set?\n", factory);
    exit (1);
  }
  return e;
}

/* The element with `model` and `roi` (NULL: unset) on a bus of its own;
 * `sink_caps`, if given, is all the harness accepts. */
static GstHarness *
harness_full (const gchar *factory, GstBus **bus, const gchar *model, const gchar *roi,
              const gchar *sink_caps, const gchar *format, gint w, gint h)
{
  GstElement *e = make_element (factory);
  if (model)
    g_object_set (e, "model", model, NULL);
  if (roi)
    g_object_set (e, "roi", roi, NULL);
  *bus = gst_bus_new ();
  gst_element_set_bus (e, *bus);
  GstHarness *hn = gst_harness_new_full (e, &src_templ, "sink", &sink_templ, "src");
  gst_object_unref (e);
  if (sink_caps)
    gst_harness_set_sink_caps_str (hn, sink_caps);
  gchar *caps = caps_string (format, w, h);
  gst_harness_set_src_caps_str (hn, caps);
  g_free (caps);
  return hn;
}

static GstHarness *
harness_new (GstBus **bus, const gchar *model, const gchar *format, gint w, gint h)
{
  return harness_full ("aeencode", bus, model, NULL, NULL, format, w, h);
}

static void
harness_free (GstHarness *h, GstBus *bus)
{
  gst_harness_teardown (h);
  gst_bus_set_flushing (bus, TRUE);
  gst_object_unref (bus);
}

static GstBuffer *
push (GstHarness *h, GstBuffer *buf)
{
  return gst_harness_push (h, buf) == GST_FLOW_OK ? gst_harness_pull (h) : NULL;
}

/* The latent of one GRAY8 frame. */
static float *
encode_gray (GstHarness *h, gint w, gint hh, guint8 *luma, gsize *n)
{
  GstBuffer *out = push (h, make_gray (w, hh, 0, luma));
  float *v = floats_of (out, n);
  if (out)
    gst_buffer_unref (out);
  return v;
}

/* The src pad's current caps (what downstream was told). */
static GstStructure *
src_caps_structure (GstHarness *h)
{
  GstCaps *caps = gst_pad_get_current_caps (h->sinkpad);
  GstStructure *s = caps && !gst_caps_is_empty (caps)
                        ? gst_structure_copy (gst_caps_get_structure (caps, 0)) : NULL;
  if (caps)
    gst_caps_unref (caps);
  return s;
}

static gboolean
has_dimensions (const GstStructure *s, gsize d)
{
  gchar *want = g_strdup_printf ("%" G_GSIZE_FORMAT ":1:1:1", d);
  gboolean ok = s && g_strcmp0 (gst_structure_get_string (s, "dimensions"), want) == 0;
  g_free (want);
  return ok;
}

static void
expect_message (GstBus *bus, GstMessageType type, const gchar *what, const gchar *text)
{
  GstMessage *msg = gst_bus_timed_pop_filtered (bus, 10 * GST_SECOND,
                                                GST_MESSAGE_WARNING | GST_MESSAGE_ERROR);
  GError *error = NULL;
  if (msg && GST_MESSAGE_TYPE (msg) == type && type == GST_MESSAGE_WARNING)
    gst_message_parse_warning (msg, &error, NULL);
  else if (msg && GST_MESSAGE_TYPE (msg) == type)
    gst_message_parse_error (msg, &error, NULL);
  CHECK (error && (!text || strstr (error->message, text)), "%s: %s \"%s\"", what,
         type == GST_MESSAGE_WARNING ? "WARNING" : "ERROR", error ? error->message : "(none)");
  g_clear_error (&error);
  if (msg)
    gst_message_unref (msg);
}

/* ---- libae references ------------------------------------------------------------------- */

/* The latent libae gives for `channels` byte planes of w x h, padded by edge
 * replication to pw x ph. */
static float *
reference_latent (const gchar *path, guint8 *const planes[3], gint channels, gint w, gint h,
                  gint pw, gint ph, gsize *n)
{
  ae_model *m = ae_model_load (path, NULL);
  float *in = g_new (float, (gsize) channels * pw * ph);
  for (gint c = 0; c < channels; c++)
    for (gint y = 0; y < ph; y++)
      for (gint x = 0; x < pw; x++)
        in[((gsize) c * ph + y) * pw + x] = planes[c][MIN (y, h - 1) * w + MIN (x, w - 1)]
                                            * (1.0f / 255.0f);
  ae_session *s = m ? ae_session_new (m, 1, ph, pw, NULL) : NULL;
  const float *z = s ? ae_session_encode (s, in) : NULL;
  *n = z ? ae_session_latent_size (s) : 0;
  float *out = g_new0 (float, *n + 1);
  if (z)
    memcpy (out, z, *n * sizeof (float));
  ae_session_free (s);
  ae_model_free (m);
  g_free (in);
  return out;
}

/* ---- Models -------------------------------------------------------------------------------- */

static gchar *
save_model (ae_model *m, const gchar *name)
{
  gchar *path = g_build_filename (workdir, name, NULL);
  ae_error err;
  CHECK (m && ae_model_save (m, path, &err) == AE_OK, "save %s", name);
  ae_model_free (m);
  return path;
}

static ae_model *
train_on_patterns (const gchar *spec, gint side, gint epochs)
{
  const gint count = 32;
  gsize n = (gsize) side * side;
  float *x = g_new (float, count * n);
  guint8 *img = g_new (guint8, n);
  for (gint i = 0; i < count; i++) {
    pattern (img, side, side, 0.2 * i);
    for (gsize j = 0; j < n; j++)
      x[i * n + j] = img[j] / 255.0f;
  }
  ae_error err;
  ae_model *m = ae_model_new (spec, 1, side, side, 11, &err);
  ae_train_opts o;
  ae_train_opts_init (&o);
  o.epochs = epochs;
  o.batch = 8;
  o.val_split = 0;
  ae_train_result r;
  ae_status st = m ? ae_train (m, &(ae_dataset) { x, NULL, count, 1, side, side }, &o, &r, &err)
                   : AE_E_ARG;
  CHECK (st == AE_OK, "train %s (loss %.4f)", spec, st == AE_OK ? r.final_train_loss : -1.0);
  g_free (img);
  g_free (x);
  return m;
}

static gchar *
truncated_copy (const gchar *src, const gchar *name)
{
  gchar *data = NULL, *path = g_build_filename (workdir, name, NULL);
  gsize len = 0;
  g_file_get_contents (src, &data, &len, NULL);
  CHECK (data && g_file_set_contents (path, data, (gssize) (len / 2), NULL), "truncated %s", name);
  g_free (data);
  return path;
}

static void
make_models (void)
{
  fconv_path = save_model (ae_model_new ("conv:4:3:2:1:lrelu,conv:8:3:2:1:lrelu,"
      "deconv:4:4:2:1:lrelu,deconv:1:4:2:1:sigmoid", 1, 16, 16, 2, NULL), "fconv.aem");
  rgb_path = save_model (ae_model_new ("conv:6:3:2:1:lrelu,deconv:3:4:2:1:sigmoid", 3, 16, 16,
                                       3, NULL), "rgb.aem");
  dense_path = save_model (ae_model_new ("dense:32,dense:256:sigmoid:1x16x16", 1, 16, 16, 4,
                                         NULL), "dense.aem");
  two_path = save_model (ae_model_new ("conv:4:3:2:1:lrelu,deconv:2:4:2:1:sigmoid", 2, 16, 16,
                                       5, NULL), "two.aem");
  vae_path = save_model (train_on_patterns ("dense:32:lrelu,dense:8,sample,dense:32:lrelu,"
                                            "dense:256:sigmoid:1x16x16", 16, 3), "vae.aem");
  fvae_path = save_model (train_on_patterns ("conv:4:3:2:1:lrelu,conv:8:3:1:1,sample,"
                                             "deconv:1:4:2:1:sigmoid", 16, 3), "fvae.aem");
  trunc_path = truncated_copy (fconv_path, "truncated.aem");
}

/* ---- Tests ----------------------------------------------------------------------------------- */

/* The embedded default: caps, size, timestamps, caps queries. */
static void
test_default_caps (void)
{
  GstBus *bus;
  guint8 img[64 * 48];
  gint num = 0, den = 0, nt = 0;
  pattern (img, 64, 48, 0);
  GstHarness *hn = harness_new (&bus, NULL, "GRAY8", 64, 48);
  GstBuffer *out = push (hn, make_gray (64, 48, 7, img));
  GstStructure *s = src_caps_structure (hn);
  gchar *str = s ? gst_structure_to_string (s) : NULL;
  CHECK (s && gst_structure_has_name (s, "other/tensors") && has_dimensions (s, DEFAULT_D)
         && g_strcmp0 (gst_structure_get_string (s, "types"), "float32") == 0
         && g_strcmp0 (gst_structure_get_string (s, "format"), "static") == 0
         && gst_structure_get_int (s, "num_tensors", &nt) && nt == 1
         && gst_structure_get_fraction (s, "framerate", &num, &den) && num == 25 && den == 1,
         "src caps: %s", str);
  g_free (str);
  CHECK (out && gst_buffer_get_size (out) == DEFAULT_D * sizeof (float),
         "one buffer of %d float32 per frame (%" G_GSIZE_FORMAT " bytes)", DEFAULT_D,
         out ? gst_buffer_get_size (out) : 0);
  CHECK (out && GST_BUFFER_PTS (out) == 7 * GST_SECOND / 25 && GST_BUFFER_DTS (out) == GST_BUFFER_PTS (out)
         && GST_BUFFER_DURATION (out) == GST_SECOND / 25 && GST_BUFFER_OFFSET (out) == 7
         && GST_BUFFER_OFFSET_END (out) == 8, "pts, dts, duration and offsets copied");

  GstCaps *q = gst_pad_peer_query_caps (hn->sinkpad, NULL);
  gchar *qs = q ? gst_caps_to_string (q) : NULL;
  CHECK (q && gst_caps_get_size (q) == 1 && has_dimensions (gst_caps_get_structure (q, 0), DEFAULT_D),
         "caps query on the src pad: %s", qs);
  g_free (qs);
  GstCaps *v = gst_pad_peer_query_caps (hn->srcpad, NULL);
  GstCaps *gray = gst_caps_from_string ("video/x-raw,format=GRAY8,width=640,height=480");
  CHECK (v && gst_caps_can_intersect (v, gray), "caps query on the sink pad: any video size");
  gst_caps_unref (gray);
  if (v)
    gst_caps_unref (v);
  if (q)
    gst_caps_unref (q);
  if (s)
    gst_structure_free (s);
  if (out)
    gst_buffer_unref (out);
  harness_free (hn, bus);
}

static void
test_determinism (void)
{
  GstBus *bus;
  guint8 a[40 * 30], b[40 * 30];
  gsize na, nb, nc;
  pattern (a, 40, 30, 0);
  pattern (b, 40, 30, 1.3);
  guint8 *planes[3] = { a, NULL, NULL };
  GstHarness *hn = harness_new (&bus, NULL, "I420", 40, 30);
  GstBuffer *out = push (hn, make_buffer ("I420", 40, 30, 0, planes));
  float *za = floats_of (out, &na);
  if (out)
    gst_buffer_unref (out);
  gst_harness_set_src_caps_str (hn, "video/x-raw,format=GRAY8,width=40,height=30,framerate=25/1");
  float *za2 = encode_gray (hn, 40, 30, a, &nc);
  float *zb = encode_gray (hn, 40, 30, b, &nb);
  CHECK (na == DEFAULT_D && nc == na && max_diff (za, za2, na) == 0,
         "the same frame gives the same latent (I420 and GRAY8 alike)");
  CHECK (nb == na && max_diff (za, zb, na) > 1e-3, "different frames, different latents (%g)",
         max_diff (za, zb, na));
  g_free (za);
  g_free (za2);
  g_free (zb);
  harness_free (hn, bus);
}

/* roi: only the rectangle counts; it equals encoding that crop alone. */
static void
test_roi (void)
{
  GstBus *bus, *bus2;
  guint8 img[64 * 48], crop[28 * 28];
  gsize n0, n1, n2;
  pattern (img, 64, 48, 0.5);
  for (gint y = 0; y < 28; y++)
    memcpy (crop + y * 28, img + (y + 10) * 64 + 20, 28);
  GstHarness *hn = harness_new (&bus, NULL, "GRAY8", 64, 48);
  float *whole = encode_gray (hn, 64, 48, img, &n0);
  g_object_set (hn->element, "roi", "20,10,28,28", NULL);
  float *part = encode_gray (hn, 64, 48, img, &n1);
  GstHarness *h2 = harness_new (&bus2, NULL, "GRAY8", 28, 28);
  float *alone = encode_gray (h2, 28, 28, crop, &n2);
  CHECK (n1 == DEFAULT_D && max_diff (whole, part, n1) > 1e-4, "roi changes the latent (%g)",
         max_diff (whole, part, n1));
  CHECK (n2 == n1 && max_diff (part, alone, n1) < 1e-6,
         "roi 20,10,28,28 equals encoding that 28x28 crop (%g)", max_diff (part, alone, n1));
  gchar *roi = NULL;
  g_object_get (hn->element, "roi", &roi, NULL);
  CHECK (g_strcmp0 (roi, "20,10,28,28") == 0, "roi reads back \"%s\"", roi);
  g_free (roi);

  g_object_set (hn->element, "roi", "50,30,28,28", NULL);
  GstBuffer *bad = push (hn, make_gray (64, 48, 1, img));
  CHECK (bad == NULL, "a roi outside the frame stops the stream");
  expect_message (bus, GST_MESSAGE_ERROR, "roi 50,30,28,28 on 64x48", "does not fit");
  g_free (alone);
  g_free (part);
  g_free (whole);
  harness_free (h2, bus2);
  harness_free (hn, bus);
}

/* A fully convolutional model encodes at the padded frame size:
 * D = ae_model_latent_size there, values equal to libae's. */
static void
check_fconv (const gchar *path, const gchar *format, gint channels, gint w, gint h)
{
  GstBus *bus;
  guint8 r[33 * 17], g[33 * 17], b[33 * 17];
  guint8 *planes[3] = { r, channels == 3 ? g : NULL, channels == 3 ? b : NULL };
  gsize n, nref;
  pattern (r, w, h, 0.1);
  pattern (g, w, h, 0.9);
  pattern (b, w, h, 2.1);
  ae_model *m = ae_model_load (path, NULL);
  gint k = ae_model_size_multiple (m), pw = (w + k - 1) / k * k, ph = (h + k - 1) / k * k;
  gsize d = ae_model_latent_size (m, ph, pw);
  ae_model_free (m);
  GstHarness *hn = harness_new (&bus, path, format, w, h);
  GstBuffer *out = push (hn, make_buffer (format, w, h, 0, planes));
  float *z = floats_of (out, &n);
  guint8 *ref_planes[3] = { r, channels == 3 ? g : r, channels == 3 ? b : r };
  float *ref = reference_latent (path, ref_planes, channels, w, h, pw, ph, &nref);
  GstStructure *s = src_caps_structure (hn);
  CHECK (has_dimensions (s, d) && n == d && nref == d && max_diff (z, ref, n) < 1e-5,
         "%d-channel fully convolutional model on %dx%d %s: D = %" G_GSIZE_FORMAT
         " (padded to %dx%d), values as libae's (%g)", channels, w, h, format, d, pw, ph,
         max_diff (z, ref, MIN (n, nref)));
  if (s)
    gst_structure_free (s);
  g_free (ref);
  g_free (z);
  if (out)
    gst_buffer_unref (out);
  harness_free (hn, bus);
}

static void
test_fully_convolutional (void)
{
  check_fconv (fconv_path, "GRAY8", 1, 33, 17);
  check_fconv (fconv_path, "NV12", 1, 32, 16);
  check_fconv (rgb_path, "RGBA", 3, 33, 17);
  check_fconv (rgb_path, "BGR", 3, 20, 12);
}

/* A dense VAE encodes to mu: deterministic, equal to libae's encoder, and
 * frames of another size are scaled (2x: an exact 2x2 average). */
static void
test_vae_encode (void)
{
  GstBus *bus;
  guint8 img[32 * 32], small[16 * 16];
  guint8 *planes[3] = { small, small, small };
  gsize n, n2, nref;
  pattern (small, 16, 16, 0.7);
  GstHarness *hn = harness_new (&bus, vae_path, "GRAY8", 16, 16);
  float *z = encode_gray (hn, 16, 16, small, &n), *z2 = encode_gray (hn, 16, 16, small, &n2);
  float *ref = reference_latent (vae_path, planes, 1, 16, 16, 16, 16, &nref);
  GstStructure *s = src_caps_structure (hn);
  CHECK (nref == 4 && has_dimensions (s, 4) && n == 4 && max_diff (z, ref, n) < 1e-6
         && max_diff (z, z2, n) == 0, "dense VAE in aeencode: D = 4, mu as libae's, repeatable");
  harness_free (hn, bus);
  g_free (z);

  /* Every 2x2 block of the 32x32 frame has the value of one 16x16 pixel. */
  for (gint y = 0; y < 32; y++)
    for (gint x = 0; x < 32; x++)
      img[y * 32 + x] = small[(y / 2) * 16 + x / 2];
  hn = harness_new (&bus, vae_path, "GRAY8", 32, 32);
  z = encode_gray (hn, 32, 32, img, &n);
  CHECK (n == 4 && max_diff (z, ref, n) < 1e-5, "a 32x32 frame is scaled to the model's 16x16 (%g)",
         max_diff (z, ref, MIN (n, nref)));
  if (s)
    gst_structure_free (s);
  g_free (ref);
  g_free (z2);
  g_free (z);
  harness_free (hn, bus);
}

/* A fully convolutional VAE denoises in aedenoise (mu at inference). */
static void
test_vae_denoise (void)
{
  GstBus *bus;
  GstVideoInfo info;
  guint8 img[20 * 14];
  pattern (img, 20, 14, 0.3);
  GstHarness *hn = harness_full ("aedenoise", &bus, fvae_path, NULL, NULL, "GRAY8", 20, 14);
  g_object_set (hn->element, "adaptive", FALSE, NULL); /* the pattern is clean */
  GstBuffer *a = push (hn, make_gray (20, 14, 0, img)), *b = push (hn, make_gray (20, 14, 1, img));
  gst_video_info_set_format (&info, GST_VIDEO_FORMAT_GRAY8, 20, 14);
  GstMapInfo ma, mb;
  gboolean ok = a && b && gst_buffer_map (a, &ma, GST_MAP_READ);
  ok = ok && gst_buffer_map (b, &mb, GST_MAP_READ);
  gint changed = 0, differ = 0;
  ae_model *m = ae_model_load (fvae_path, NULL);
  ae_session *s = ae_session_new (m, 1, 14, 20, NULL);
  float in[20 * 14];
  for (gint i = 0; i < 20 * 14; i++)
    in[i] = img[i] * (1.0f / 255.0f);
  const float *r = ae_session_forward (s, in);
  for (gint y = 0; ok && y < 14; y++)
    for (gint x = 0; x < 20; x++) {
      gint i = y * 20 + x, v = ma.data[y * info.stride[0] + x];
      changed += v != img[i];
      differ = MAX (differ, abs (v - (gint) lround (255 * r[i])));
      differ = MAX (differ, abs (v - mb.data[y * info.stride[0] + x]));
    }
  CHECK (ok && changed > 0 && differ <= 1,
         "fully convolutional VAE in aedenoise: %d pixels changed, within %d of libae, repeatable",
         changed, differ);
  ae_session_free (s);
  ae_model_free (m);
  if (ok) {
    gst_buffer_unmap (a, &ma);
    gst_buffer_unmap (b, &mb);
  }
  if (a)
    gst_buffer_unref (a);
  if (b)
    gst_buffer_unref (b);
  harness_free (hn, bus);
}

/* Pushes frames until the output has `bytes` bytes. */
static gboolean
wait_size (GstHarness *hn, gint w, gint h, guint8 *img, gsize bytes)
{
  for (gint i = 0; i < 250; i++) {
    GstBuffer *out = push (hn, make_gray (w, h, i, img));
    gsize size = out ? gst_buffer_get_size (out) : 0;
    if (out)
      gst_buffer_unref (out);
    if (size == bytes)
      return TRUE;
    g_usleep (20000);
  }
  return FALSE;
}

/* A new model while PLAYING; a new D renegotiates. */
static void
test_hot_swap (void)
{
  GstBus *bus;
  guint8 img[36 * 20];
  gsize n;
  pattern (img, 36, 20, 0.4);
  ae_model *m = ae_model_load (fconv_path, NULL);
  gsize d = ae_model_latent_size (m, 20, 36);
  ae_model_free (m);
  GstHarness *hn = harness_new (&bus, NULL, "GRAY8", 36, 20);
  float *z0 = encode_gray (hn, 36, 20, img, &n);
  g_object_set (hn->element, "model", fconv_path, NULL);
  gboolean swapped = wait_size (hn, 36, 20, img, d * sizeof (float));
  GstStructure *s = src_caps_structure (hn);
  CHECK (n == DEFAULT_D && swapped && has_dimensions (s, d),
         "swap to a fully convolutional model: src caps renegotiated to D = %" G_GSIZE_FORMAT, d);
  g_object_set (hn->element, "model", trunc_path, NULL);
  expect_message (bus, GST_MESSAGE_WARNING, "truncated model", "truncated");
  g_object_set (hn->element, "model", two_path, NULL);
  expect_message (bus, GST_MESSAGE_WARNING, "2-channel model", "channels");
  CHECK (wait_size (hn, 36, 20, img, d * sizeof (float)), "... the stream goes on with D = %"
         G_GSIZE_FORMAT, d);
  g_object_set (hn->element, "model", "", NULL);
  CHECK (wait_size (hn, 36, 20, img, DEFAULT_D * sizeof (float)), "back to the default: D = 32");
  float *z1 = encode_gray (hn, 36, 20, img, &n);
  CHECK (n == DEFAULT_D && max_diff (z0, z1, n) == 0, "... and the same latents as at first");
  if (s)
    gst_structure_free (s);
  g_free (z1);
  g_free (z0);
  harness_free (hn, bus);
}

/* Downstream insists on D = 32: a model with another D is refused; one
 * with D = 32 is swapped in without renegotiation. */
static void
test_hot_swap_fixed_downstream (void)
{
  GstBus *bus;
  guint8 img[16 * 16];
  gsize n, n1;
  pattern (img, 16, 16, 1.1);
  GstHarness *hn = harness_full ("aeencode", &bus, NULL, NULL,
      "other/tensors,num_tensors=1,types=float32,format=static,dimensions=32:1:1:1,"
      "framerate=[0/1,2147483647/1]", "GRAY8", 16, 16);
  float *z0 = encode_gray (hn, 16, 16, img, &n);
  g_object_set (hn->element, "model", fconv_path, NULL);
  expect_message (bus, GST_MESSAGE_WARNING, "a model with D != 32", "downstream does not accept");
  g_object_set (hn->element, "model", dense_path, NULL);
  gboolean changed = FALSE;
  for (gint i = 0; i < 250 && !changed; i++) {
    float *z = encode_gray (hn, 16, 16, img, &n1);
    changed = n1 == DEFAULT_D && max_diff (z, z0, n1) > 1e-4;
    g_free (z);
    if (!changed)
      g_usleep (20000);
  }
  CHECK (n == DEFAULT_D && changed, "a dense model with D = 32 replaces the default");
  GstMessage *err = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  CHECK (err == NULL, "no error on the bus");
  if (err)
    gst_message_unref (err);
  g_free (z0);
  harness_free (hn, bus);
}

static void
expect_start_error (const gchar *what, const gchar *model, const gchar *text)
{
  GstElement *e = make_element ("aeencode");
  GstBus *bus = gst_bus_new ();
  gst_element_set_bus (e, bus);
  g_object_set (e, "model", model, NULL);
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
  gchar *missing = g_build_filename (workdir, "missing.aem", NULL);
  expect_start_error ("missing model", missing, "Could not load the encoder model");
  expect_start_error ("truncated model", trunc_path, "truncated");
  expect_start_error ("2-channel model", two_path, "needs 1 (luma) or 3 (RGB)");
  g_free (missing);
}

/* As gst-launch does it: unfixed sizes upstream, fixation, a pool. */
static void
run_pipeline (const gchar *desc, const gchar *what)
{
  GError *error = NULL;
  GstElement *p = gst_parse_launch (desc, &error);
  GstMessage *msg = NULL;
  if (p) {
    gst_element_set_state (p, GST_STATE_PLAYING);
    GstBus *bus = gst_element_get_bus (p);
    msg = gst_bus_timed_pop_filtered (bus, 20 * GST_SECOND, GST_MESSAGE_EOS | GST_MESSAGE_ERROR);
    gst_object_unref (bus);
  }
  CHECK (msg && GST_MESSAGE_TYPE (msg) == GST_MESSAGE_EOS, "%s", what);
  if (msg)
    gst_message_unref (msg);
  if (p) {
    gst_element_set_state (p, GST_STATE_NULL);
    gst_object_unref (p);
  }
  g_clear_error (&error);
}

static void
test_pipelines (void)
{
  gchar *desc = g_strdup_printf ("videotestsrc num-buffers=4 ! aeencode model=%s ! "
                                 "fakesink", fconv_path);
  run_pipeline ("videotestsrc num-buffers=4 ! aeencode ! fakesink",
                "videotestsrc ! aeencode ! fakesink reaches EOS");
  run_pipeline (desc, "videotestsrc ! aeencode (fully convolutional) ! fakesink reaches EOS");
  g_free (desc);
}

/* ---- Main ------------------------------------------------------------------------------------ */

typedef struct
{
  const gchar *name;
  void (*run) (void);
  gboolean needs_models;
} TestCase;

static const TestCase tests[] = {
  { "default_caps", test_default_caps, FALSE },
  { "determinism", test_determinism, FALSE },
  { "roi", test_roi, FALSE },
  { "fully_convolutional", test_fully_convolutional, TRUE },
  { "vae_encode", test_vae_encode, TRUE },
  { "vae_denoise", test_vae_denoise, TRUE },
  { "hot_swap", test_hot_swap, TRUE },
  { "hot_swap_fixed_downstream", test_hot_swap_fixed_downstream, TRUE },
  { "bad_start", test_bad_start, TRUE },
  { "pipelines", test_pipelines, TRUE },
};

int
main (int argc, char **argv)
{
  /* Scan plugins in this process: a forked gst-plugin-scanner has no
   * AddressSanitizer runtime and cannot load a sanitised plugin. */
  g_setenv ("GST_REGISTRY_FORK", "no", TRUE);
  gst_init (&argc, &argv);
  workdir = g_dir_make_tmp ("test-aeencode-XXXXXX", NULL);
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
  g_free (fconv_path);
  g_free (rgb_path);
  g_free (dense_path);
  g_free (vae_path);
  g_free (fvae_path);
  g_free (trunc_path);
  g_free (two_path);
  g_free (workdir);
  gst_deinit ();
  return CHECK_DONE ();
}
