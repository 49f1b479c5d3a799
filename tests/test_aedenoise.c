/* aedenoise element tests: GstHarness around the element from the build
 * tree (GST_PLUGIN_PATH). The embedded default model is checked for what
 * it must do (reduce noise); exact results are checked against libae run
 * here on a tiny model trained by the test itself.
 *
 * One "ok"/"not ok" line per check; the exit status reflects failures.
 * Optional arguments select tests by name. */
#include "check.h"
#include "nn.h" /* to set a noise layer's gain */
#include "element_test.h"

#include <ae.h>
#include <gst/base/gstbasetransform.h>
#include <gst/check/gstharness.h>
#include <gst/gst.h>
#include <gst/video/video.h>

#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const gchar *formats[] = { "GRAY8", "I420", "YV12", "NV12", "Y444", "RGB", "BGR",
                                  "RGBx", "BGRx", "xRGB", "xBGR", "RGBA", "BGRA" };

/* Chroma values for YUV frames: not neutral, so a change would show. */
#define TEST_U 90
#define TEST_V 170

static gchar *workdir;
static gchar *tiny_path;  /* fully convolutional, 1 channel, trained here */
static gchar *trunc_path; /* the first half of tiny_path */
static gchar *rgb_path;   /* 3 channels: does not fit aedenoise */
static ae_model *tiny;

static GstStaticPadTemplate src_templ = GST_STATIC_PAD_TEMPLATE ("src", GST_PAD_SRC,
    GST_PAD_ALWAYS, GST_STATIC_CAPS_ANY);
static GstStaticPadTemplate sink_templ = GST_STATIC_PAD_TEMPLATE ("sink", GST_PAD_SINK,
    GST_PAD_ALWAYS, GST_STATIC_CAPS_ANY);

/* ---- Images ----------------------------------------------------------------------------- */

static double
gaussian (GRand *rng)
{
  double u = g_rand_double_range (rng, 1e-12, 1.0), v = g_rand_double (rng);
  return sqrt (-2.0 * log (u)) * cos (2.0 * G_PI * v);
}

static guint8
to_byte (double v)
{
  return (guint8) CLAMP (lround (v), 0, 255);
}

/* A smooth image: a gradient plus a slow wave, in 40..215. */
static void
smooth_image (guint8 *dst, gint w, gint h)
{
  for (gint y = 0; y < h; y++)
    for (gint x = 0; x < w; x++)
      dst[y * w + x] = to_byte (128 + 60.0 * (x - w / 2.0) / w + 25 * sin (x * 0.3 + y * 0.2));
}

static void
add_noise (const guint8 *src, guint8 *dst, gsize n, double sigma, GRand *rng)
{
  for (gsize i = 0; i < n; i++)
    dst[i] = to_byte (src[i] + sigma * gaussian (rng));
}

static double
psnr (const guint8 *a, const guint8 *b, gsize n)
{
  double se = 0;
  for (gsize i = 0; i < n; i++)
    se += (double) (a[i] - b[i]) * (a[i] - b[i]);
  return se == 0 ? 99.0 : 10 * log10 (255.0 * 255.0 * n / se);
}

static gint
max_abs_diff (const guint8 *a, const guint8 *b, gsize n)
{
  gint m = 0;
  for (gsize i = 0; i < n; i++)
    m = MAX (m, abs (a[i] - b[i]));
  return m;
}

/* ---- Frames ------------------------------------------------------------------------------- */

/* The value of component c at pixel (x, y) of a full-resolution source:
 * YUV gets `luma` and constant chroma, RGB R = G = B = luma unless `rgb`
 * gives the three planes; alpha a fixed pattern. */
typedef struct
{
  const guint8 *luma;
  const guint8 *rgb[3];
} Source;

static guint8
source_value (const Source *s, gboolean is_rgb, gint c, gint x, gint y, gint w)
{
  if (c == 3)
    return (guint8) (x * 7 + y * 13);
  if (is_rgb)
    return s->rgb[0] ? s->rgb[c][y * w + x] : s->luma[y * w + x];
  return c == 0 ? s->luma[y * w + x] : c == 1 ? TEST_U : TEST_V;
}

static void
fill_frame (GstVideoFrame *f, const Source *s)
{
  gboolean is_rgb = GST_VIDEO_INFO_IS_RGB (&f->info);
  const GstVideoFormatInfo *fi = f->info.finfo;
  gint w = GST_VIDEO_FRAME_WIDTH (f);
  for (guint c = 0; c < GST_VIDEO_FRAME_N_COMPONENTS (f); c++) {
    gint ws = GST_VIDEO_FORMAT_INFO_W_SUB (fi, c), hs = GST_VIDEO_FORMAT_INFO_H_SUB (fi, c);
    gint ps = GST_VIDEO_FRAME_COMP_PSTRIDE (f, c), stride = GST_VIDEO_FRAME_COMP_STRIDE (f, c);
    guint8 *data = GST_VIDEO_FRAME_COMP_DATA (f, c);
    for (gint y = 0; y < GST_VIDEO_FRAME_COMP_HEIGHT (f, c); y++)
      for (gint x = 0; x < GST_VIDEO_FRAME_COMP_WIDTH (f, c); x++)
        data[y * stride + x * ps] = source_value (s, is_rgb, c, x << ws, y << hs, w);
  }
}

/* Component c as a packed COMP_WIDTH x COMP_HEIGHT array (caller frees). */
static guint8 *
read_comp (GstBuffer *buf, const GstVideoInfo *info, gint c)
{
  GstVideoFrame f;
  if (!buf || !gst_video_frame_map (&f, (GstVideoInfo *) info, buf, GST_MAP_READ))
    return g_new0 (guint8, 1);
  gint cw = GST_VIDEO_FRAME_COMP_WIDTH (&f, c), ch = GST_VIDEO_FRAME_COMP_HEIGHT (&f, c);
  gint ps = GST_VIDEO_FRAME_COMP_PSTRIDE (&f, c), stride = GST_VIDEO_FRAME_COMP_STRIDE (&f, c);
  const guint8 *data = GST_VIDEO_FRAME_COMP_DATA (&f, c);
  guint8 *out = g_new (guint8, (gsize) cw * ch);
  for (gint y = 0; y < ch; y++)
    for (gint x = 0; x < cw; x++)
      out[y * cw + x] = data[y * stride + x * ps];
  gst_video_frame_unmap (&f);
  return out;
}

static void
info_for (GstVideoInfo *info, const gchar *format, gint w, gint h)
{
  gst_video_info_set_format (info, gst_video_format_from_string (format), w, h);
}

/* A buffer laid out as `info` says, with a GstVideoMeta when the layout is
 * not the default one; unused bytes hold 0xA5. */
static GstBuffer *
make_buffer_info (GstVideoInfo *info, const Source *s, guint64 index, gboolean meta)
{
  GstVideoFrame f;
  GstBuffer *buf = gst_buffer_new_allocate (NULL, info->size, NULL);
  gst_buffer_memset (buf, 0, 0xA5, info->size);
  if (meta)
    gst_buffer_add_video_meta_full (buf, GST_VIDEO_FRAME_FLAG_NONE, GST_VIDEO_INFO_FORMAT (info),
        info->width, info->height, GST_VIDEO_INFO_N_PLANES (info), info->offset, info->stride);
  gst_video_frame_map (&f, info, buf, GST_MAP_WRITE);
  fill_frame (&f, s);
  gst_video_frame_unmap (&f);
  GST_BUFFER_PTS (buf) = index * GST_SECOND / 30;
  GST_BUFFER_DURATION (buf) = GST_SECOND / 30;
  return buf;
}

static GstBuffer *
make_buffer (const gchar *format, gint w, gint h, guint64 index, const Source *s)
{
  GstVideoInfo info;
  info_for (&info, format, w, h);
  return make_buffer_info (&info, s, index, FALSE);
}

static GstBuffer *
make_gray (gint w, gint h, guint64 index, const guint8 *luma)
{
  Source s = { luma, { NULL, NULL, NULL } };
  return make_buffer ("GRAY8", w, h, index, &s);
}

static gchar *
caps_string (const gchar *format, gint w, gint h)
{
  return g_strdup_printf ("video/x-raw,format=%s,width=%d,height=%d,framerate=30/1", format, w,
                          h);
}

/* ---- Harness ------------------------------------------------------------------------------- */

static GstElement *
make_element (void)
{
  GstElement *e = gst_element_factory_make ("aedenoise", NULL);
  if (!e) {
    fprintf (stderr, "aedenoise not found: is GST_PLUGIN_PATH set?\n");
    exit (1);
  }
  return e;
}

/* The element with `model` (NULL: the default) on a bus of its own. */
static GstHarness *
harness_new (GstBus **bus, const gchar *model, const gchar *format, gint w, gint h)
{
  GstElement *e = make_element ();
  if (model)
    g_object_set (e, "model", model, NULL);
  *bus = gst_bus_new ();
  gst_element_set_bus (e, *bus);
  GstHarness *hn = gst_harness_new_full (e, &src_templ, "sink", &sink_templ, "src");
  gst_object_unref (e);
  gchar *caps = caps_string (format, w, h);
  gst_harness_set_src_caps_str (hn, caps);
  g_free (caps);
  return hn;
}

static void
harness_free (GstHarness *h, GstBus *bus)
{
  gst_harness_teardown (h);
  gst_bus_set_flushing (bus, TRUE);
  gst_object_unref (bus);
}

/* Pushes a buffer, returns what comes out (NULL on a flow error). */
static GstBuffer *
push (GstHarness *h, GstBuffer *buf)
{
  return gst_harness_push (h, buf) == GST_FLOW_OK ? gst_harness_pull (h) : NULL;
}

/* The luma (component 0) of what comes out for a GRAY8 frame. */
static guint8 *
denoise_gray (GstHarness *h, gint w, gint hh, const guint8 *luma)
{
  GstVideoInfo info;
  info_for (&info, "GRAY8", w, hh);
  GstBuffer *out = push (h, make_gray (w, hh, 0, luma));
  guint8 *y = read_comp (out, &info, 0);
  if (out)
    gst_buffer_unref (out);
  return y;
}

static GstMessage *
wait_message (GstBus *bus, GstMessageType types, gint seconds)
{
  return gst_bus_timed_pop_filtered (bus, (GstClockTime) seconds * GST_SECOND, types);
}

/* ---- The reference: libae on the test's own model ---------------------------------------- */

/* The noise level aedenoise measures in a GRAY8 frame and tells a
 * noise-conditioned model (plane units, 0 when unmeasurable). */
static float
measured_noise (const guint8 *luma, gint w, gint h)
{
  float *plane = g_new (float, (gsize) w * h);
  for (gsize i = 0; i < (gsize) w * h; i++)
    plane[i] = luma[i] * (1.0f / 255.0f);
  gdouble level = 255.0 * ae_noise_sigma (plane, w, h);
  g_free (plane);
  return (float) MAX (level, 0.0) / 255.0f;
}

/* What aedenoise must output (luma, full strength) for a GRAY8 frame with
 * model m told noise level sigma: the frame padded by edge replication to
 * the model's multiple, reconstructed, cropped, and written as the element
 * writes it. */
static guint8 *
reference_at (const ae_model *m, const guint8 *luma, gint w, gint h, float sigma)
{
  gint k = ae_model_size_multiple (m), pw = (w + k - 1) / k * k, ph = (h + k - 1) / k * k;
  float *in = g_new (float, (gsize) pw * ph);
  guint8 *out = g_new (guint8, (gsize) w * h);
  for (gint y = 0; y < ph; y++)
    for (gint x = 0; x < pw; x++)
      in[y * pw + x] = luma[MIN (y, h - 1) * w + MIN (x, w - 1)] * (1.0f / 255.0f);
  ae_session *s = ae_session_new (m, 1, ph, pw, NULL);
  if (s)
    ae_session_set_noise (s, &sigma);
  const float *r = s ? ae_session_forward (s, in) : NULL;
  for (gint y = 0; y < h; y++)
    for (gint x = 0; x < w; x++) {
      float p = luma[y * w + x];
      out[y * w + x] = r ? to_byte (p + 255.0f * (r[y * pw + x] - in[y * pw + x])) : 0;
    }
  ae_session_free (s);
  g_free (in);
  return out;
}

/* The same, told the noise aedenoise measures (the element's output). */
static guint8 *
reference (const ae_model *m, const guint8 *luma, gint w, gint h)
{
  return reference_at (m, luma, w, h, measured_noise (luma, w, h));
}

/* ---- Models ------------------------------------------------------------------------------ */

static gchar *
save_model (ae_model *m, const gchar *name)
{
  gchar *path = g_build_filename (workdir, name, NULL);
  ae_error err;
  CHECK (ae_model_save (m, path, &err) == AE_OK, "save %s", name);
  return path;
}

/* A tiny denoiser: noisy smooth 16x16 crops in, clean ones as targets. */
static ae_model *
train_tiny (void)
{
  const gint count = 48, side = 16;
  gsize n = (gsize) side * side;
  float *x = g_new (float, count * n), *t = g_new (float, count * n);
  guint8 *img = g_new (guint8, 4 * n), *noisy = g_new (guint8, n);
  GRand *rng = g_rand_new_with_seed (5);
  smooth_image (img, 2 * side, 2 * side);
  for (gint i = 0; i < count; i++) {
    gint ox = g_rand_int_range (rng, 0, side), oy = g_rand_int_range (rng, 0, side);
    for (gint y = 0; y < side; y++)
      for (gint xx = 0; xx < side; xx++)
        t[i * n + y * side + xx] = img[(oy + y) * 2 * side + ox + xx] / 255.0f;
    for (gsize j = 0; j < n; j++)
      noisy[j] = to_byte (t[i * n + j] * 255 + 15 * gaussian (rng));
    for (gsize j = 0; j < n; j++)
      x[i * n + j] = noisy[j] / 255.0f;
  }
  ae_error err;
  ae_model *m = ae_model_new ("conv:8:3:2:1:lrelu,deconv:1:4:2:1:sigmoid", 1, side, side, 3, &err);
  ae_train_opts o;
  ae_train_opts_init (&o);
  o.epochs = 3;
  o.batch = 16;
  o.lr = 3e-3f;
  o.val_split = 0;
  ae_train_result r;
  ae_status st = ae_train (m, &(ae_dataset) { x, t, count, 1, side, side }, &o, &r, &err);
  CHECK (st == AE_OK, "train a tiny denoiser (loss %.4f)", r.final_train_loss);
  g_rand_free (rng);
  g_free (noisy);
  g_free (img);
  g_free (t);
  g_free (x);
  return m;
}

static gchar *
truncated_copy (const gchar *src, const gchar *name)
{
  gchar *data = NULL;
  gsize len = 0;
  gchar *path = g_build_filename (workdir, name, NULL);
  g_file_get_contents (src, &data, &len, NULL);
  CHECK (data && g_file_set_contents (path, data, (gssize) (len / 2), NULL),
         "truncated copy %s (%" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT " bytes)", name, len / 2,
         len);
  g_free (data);
  return path;
}

static void
make_models (void)
{
  tiny = train_tiny ();
  tiny_path = save_model (tiny, "tiny.aem");
  trunc_path = truncated_copy (tiny_path, "truncated.aem");
  ae_model *rgb = ae_model_new ("conv:4:3:2:1:lrelu,deconv:3:4:2:1:sigmoid", 3, 16, 16, 1, NULL);
  rgb_path = save_model (rgb, "rgb.aem");
  ae_model_free (rgb);
}

/* ---- Tests --------------------------------------------------------------------------------- */

/* The default model on a smooth image with Gaussian noise (sigma 20). */
static void
test_reduces_noise (void)
{
  const gint w = 64, h = 48;
  gsize n = (gsize) w * h;
  guint8 clean[64 * 48], noisy[64 * 48];
  GRand *rng = g_rand_new_with_seed (1);
  GstBus *bus;
  smooth_image (clean, w, h);
  add_noise (clean, noisy, n, 20, rng);
  GstHarness *hn = harness_new (&bus, NULL, "GRAY8", w, h);
  guint8 *out = denoise_gray (hn, w, h, noisy);
  double before = psnr (clean, noisy, n), after = psnr (clean, out, n);
  CHECK (after > before + 0.5, "embedded default: PSNR %.2f dB noisy -> %.2f dB denoised", before,
         after);
  CHECK (gst_base_transform_is_qos_enabled (GST_BASE_TRANSFORM (hn->element)), "QoS is on");
  g_free (out);
  harness_free (hn, bus);
  g_rand_free (rng);
}

/* Every format at an odd size: the luma result equals GRAY8's (RGB: in all
 * three components), chroma planes and alpha pass through. */
static void
check_format (const gchar *format, const guint8 *luma, const guint8 *gray_out, gint w, gint h)
{
  GstBus *bus;
  GstVideoInfo info;
  Source s = { luma, { NULL, NULL, NULL } };
  info_for (&info, format, w, h);
  GstHarness *hn = harness_new (&bus, NULL, format, w, h);
  GstBuffer *in = make_buffer (format, w, h, 0, &s);
  GstBuffer *out = push (hn, gst_buffer_copy_deep (in));
  gboolean rgb = GST_VIDEO_INFO_IS_RGB (&info);
  gint luma_diff = 0, other_diff = 0;
  for (guint c = 0; c < GST_VIDEO_INFO_N_COMPONENTS (&info); c++) {
    guint8 *a = read_comp (in, &info, c), *b = read_comp (out, &info, c);
    gsize cn = (gsize) GST_VIDEO_INFO_COMP_WIDTH (&info, c) * GST_VIDEO_INFO_COMP_HEIGHT (&info, c);
    if (c == 0 || (rgb && c < 3))
      luma_diff = MAX (luma_diff, out ? max_abs_diff (b, gray_out, cn) : 999);
    else
      other_diff = MAX (other_diff, out ? max_abs_diff (a, b, cn) : 999);
    g_free (a);
    g_free (b);
  }
  CHECK (out && luma_diff <= 1 && other_diff == 0,
         "%s %dx%d: luma within %d of GRAY8's, chroma/alpha max change %d", format, w, h,
         luma_diff, other_diff);
  gst_buffer_unref (in);
  if (out)
    gst_buffer_unref (out);
  harness_free (hn, bus);
}

static void
test_formats (void)
{
  const gint w = 33, h = 17;
  guint8 clean[33 * 17], noisy[33 * 17];
  GRand *rng = g_rand_new_with_seed (2);
  GstBus *bus;
  smooth_image (clean, w, h);
  add_noise (clean, noisy, (gsize) w * h, 20, rng);
  GstHarness *hn = harness_new (&bus, NULL, "GRAY8", w, h);
  guint8 *gray_out = denoise_gray (hn, w, h, noisy);
  harness_free (hn, bus);
  CHECK (max_abs_diff (gray_out, noisy, (gsize) w * h) > 0, "GRAY8 33x17 is changed");
  for (guint i = 0; i < G_N_ELEMENTS (formats); i++)
    check_format (formats[i], noisy, gray_out, w, h);
  g_free (gray_out);
  g_rand_free (rng);
}

/* Is every byte that changed part of a colour sample of the frame? */
static gboolean
changes_inside_frame (GstBuffer *a, GstBuffer *b, const GstVideoInfo *info)
{
  GstMapInfo ma, mb;
  gboolean ok = TRUE;
  gst_buffer_map (a, &ma, GST_MAP_READ);
  gst_buffer_map (b, &mb, GST_MAP_READ);
  for (gsize i = 0; ok && i < ma.size && i < mb.size; i++) {
    if (ma.data[i] == mb.data[i])
      continue;
    gboolean inside = FALSE;
    for (guint c = 0; !inside && c < MIN (GST_VIDEO_INFO_N_COMPONENTS (info), 3); c++) {
      gsize start = info->offset[GST_VIDEO_INFO_COMP_PLANE (info, c)]
                    + GST_VIDEO_INFO_COMP_POFFSET (info, c);
      gsize rel = i - start, stride = GST_VIDEO_INFO_COMP_STRIDE (info, c);
      gsize ps = GST_VIDEO_INFO_COMP_PSTRIDE (info, c);
      inside = i >= start && rel / stride < (gsize) GST_VIDEO_INFO_COMP_HEIGHT (info, c)
               && rel % stride < ps * GST_VIDEO_INFO_COMP_WIDTH (info, c) && (rel % stride) % ps == 0;
    }
    ok = inside;
  }
  gst_buffer_unmap (a, &ma);
  gst_buffer_unmap (b, &mb);
  return ok && ma.size == mb.size;
}

/* Rows longer than the picture (a GstVideoMeta gives the strides): the
 * result equals that of a tightly packed frame, and the padding bytes
 * stay as they were. */
static void
check_padded (const gchar *format, const guint8 *luma, gint w, gint h)
{
  GstBus *bus;
  GstVideoInfo tight, padded;
  GstVideoAlignment align;
  Source s = { luma, { NULL, NULL, NULL } };
  info_for (&tight, format, w, h);
  info_for (&padded, format, w, h);
  gst_video_alignment_reset (&align);
  align.padding_right = 19;
  align.padding_bottom = 2;
  gst_video_info_align (&padded, &align);
  GstHarness *hn = harness_new (&bus, NULL, format, w, h);
  GstBuffer *in = make_buffer_info (&padded, &s, 0, TRUE);
  GstBuffer *out_p = push (hn, gst_buffer_copy_deep (in));
  GstBuffer *out_t = push (hn, make_buffer_info (&tight, &s, 1, FALSE));
  guint8 *yp = read_comp (out_p, &padded, 0), *yt = read_comp (out_t, &tight, 0);
  CHECK (out_p && out_t && padded.stride[0] > tight.stride[0]
         && max_abs_diff (yp, yt, (gsize) w * h) == 0 && changes_inside_frame (in, out_p, &padded),
         "%s %dx%d with stride %d (packed %d): same result, padding bytes untouched", format, w,
         h, padded.stride[0], tight.stride[0]);
  g_free (yp);
  g_free (yt);
  gst_buffer_unref (in);
  if (out_p)
    gst_buffer_unref (out_p);
  if (out_t)
    gst_buffer_unref (out_t);
  harness_free (hn, bus);
}

static void
test_padded_stride (void)
{
  guint8 clean[33 * 17], noisy[33 * 17];
  GRand *rng = g_rand_new_with_seed (3);
  smooth_image (clean, 33, 17);
  add_noise (clean, noisy, sizeof noisy, 20, rng);
  check_padded ("GRAY8", noisy, 33, 17);
  check_padded ("I420", noisy, 33, 17);
  check_padded ("NV12", noisy, 33, 17);
  check_padded ("BGRx", noisy, 33, 17);
  g_rand_free (rng);
}

/* strength 0: passthrough, the very same bytes; 0.5: halfway. */
static void
test_strength (void)
{
  const gint w = 40, h = 30;
  gsize n = (gsize) w * h;
  guint8 clean[40 * 30], noisy[40 * 30];
  GRand *rng = g_rand_new_with_seed (4);
  GstBus *bus;
  smooth_image (clean, w, h);
  add_noise (clean, noisy, n, 20, rng);
  GstHarness *hn = harness_new (&bus, NULL, "GRAY8", w, h);
  guint8 *full = denoise_gray (hn, w, h, noisy);
  g_object_set (hn->element, "strength", 0.5, NULL);
  guint8 *half = denoise_gray (hn, w, h, noisy);
  gint off = 0;
  for (gsize i = 0; i < n; i++)
    off = MAX (off, abs (2 * half[i] - (full[i] + noisy[i])));
  CHECK (off <= 2 && max_abs_diff (half, noisy, n) > 0 && max_abs_diff (half, full, n) > 0,
         "strength 0.5 lies halfway between input and strength 1 (max 2x deviation %d)", off);
  g_object_set (hn->element, "strength", 0.0, NULL);
  guint8 *none = denoise_gray (hn, w, h, noisy);
  CHECK (gst_base_transform_is_passthrough (GST_BASE_TRANSFORM (hn->element))
         && max_abs_diff (none, noisy, n) == 0, "strength 0: passthrough, identical output");
  g_object_set (hn->element, "strength", 1.0, NULL);
  guint8 *again = denoise_gray (hn, w, h, noisy);
  CHECK (!gst_base_transform_is_passthrough (GST_BASE_TRANSFORM (hn->element))
         && max_abs_diff (again, full, n) == 0, "strength back to 1: same result as before");
  g_free (again);
  g_free (none);
  g_free (half);
  g_free (full);
  harness_free (hn, bus);
  g_rand_free (rng);
}

/* A control binding without libgstcontroller: strength is 0 from 1 s to
 * 2 s of stream time, else 1. */
typedef struct
{
  GstControlBinding parent;
} TestStepBinding;
typedef struct
{
  GstControlBindingClass parent_class;
} TestStepBindingClass;

G_DEFINE_TYPE (TestStepBinding, test_step_binding, GST_TYPE_CONTROL_BINDING);

static gboolean
test_step_sync (GstControlBinding *binding, GstObject *object, GstClockTime ts, GstClockTime last)
{
  (void) binding;
  (void) last;
  g_object_set (object, "strength", ts >= GST_SECOND && ts <= 2 * GST_SECOND ? 0.0 : 1.0, NULL);
  return TRUE;
}

static void
test_step_binding_class_init (TestStepBindingClass *klass)
{
  GST_CONTROL_BINDING_CLASS (klass)->sync_values = test_step_sync;
}

static void
test_step_binding_init (TestStepBinding *self)
{
  (void) self;
}

/* The controlled strength follows stream time, passthrough included. */
static void
test_controller (void)
{
  const gint w = 24, h = 16;
  guint8 clean[24 * 16], noisy[24 * 16];
  GRand *rng = g_rand_new_with_seed (10);
  GstBus *bus;
  GstVideoInfo info;
  smooth_image (clean, w, h);
  add_noise (clean, noisy, sizeof noisy, 20, rng);
  info_for (&info, "GRAY8", w, h);
  GstHarness *hn = harness_new (&bus, NULL, "GRAY8", w, h);
  gst_object_add_control_binding (GST_OBJECT (hn->element),
      g_object_new (test_step_binding_get_type (), "object", hn->element, "name", "strength", NULL));
  gint changed[3];
  const guint64 frames[3] = { 0, 45, 90 }; /* 0 s, 1.5 s, 3 s at 30/1 */
  for (gint i = 0; i < 3; i++) {
    GstBuffer *out = push (hn, make_gray (w, h, frames[i], noisy));
    guint8 *y = read_comp (out, &info, 0);
    changed[i] = out ? max_abs_diff (y, noisy, sizeof noisy) : -1;
    g_free (y);
    if (out)
      gst_buffer_unref (out);
  }
  CHECK (changed[0] > 0 && changed[1] == 0 && changed[2] > 0,
         "controlled strength 1, 0, 1 at 0 s, 1.5 s, 3 s: max change %d, %d, %d", changed[0],
         changed[1], changed[2]);
  harness_free (hn, bus);
  g_rand_free (rng);
}

/* A uniformly coloured noisy frame: every pixel keeps its R-G and B-G. */
static void
check_chroma (const gchar *format, guint8 *planes[3], gint w, gint h)
{
  GstBus *bus;
  GstVideoInfo info;
  gsize n = (gsize) w * h;
  Source s = { planes[0], { planes[0], planes[1], planes[2] } };
  info_for (&info, format, w, h);
  GstHarness *hn = harness_new (&bus, NULL, format, w, h);
  GstBuffer *out = push (hn, make_buffer (format, w, h, 0, &s));
  guint8 *r = read_comp (out, &info, 0), *g = read_comp (out, &info, 1);
  guint8 *b = read_comp (out, &info, 2);
  gint dev = 0, moved = 0;
  for (gsize i = 0; out && i < n; i++) {
    dev = MAX (dev, abs ((r[i] - g[i]) - (planes[0][i] - planes[1][i])));
    dev = MAX (dev, abs ((b[i] - g[i]) - (planes[2][i] - planes[1][i])));
    moved = MAX (moved, abs (g[i] - planes[1][i]));
  }
  CHECK (out && dev <= 1 && moved > 0,
         "%s: per-pixel R-G and B-G kept (max deviation %d) while luma moved up to %d", format,
         dev, moved);
  g_free (r);
  g_free (g);
  g_free (b);
  if (out)
    gst_buffer_unref (out);
  harness_free (hn, bus);
}

static void
test_rgb_chroma (void)
{
  const gint w = 32, h = 24;
  const guint8 colour[3] = { 150, 110, 80 };
  guint8 *planes[3];
  GRand *rng = g_rand_new_with_seed (6);
  for (gint c = 0; c < 3; c++) {
    planes[c] = g_new (guint8, (gsize) w * h);
    for (gint i = 0; i < w * h; i++)
      planes[c][i] = to_byte (colour[c] + 12 * gaussian (rng));
  }
  check_chroma ("RGB", planes, w, h);
  check_chroma ("BGRx", planes, w, h);
  check_chroma ("xRGB", planes, w, h);
  check_chroma ("RGBA", planes, w, h);
  for (gint c = 0; c < 3; c++)
    g_free (planes[c]);
  g_rand_free (rng);
}

/* Exact results against libae with the test's model, odd size included:
 * proves the padding, the crop and the write-back. */
static void
test_reference (void)
{
  const gint sizes[][2] = { { 20, 14 }, { 33, 17 }, { 1, 1 }, { 7, 2 } };
  guint8 noisy[33 * 17];
  GRand *rng = g_rand_new_with_seed (7);
  for (guint i = 0; i < G_N_ELEMENTS (sizes); i++) {
    gint w = sizes[i][0], h = sizes[i][1];
    guint8 clean[33 * 17];
    GstBus *bus;
    smooth_image (clean, w, h);
    add_noise (clean, noisy, (gsize) w * h, 15, rng);
    GstHarness *hn = harness_new (&bus, tiny_path, "GRAY8", w, h);
    guint8 *out = denoise_gray (hn, w, h, noisy), *ref = reference (tiny, noisy, w, h);
    gint d = max_abs_diff (out, ref, (gsize) w * h);
    CHECK (d <= 1, "test model on %dx%d GRAY8: equal to libae with edge padding (max diff %d)",
           w, h, d);
    g_free (ref);
    g_free (out);
    harness_free (hn, bus);
  }
  g_rand_free (rng);
}

/* Pushes frames until the output equals `want` (the swap happens between
 * two frames once the loader thread is done). */
static gboolean
wait_output (GstHarness *hn, gint w, gint h, const guint8 *in, const guint8 *want)
{
  for (gint i = 0; i < 250; i++) {
    guint8 *out = denoise_gray (hn, w, h, in);
    gboolean same = max_abs_diff (out, want, (gsize) w * h) <= 1;
    g_free (out);
    if (same)
      return TRUE;
    g_usleep (20000);
  }
  return FALSE;
}

static void
expect_warning (GstBus *bus, const gchar *what)
{
  GstMessage *msg = wait_message (bus, GST_MESSAGE_WARNING | GST_MESSAGE_ERROR, 10);
  GError *error = NULL;
  if (msg && GST_MESSAGE_TYPE (msg) == GST_MESSAGE_WARNING)
    gst_message_parse_warning (msg, &error, NULL);
  CHECK (error != NULL, "%s: WARNING \"%s\"", what, error ? error->message : "(none)");
  g_clear_error (&error);
  if (msg)
    gst_message_unref (msg);
}

static void
test_hot_swap (void)
{
  const gint w = 20, h = 14;
  guint8 clean[20 * 14], noisy[20 * 14];
  GRand *rng = g_rand_new_with_seed (8);
  GstBus *bus;
  smooth_image (clean, w, h);
  add_noise (clean, noisy, sizeof noisy, 15, rng);
  GstHarness *hn = harness_new (&bus, NULL, "GRAY8", w, h);
  guint8 *by_default = denoise_gray (hn, w, h, noisy), *by_tiny = reference (tiny, noisy, w, h);
  CHECK (max_abs_diff (by_default, by_tiny, sizeof noisy) > 1, "the two models differ");

  g_object_set (hn->element, "model", tiny_path, NULL);
  CHECK (wait_output (hn, w, h, noisy, by_tiny), "model set while PLAYING is swapped in");
  g_object_set (hn->element, "model", trunc_path, NULL);
  expect_warning (bus, "truncated model file");
  g_object_set (hn->element, "model", rgb_path, NULL);
  expect_warning (bus, "3-channel model");
  guint8 *out = denoise_gray (hn, w, h, noisy);
  CHECK (max_abs_diff (out, by_tiny, sizeof noisy) <= 1, "... output continues with the old model");
  g_object_set (hn->element, "model", NULL, NULL);
  CHECK (wait_output (hn, w, h, noisy, by_default), "model unset: back to the embedded default");
  GstMessage *err = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  CHECK (err == NULL, "no error on the bus");
  if (err)
    gst_message_unref (err);
  g_free (out);
  g_free (by_tiny);
  g_free (by_default);
  harness_free (hn, bus);
  g_rand_free (rng);
}

/* Starting with a model that does not load or fit: an error, no crash. */
static void
expect_start_error (const gchar *what, const gchar *model, const gchar *text)
{
  GstElement *e = make_element ();
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
  expect_start_error ("missing model", missing, "Could not load the denoising model");
  expect_start_error ("truncated model", trunc_path, "Could not load the denoising model");
  expect_start_error ("3-channel model", rgb_path, "needs 1");
  g_free (missing);
}

/* New caps mid-stream rebuild the work buffers for the new size. */
static void
test_renegotiation (void)
{
  guint8 clean[33 * 17], noisy[33 * 17];
  GRand *rng = g_rand_new_with_seed (9);
  GstBus *bus;
  GstVideoInfo info;
  smooth_image (clean, 20, 14);
  add_noise (clean, noisy, 20 * 14, 15, rng);
  GstHarness *hn = harness_new (&bus, tiny_path, "GRAY8", 20, 14);
  g_free (denoise_gray (hn, 20, 14, noisy));

  smooth_image (clean, 33, 17);
  add_noise (clean, noisy, sizeof noisy, 15, rng);
  gchar *caps = caps_string ("I420", 33, 17);
  gst_harness_set_src_caps_str (hn, caps);
  Source s = { noisy, { NULL, NULL, NULL } };
  GstBuffer *out = push (hn, make_buffer ("I420", 33, 17, 1, &s));
  info_for (&info, "I420", 33, 17);
  guint8 *y = read_comp (out, &info, 0), *ref = reference (tiny, noisy, 33, 17);
  CHECK (out && max_abs_diff (y, ref, sizeof noisy) <= 1,
         "after renegotiation from 20x14 GRAY8 to 33x17 I420 the result is exact");
  g_free (ref);
  g_free (y);
  g_free (caps);
  if (out)
    gst_buffer_unref (out);
  harness_free (hn, bus);
  g_rand_free (rng);
}

/* threads=N sets OpenBLAS's (process-wide) count. */
static void
test_threads (void)
{
  const gint w = 64, h = 48;
  guint8 clean[64 * 48], noisy[64 * 48];
  guint8 *out[2];
  const gint threads[2] = { 1, 3 };
  GRand *rng = g_rand_new_with_seed (11);
  smooth_image (clean, w, h);
  add_noise (clean, noisy, (gsize) w * h, 20, rng);
  for (gint i = 0; i < 2; i++) {
    GstBus *bus;
    GstHarness *hn = harness_new (&bus, NULL, "GRAY8", w, h);
    g_object_set (hn->element, "threads", threads[i], NULL);
    out[i] = denoise_gray (hn, w, h, noisy);
    gint back = -1;
    g_object_get (hn->element, "threads", &back, NULL);
    CHECK (back == threads[i], "threads reads back %d", back);
    harness_free (hn, bus);
  }
  CHECK (ae_blas_threads () == 1, "threads=3: OpenBLAS set to %d thread(s)", ae_blas_threads ());
  gint d = max_abs_diff (out[0], out[1], (gsize) w * h);
  CHECK (d <= 1, "3 stripes give the 1-thread result (max diff %d)", d);
  g_free (out[0]);
  g_free (out[1]);
  g_rand_free (rng);
}

/* preset=quality switches the embedded model while playing; starting with
 * it gives the same frames. */
static void
test_preset (void)
{
  const gint w = 64, h = 48;
  const gsize n = (gsize) w * h;
  guint8 clean[64 * 48], noisy[64 * 48];
  GRand *rng = g_rand_new_with_seed (13);
  smooth_image (clean, w, h);
  add_noise (clean, noisy, n, 25, rng);
  GstBus *bus;
  GstHarness *hn = harness_new (&bus, NULL, "GRAY8", w, h);
  guint8 *fast = denoise_gray (hn, w, h, noisy), *switched = NULL;
  gst_util_set_object_arg (G_OBJECT (hn->element), "preset", "quality");
  for (gint i = 0; i < 250 && !switched; i++) {
    guint8 *out = denoise_gray (hn, w, h, noisy);
    if (max_abs_diff (out, fast, n) > 0)
      switched = out;
    else
      g_free (out);
    g_usleep (20000);
  }
  CHECK (switched != NULL, "preset=quality while playing changes the model");
  harness_free (hn, bus);

  GstElement *e = make_element ();
  gst_util_set_object_arg (G_OBJECT (e), "preset", "quality");
  gint preset = -1;
  g_object_get (e, "preset", &preset, NULL);
  CHECK (preset == 1, "preset reads back quality");
  hn = gst_harness_new_full (e, &src_templ, "sink", &sink_templ, "src");
  gst_object_unref (e);
  bus = gst_bus_new ();
  gst_element_set_bus (hn->element, bus);
  gchar *caps = caps_string ("GRAY8", w, h);
  gst_harness_set_src_caps_str (hn, caps);
  g_free (caps);
  guint8 *fresh = denoise_gray (hn, w, h, noisy);
  CHECK (switched && max_abs_diff (fresh, switched, n) <= 1 && psnr (fresh, clean, n) > psnr (noisy, clean, n),
         "quality from the start equals the switched output and denoises");
  harness_free (hn, bus);
  g_free (fresh);
  g_free (switched);
  g_free (fast);
  g_rand_free (rng);
}

/* An untrained model whose noise layer has a large gain (lib/nn.h's
 * layout), so that the level it is told moves its output a long way. */
static ae_model *
conditioned_model (void)
{
  ae_error err;
  ae_model *m = ae_model_new ("conv:8:3:1:1,noise:lrelu,conv:1:3:1:1:sigmoid", 1, 16, 16, 3, &err);
  CHECK (m != NULL, "noise-conditioned model: %s", m ? "ok" : err.message);
  const ae_layer *noise = &m->layers[1];
  for (size_t i = 0; i < noise->w_n; i++)
    m->params[noise->w_off + i] = (i % 2 ? 10.0f : -10.0f);
  return m;
}

/* A noise-conditioned model is told the noise the element measures, with
 * adaptive off too: the output is the reference's at that level, which
 * differs from the one at level 0. */
static void
test_noise_conditioned (void)
{
  const gint w = 64, h = 48;
  const gsize n = (gsize) w * h;
  guint8 clean[64 * 48], noisy[64 * 48];
  GRand *rng = g_rand_new_with_seed (13);
  smooth_image (clean, w, h);
  add_noise (clean, noisy, n, 20, rng);
  ae_model *m = conditioned_model ();
  gchar *path = save_model (m, "conditioned.aem");
  GstBus *bus;
  GstHarness *hn = harness_new (&bus, path, "GRAY8", w, h);
  g_object_set (hn->element, "adaptive", FALSE, NULL);
  guint8 *out = denoise_gray (hn, w, h, noisy), *ref = reference (m, noisy, w, h);
  guint8 *untold = reference_at (m, noisy, w, h, 0.0f);
  gdouble level = -2;
  g_object_get (hn->element, "noise-level", &level, NULL);
  CHECK (level > 15.0 && level < 25.0, "adaptive=false: the noise is still measured (%.2f)",
         level);
  CHECK (out && max_abs_diff (out, ref, n) <= 1,
         "the output is the model's told the measured noise (max diff %d)",
         out ? max_abs_diff (out, ref, n) : -1);
  /* Far beyond the tolerance above: an element that did not tell the
   * model would fail that check. */
  CHECK (max_abs_diff (ref, untold, n) > 10, "the level matters: %d levels from the output at 0",
         max_abs_diff (ref, untold, n));
  /* sigma fixes the level the model is told; -1 measures again. */
  g_object_set (hn->element, "sigma", 0.0, NULL);
  guint8 *fixed = denoise_gray (hn, w, h, noisy);
  CHECK (fixed && max_abs_diff (fixed, untold, n) <= 1,
         "sigma=0: the output is the model's told 0 (max diff %d)",
         fixed ? max_abs_diff (fixed, untold, n) : -1);
  g_free (fixed);
  g_object_set (hn->element, "sigma", -1.0, NULL);
  fixed = denoise_gray (hn, w, h, noisy);
  CHECK (fixed && max_abs_diff (fixed, ref, n) <= 1,
         "sigma=-1: told the measured level again (max diff %d)",
         fixed ? max_abs_diff (fixed, ref, n) : -1);
  g_free (fixed);
  g_free (out);
  g_free (ref);
  g_free (untold);
  harness_free (hn, bus);
  g_free (path);
  ae_model_free (m);
  g_rand_free (rng);
}

/* Adaptive strength leaves a clean frame exactly as it is, denoises a
 * noisy one, and reports the measured noise. */
static void
test_adaptive (void)
{
  const gint w = 64, h = 48;
  const gsize n = (gsize) w * h;
  guint8 clean[64 * 48], noisy[64 * 48];
  GRand *rng = g_rand_new_with_seed (12);
  smooth_image (clean, w, h);
  add_noise (clean, noisy, n, 15, rng);
  GstBus *bus;
  GstHarness *hn = harness_new (&bus, NULL, "GRAY8", w, h);
  gdouble level = -2;
  guint8 *out = denoise_gray (hn, w, h, clean);
  g_object_get (hn->element, "noise-level", &level, NULL);
  CHECK (max_abs_diff (out, clean, n) == 0, "a clean frame passes untouched");
  CHECK (level >= 0.0 && level < 2.0, "clean frame: noise level %.2f", level);
  g_free (out);
  out = denoise_gray (hn, w, h, noisy);
  g_object_get (hn->element, "noise-level", &level, NULL);
  CHECK (level > 12.0 && level < 18.0, "sigma 15: noise level %.2f", level);
  CHECK (psnr (out, clean, n) > psnr (noisy, clean, n), "the noisy frame is denoised");
  g_free (out);
  g_object_set (hn->element, "adaptive", FALSE, NULL);
  out = denoise_gray (hn, w, h, clean);
  CHECK (max_abs_diff (out, clean, n) > 0, "adaptive=false: the clean frame goes through the model");
  g_free (out);
  harness_free (hn, bus);
  g_rand_free (rng);
}

/* ---- Temporal filtering --------------------------------------------------------------------- */

/* The luma out for a GRAY8 frame pushed as frame `index` with buffer
 * `flags` (caller frees). */
static guint8 *
push_gray (GstHarness *h, gint w, gint hh, guint64 index, const guint8 *luma, GstBufferFlags flags)
{
  GstVideoInfo info;
  info_for (&info, "GRAY8", w, hh);
  GstBuffer *in = make_gray (w, hh, index, luma);
  GST_BUFFER_FLAG_SET (in, flags);
  GstBuffer *out = push (h, in);
  guint8 *y = read_comp (out, &info, 0);
  if (out)
    gst_buffer_unref (out);
  return y;
}

/* The default model with `temporal` set. */
static GstHarness *
temporal_harness (GstBus **bus, gdouble temporal, gint w, gint h)
{
  GstHarness *hn = harness_new (bus, NULL, "GRAY8", w, h);
  g_object_set (hn->element, "temporal", temporal, NULL);
  return hn;
}

/* A bright 16x16 square at column x0 on the smooth image. */
static void
square_scene (guint8 *dst, gint w, gint h, gint x0)
{
  smooth_image (dst, w, h);
  for (gint y = 24; y < 40; y++)
    for (gint x = MAX (x0, 0); x < x0 + 16 && x < w; x++)
      dst[y * w + x] = 230;
}

static double
masked_psnr (const guint8 *a, const guint8 *b, const guint8 *mask, gsize n, gboolean want)
{
  double se = 0;
  gsize count = 0;
  for (gsize i = 0; i < n; i++)
    if (!mask[i] == !want) {
      se += (double) (a[i] - b[i]) * (a[i] - b[i]);
      count++;
    }
  return se == 0 ? 99.0 : 10 * log10 (255.0 * 255.0 * count / se);
}

/* temporal=0 keeps no state: every frame of a sequence comes out as it does
 * from a fresh element, also after temporal was on and is switched off. */
static void
test_temporal_off (void)
{
  const gint w = 40, h = 30;
  const gsize n = (gsize) w * h;
  guint8 clean[40 * 30], noisy[4][40 * 30];
  GRand *rng = g_rand_new_with_seed (14);
  smooth_image (clean, w, h);
  GstBus *bus, *bus2;
  GstHarness *seq = temporal_harness (&bus, 0.8, w, h);
  gint worst = 0;
  for (gint t = 0; t < 4; t++) {
    add_noise (clean, noisy[t], n, 20, rng);
    g_free (push_gray (seq, w, h, t, noisy[t], 0));
  }
  g_object_set (seq->element, "temporal", 0.0, NULL);
  for (gint t = 0; t < 4; t++) {
    GstHarness *fresh = harness_new (&bus2, NULL, "GRAY8", w, h);
    guint8 *a = push_gray (seq, w, h, 4 + t, noisy[t], 0);
    guint8 *b = denoise_gray (fresh, w, h, noisy[t]);
    worst = MAX (worst, max_abs_diff (a, b, n));
    g_free (a);
    g_free (b);
    harness_free (fresh, bus2);
  }
  CHECK (worst == 0, "temporal back to 0: every frame as from a fresh element (max diff %d)",
         worst);
  gdouble back = -1;
  g_object_get (seq->element, "temporal", &back, NULL);
  CHECK (back == 0.0, "temporal reads back 0");
  harness_free (seq, bus);
  g_rand_free (rng);
}

/* A static noisy scene: with temporal on, later frames are cleaner than
 * the spatial result; the first frame (no history yet) is the same. */
static void
test_temporal_static (void)
{
  const gint w = 64, h = 48, frames = 8;
  const gsize n = (gsize) w * h;
  guint8 clean[64 * 48], noisy[64 * 48];
  GRand *rng = g_rand_new_with_seed (15);
  smooth_image (clean, w, h);
  GstBus *bus[2];
  GstHarness *hn[2] = { temporal_harness (&bus[0], 0.0, w, h),
                        temporal_harness (&bus[1], 0.8, w, h) };
  double late[2] = { 0, 0 };
  gint first = -1;
  for (gint t = 0; t < frames; t++) {
    add_noise (clean, noisy, n, 20, rng);
    guint8 *out[2] = { push_gray (hn[0], w, h, t, noisy, 0), push_gray (hn[1], w, h, t, noisy, 0) };
    if (t == 0)
      first = max_abs_diff (out[0], out[1], n);
    for (gint i = 0; i < 2 && t >= frames - 4; i++)
      late[i] += psnr (out[i], clean, n) / 4;
    g_free (out[0]);
    g_free (out[1]);
  }
  CHECK (first == 0, "temporal 0.8, first frame: the spatial result (max diff %d)", first);
  CHECK (late[1] > late[0] + 1.0, "static scene, frames 5-8: PSNR %.2f dB temporal 0.8, %.2f dB "
         "spatial only", late[1], late[0]);
  for (gint i = 0; i < 2; i++)
    harness_free (hn[i], bus[i]);
  g_rand_free (rng);
}

/* A bright square moving 4 pixels a frame: where it is and where it was
 * (grown by 2 pixels), temporal output is no worse than spatial-only (no
 * trail); elsewhere it is better. */
static void
test_temporal_motion (void)
{
  const gint w = 96, h = 64, frames = 10;
  const gsize n = (gsize) w * h;
  guint8 clean[96 * 64], noisy[96 * 64], mask[96 * 64];
  GRand *rng = g_rand_new_with_seed (16);
  GstBus *bus[2];
  GstHarness *hn[2] = { temporal_harness (&bus[0], 0.0, w, h),
                        temporal_harness (&bus[1], 0.8, w, h) };
  double moving[2] = { 0, 0 }, still[2] = { 0, 0 };
  for (gint t = 0; t < frames; t++) {
    gint x0 = 8 + 4 * t;
    square_scene (clean, w, h, x0);
    add_noise (clean, noisy, n, 20, rng);
    for (gsize i = 0; i < n; i++) {
      gint x = (gint) (i % w), y = (gint) (i / w);
      mask[i] = y >= 22 && y < 42 && x >= x0 - 4 - 2 && x < x0 + 16 + 2;
    }
    for (gint i = 0; i < 2; i++) {
      guint8 *out = push_gray (hn[i], w, h, t, noisy, 0);
      if (t >= 3) {
        moving[i] += masked_psnr (out, clean, mask, n, TRUE) / (frames - 3);
        still[i] += masked_psnr (out, clean, mask, n, FALSE) / (frames - 3);
      }
      g_free (out);
    }
  }
  CHECK (moving[1] > moving[0] - 0.3, "moving square: PSNR %.2f dB temporal 0.8, %.2f dB spatial "
         "only (no trail)", moving[1], moving[0]);
  CHECK (still[1] > still[0] + 0.5, "... static background: %.2f dB vs %.2f dB", still[1],
         still[0]);
  for (gint i = 0; i < 2; i++)
    harness_free (hn[i], bus[i]);
  g_rand_free (rng);
}

/* An odd size (the network runs on a padded frame) in I420 on three stripe
 * threads: the blend covers the frame's rows only, chroma passes through,
 * and later frames gain over spatial-only denoising. */
static void
test_temporal_odd (void)
{
  const gint w = 33, h = 17, frames = 6;
  const gsize n = (gsize) w * h;
  guint8 clean[33 * 17], noisy[33 * 17];
  GRand *rng = g_rand_new_with_seed (19);
  GstVideoInfo info;
  info_for (&info, "I420", w, h);
  smooth_image (clean, w, h);
  GstBus *bus[2];
  GstHarness *hn[2];
  double late[2] = { 0, 0 };
  gint chroma = 0;
  for (gint i = 0; i < 2; i++) {
    hn[i] = harness_new (&bus[i], NULL, "I420", w, h);
    g_object_set (hn[i]->element, "temporal", i ? 0.8 : 0.0, "threads", 3, NULL);
  }
  for (gint t = 0; t < frames; t++) {
    add_noise (clean, noisy, n, 20, rng);
    Source src = { noisy, { NULL, NULL, NULL } };
    for (gint i = 0; i < 2; i++) {
      GstBuffer *out = push (hn[i], make_buffer ("I420", w, h, t, &src));
      guint8 *y = read_comp (out, &info, 0), *u = read_comp (out, &info, 1);
      if (t >= frames - 3)
        late[i] += psnr (y, clean, n) / 3;
      gint cn = GST_VIDEO_INFO_COMP_WIDTH (&info, 1) * GST_VIDEO_INFO_COMP_HEIGHT (&info, 1);
      for (gint j = 0; j < cn; j++)
        chroma = MAX (chroma, out ? abs (u[j] - TEST_U) : 999);
      g_free (y);
      g_free (u);
      if (out)
        gst_buffer_unref (out);
    }
  }
  CHECK (late[1] > late[0] + 0.5 && chroma == 0, "I420 33x17, 3 threads: PSNR %.2f dB temporal "
         "0.8, %.2f dB spatial only; chroma unchanged", late[1], late[0]);
  for (gint i = 0; i < 2; i++)
    harness_free (hn[i], bus[i]);
  g_rand_free (rng);
}

typedef enum { RESET_NONE, RESET_DISCONT, RESET_GAP_FLAG, RESET_FLUSH, RESET_GAP, RESET_SEGMENT,
               RESET_CLEAN, RESET_PASSTHROUGH, RESET_OFF } ResetKind;

static const gchar *const reset_names[] = { "nothing", "DISCONT buffer", "GAP buffer", "flush",
                                            "gap event", "new segment", "clean frame untouched",
                                            "strength 0 and back", "temporal 0 and back" };

static void
push_segment (GstHarness *h)
{
  GstSegment seg;
  gst_segment_init (&seg, GST_FORMAT_TIME);
  gst_harness_push_event (h, gst_event_new_segment (&seg));
}

/* Does the interruption `kind` between frames 4 and 5 make frame 5 come
 * out as it does from a fresh element? Returns the max difference. */
static gint
after_reset (ResetKind kind, const guint8 *clean, guint8 noisy[][64 * 48], const guint8 *alone)
{
  const gint w = 64, h = 48;
  GstBus *bus;
  GstHarness *hn = temporal_harness (&bus, 0.8, w, h);
  GstBufferFlags flags = kind == RESET_DISCONT ? GST_BUFFER_FLAG_DISCONT
                       : kind == RESET_GAP_FLAG ? GST_BUFFER_FLAG_GAP : 0;
  for (gint t = 0; t < 4; t++)
    g_free (push_gray (hn, w, h, t, noisy[t], 0));
  if (kind == RESET_FLUSH) {
    gst_harness_push_event (hn, gst_event_new_flush_start ());
    gst_harness_push_event (hn, gst_event_new_flush_stop (TRUE));
    push_segment (hn);
  } else if (kind == RESET_GAP) {
    gst_harness_push_event (hn, gst_event_new_gap (4 * GST_SECOND / 30, GST_SECOND / 30));
  } else if (kind == RESET_SEGMENT) {
    push_segment (hn);
  } else if (kind == RESET_CLEAN) {
    g_free (push_gray (hn, w, h, 4, clean, 0));
  } else if (kind == RESET_PASSTHROUGH || kind == RESET_OFF) {
    const gchar *prop = kind == RESET_OFF ? "temporal" : "strength";
    g_object_set (hn->element, prop, 0.0, NULL);
    g_free (push_gray (hn, w, h, 4, noisy[0], 0));
    g_object_set (hn->element, prop, kind == RESET_OFF ? 0.8 : 1.0, NULL);
  }
  guint8 *out = push_gray (hn, w, h, 5, noisy[4], flags);
  gint d = max_abs_diff (out, alone, (gsize) w * h);
  g_free (out);
  harness_free (hn, bus);
  return d;
}

static void
test_temporal_reset (void)
{
  const gint w = 64, h = 48;
  guint8 clean[64 * 48], noisy[5][64 * 48];
  GRand *rng = g_rand_new_with_seed (17);
  smooth_image (clean, w, h);
  for (gint t = 0; t < 5; t++)
    add_noise (clean, noisy[t], (gsize) w * h, 20, rng);
  GstBus *bus;
  GstHarness *fresh = harness_new (&bus, NULL, "GRAY8", w, h);
  guint8 *alone = denoise_gray (fresh, w, h, noisy[4]);
  harness_free (fresh, bus);
  gint d = after_reset (RESET_NONE, clean, noisy, alone);
  CHECK (d > 2, "without an interruption frame 5 uses the history (max diff %d)", d);
  for (ResetKind k = RESET_DISCONT; k <= RESET_OFF; k++) {
    d = after_reset (k, clean, noisy, alone);
    CHECK (d == 0, "%s: the history restarts (max diff %d)", reset_names[k], d);
  }
  g_free (alone);
  g_rand_free (rng);
}

static guint range_warnings;

static void
count_warning (const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer data)
{
  (void) domain;
  (void) level;
  (void) data;
  if (strstr (message, "temporal"))
    range_warnings++;
}

/* Out-of-range values are refused by GObject (a warning, the old value
 * stays), the element keeps working; new caps restart the history. */
static void
test_temporal_property (void)
{
  const gint w = 40, h = 30;
  guint8 clean[40 * 30], noisy[40 * 30];
  GRand *rng = g_rand_new_with_seed (18);
  smooth_image (clean, w, h);
  add_noise (clean, noisy, sizeof noisy, 20, rng);
  GstBus *bus;
  GstHarness *hn = temporal_harness (&bus, 0.5, w, h);
  GParamSpecDouble *ps = G_PARAM_SPEC_DOUBLE (
      g_object_class_find_property (G_OBJECT_GET_CLASS (hn->element), "temporal"));
  CHECK (ps && ps->minimum == 0.0 && ps->maximum == 1.0 && ps->default_value == 0.0,
         "temporal: 0 ... 1, default 0");
  guint handler = g_log_set_handler ("GLib-GObject", G_LOG_LEVEL_WARNING, count_warning, NULL);
  g_object_set (hn->element, "temporal", 1.5, NULL);
  g_object_set (hn->element, "temporal", -0.1, NULL);
  g_log_remove_handler ("GLib-GObject", handler);
  gdouble back = -1;
  g_object_get (hn->element, "temporal", &back, NULL);
  CHECK (range_warnings == 2 && back == 0.5, "1.5 and -0.1 refused with %u warnings, value "
         "stays %.2f", range_warnings, back);
  g_free (push_gray (hn, w, h, 0, noisy, 0));
  guint8 *out = push_gray (hn, w, h, 1, noisy, 0);
  CHECK (max_abs_diff (out, noisy, sizeof noisy) > 0, "... and the element still denoises");
  g_free (out);

  /* New caps (another frame rate): a fresh start. */
  gst_harness_set_src_caps_str (hn, "video/x-raw,format=GRAY8,width=40,height=30,framerate=25/1");
  GstBus *bus2;
  GstHarness *fresh = harness_new (&bus2, NULL, "GRAY8", w, h);
  guint8 *alone = denoise_gray (fresh, w, h, noisy);
  harness_free (fresh, bus2);
  out = push_gray (hn, w, h, 2, noisy, 0);
  CHECK (max_abs_diff (out, alone, sizeof noisy) == 0, "new caps: the history restarts");
  g_free (out);
  g_free (alone);
  harness_free (hn, bus);
  g_rand_free (rng);
}

/* ---- Main ------------------------------------------------------------------------------------ */

typedef struct
{
  const gchar *name;
  void (*run) (void);
  gboolean needs_models;
} TestCase;

static const TestCase tests[] = {
  { "reduces_noise", test_reduces_noise, FALSE },
  { "formats", test_formats, FALSE },
  { "padded_stride", test_padded_stride, FALSE },
  { "strength", test_strength, FALSE },
  { "controller", test_controller, FALSE },
  { "rgb_chroma", test_rgb_chroma, FALSE },
  { "reference", test_reference, TRUE },
  { "hot_swap", test_hot_swap, TRUE },
  { "bad_start", test_bad_start, TRUE },
  { "renegotiation", test_renegotiation, TRUE },
  { "threads", test_threads, FALSE },
  { "adaptive", test_adaptive, FALSE },
  { "noise_conditioned", test_noise_conditioned, FALSE },
  { "preset", test_preset, FALSE },
  { "temporal_off", test_temporal_off, FALSE },
  { "temporal_static", test_temporal_static, FALSE },
  { "temporal_motion", test_temporal_motion, FALSE },
  { "temporal_odd", test_temporal_odd, FALSE },
  { "temporal_reset", test_temporal_reset, FALSE },
  { "temporal_property", test_temporal_property, FALSE },
};

int
main (int argc, char **argv)
{
  /* Scan plugins in this process: a forked gst-plugin-scanner has no
   * AddressSanitizer runtime and cannot load a sanitised plugin. */
  g_setenv ("GST_REGISTRY_FORK", "no", TRUE);
  gst_init (&argc, &argv);
  workdir = g_dir_make_tmp ("test-aedenoise-XXXXXX", NULL);
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
  ae_model_free (tiny);
  g_free (tiny_path);
  g_free (trunc_path);
  g_free (rgb_path);
  g_free (workdir);
  gst_deinit ();
  return CHECK_DONE ();
}
