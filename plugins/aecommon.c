/* Shared adaptation between GStreamer and libae (see aecommon.h). */
#include "aecommon.h"

#include <gio/gio.h>
#include <math.h>
#include <string.h>

#define BT601_R 0.299f
#define BT601_G 0.587f
#define BT601_B 0.114f

/* ---- Loading ----------------------------------------------------------------------- */

gchar *
gst_ae_model_origin (const gchar *location, const gchar *resource)
{
  if (location && *location)
    return g_strdup (location);
  return g_strdup_printf ("embedded default %s", resource ? resource : "(none)");
}

ae_model *
gst_ae_model_load (const gchar *location, const gchar *resource, GError **error)
{
  ae_error err = { AE_OK, "" };
  ae_model *m = NULL;
  if (location && *location) {
    m = ae_model_load (location, &err);
  } else if (resource) {
    gchar *path = g_strconcat (GST_AE_RESOURCE_PREFIX, resource, NULL);
    GBytes *bytes = g_resources_lookup_data (path, G_RESOURCE_LOOKUP_FLAGS_NONE, error);
    g_free (path);
    if (!bytes)
      return NULL;
    gsize len;
    const void *data = g_bytes_get_data (bytes, &len);
    m = ae_model_load_memory (data, len, &err);
    g_bytes_unref (bytes);
  } else {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_NOT_FOUND,
                 "no model given and no embedded default");
    return NULL;
  }
  if (!m && location && *location)
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_READ, "%s", err.message);
  else if (!m)
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_OPEN_READ,
                 "embedded default %s: %s", resource, err.message);
  return m;
}

/* ---- The hot-swappable model --------------------------------------------------------- */

void
gst_ae_model_slot_init (GstAeModelSlot *slot, const gchar *resource, GstAeModelCheck check)
{
  memset (slot, 0, sizeof *slot);
  g_mutex_init (&slot->lock);
  slot->resource = resource;
  slot->check = check;
}

static void
join_loader (GstAeModelSlot *slot)
{
  g_mutex_lock (&slot->lock);
  GThread *t = slot->loader;
  slot->loader = NULL;
  g_mutex_unlock (&slot->lock);
  if (t)
    g_thread_join (t);
}

void
gst_ae_model_slot_clear (GstAeModelSlot *slot)
{
  join_loader (slot);
  ae_model_free (slot->active);
  ae_model_free (slot->pending);
  g_free (slot->location);
  g_mutex_clear (&slot->lock);
}

gchar *
gst_ae_model_slot_dup_location (GstAeModelSlot *slot)
{
  g_mutex_lock (&slot->lock);
  gchar *s = g_strdup (slot->location);
  g_mutex_unlock (&slot->lock);
  return s;
}

/* Loads and checks a model; on failure the message is in *error. */
static ae_model *
load_checked (GstAeModelSlot *slot, GstElement *element, const gchar *location, GError **error)
{
  g_mutex_lock (&slot->lock);
  const gchar *resource = slot->resource;
  g_mutex_unlock (&slot->lock);
  ae_model *m = gst_ae_model_load (location, resource, error);
  if (m && slot->check && !slot->check (element, m, error)) {
    ae_model_free (m);
    m = NULL;
  }
  return m;
}

typedef struct {
  GstAeModelSlot *slot;
  GstElement *element;
  gchar *location;
  guint request;
} LoadJob;

static gpointer
load_in_background (gpointer data)
{
  LoadJob *job = data;
  GError *error = NULL;
  ae_model *m = load_checked (job->slot, job->element, job->location, &error);
  g_mutex_lock (&job->slot->lock);
  gboolean current = job->request == job->slot->request;
  if (m && current) {
    ae_model_free (job->slot->pending);
    job->slot->pending = m;
    m = NULL;
  }
  g_mutex_unlock (&job->slot->lock);
  ae_model_free (m);
  if (error) {
    GST_ELEMENT_WARNING (job->element, RESOURCE, OPEN_READ,
                         ("Model not changed: %s", error->message),
                         ("keeping the previous model; %s", job->location ? job->location : ""));
    g_error_free (error);
  }
  gst_object_unref (job->element);
  g_free (job->location);
  g_free (job);
  return NULL;
}

void
gst_ae_model_slot_set_location (GstAeModelSlot *slot, GstElement *element, const gchar *location,
                                gboolean running)
{
  join_loader (slot);
  g_mutex_lock (&slot->lock);
  g_free (slot->location);
  slot->location = g_strdup (location);
  slot->request++;
  if (running) {
    LoadJob *job = g_new0 (LoadJob, 1);
    job->slot = slot;
    job->element = gst_object_ref (element);
    job->location = g_strdup (location);
    job->request = slot->request;
    slot->loader = g_thread_new ("ae-model-load", load_in_background, job);
  }
  g_mutex_unlock (&slot->lock);
}

void
gst_ae_model_slot_set_resource (GstAeModelSlot *slot, GstElement *element, const gchar *resource,
                                gboolean running)
{
  g_mutex_lock (&slot->lock);
  gboolean changed = g_strcmp0 (slot->resource, resource) != 0;
  gboolean uses_it = !slot->location || !*slot->location;
  slot->resource = resource;
  g_mutex_unlock (&slot->lock);
  if (changed && uses_it) {
    gchar *location = gst_ae_model_slot_dup_location (slot);
    gst_ae_model_slot_set_location (slot, element, location, running);
    g_free (location);
  }
}

gboolean
gst_ae_model_slot_load (GstAeModelSlot *slot, GstElement *element, GError **error)
{
  gchar *location = gst_ae_model_slot_dup_location (slot);
  ae_model *m = load_checked (slot, element, location, error);
  g_free (location);
  if (!m)
    return FALSE;
  g_mutex_lock (&slot->lock);
  ae_model_free (slot->active);
  ae_model_free (slot->pending);
  slot->active = m;
  slot->pending = NULL;
  g_mutex_unlock (&slot->lock);
  return TRUE;
}

ae_model *
gst_ae_model_slot_swap (GstAeModelSlot *slot, gboolean *changed)
{
  ae_model *old = NULL;
  *changed = FALSE;
  g_mutex_lock (&slot->lock);
  if (slot->pending) {
    old = slot->active;
    slot->active = slot->pending;
    slot->pending = NULL;
    *changed = TRUE;
  }
  g_mutex_unlock (&slot->lock);
  return old;
}

void
gst_ae_model_slot_unload (GstAeModelSlot *slot)
{
  join_loader (slot);
  g_mutex_lock (&slot->lock);
  ae_model_free (slot->active);
  ae_model_free (slot->pending);
  slot->active = slot->pending = NULL;
  g_mutex_unlock (&slot->lock);
}

/* ---- Frames ---------------------------------------------------------------------------- */

static gboolean
is_rgb (const GstVideoFrame *frame)
{
  return GST_VIDEO_INFO_IS_RGB (&frame->info);
}

/* Pointer to component c of pixel (x, y), honouring subsampling and strides. */
static inline guint8 *
comp_pixel (const GstVideoFrame *frame, int c, int x, int y)
{
  const GstVideoFormatInfo *fi = frame->info.finfo;
  /* Shift, not SCALE_WIDTH: that rounds up, which is right for plane sizes
   * but puts the last pixel of an odd row one chroma sample too far. */
  int cx = x >> GST_VIDEO_FORMAT_INFO_W_SUB (fi, c);
  int cy = y >> GST_VIDEO_FORMAT_INFO_H_SUB (fi, c);
  return (guint8 *) GST_VIDEO_FRAME_COMP_DATA (frame, c) + cy * GST_VIDEO_FRAME_COMP_STRIDE (frame, c)
       + cx * GST_VIDEO_FRAME_COMP_PSTRIDE (frame, c);
}

void
gst_ae_frame_read_luma (const GstVideoFrame *frame, float *dst)
{
  gst_ae_frame_read_luma_rows (frame, dst, 0, GST_VIDEO_FRAME_HEIGHT (frame));
}

void
gst_ae_frame_read_luma_rows (const GstVideoFrame *frame, float *dst, int y0, int y1)
{
  int w = GST_VIDEO_FRAME_WIDTH (frame);
  const float k = 1.0f / 255.0f;
  for (int y = y0; y < y1; y++) {
    float *row = dst + (size_t) y * w;
    if (!is_rgb (frame)) {
      ae_samples_read (comp_pixel (frame, 0, 0, y), GST_VIDEO_FRAME_COMP_PSTRIDE (frame, 0), row,
                       w);
      continue;
    }
    const guint8 *r = comp_pixel (frame, 0, 0, y), *g = comp_pixel (frame, 1, 0, y);
    const guint8 *b = comp_pixel (frame, 2, 0, y);
    int ps = GST_VIDEO_FRAME_COMP_PSTRIDE (frame, 0);
    for (int x = 0; x < w; x++)
      row[x] = (BT601_R * r[x * ps] + BT601_G * g[x * ps] + BT601_B * b[x * ps]) * k;
  }
}

void
gst_ae_frame_write_luma (GstVideoFrame *frame, const float *old_luma, const float *new_luma,
                         float blend)
{
  gst_ae_frame_write_luma_rows (frame, old_luma, new_luma, blend, 0,
                                GST_VIDEO_FRAME_HEIGHT (frame));
}

void
gst_ae_frame_write_luma_rows (GstVideoFrame *frame, const float *old_luma,
                              const float *new_luma, float blend, int y0, int y1)
{
  int w = GST_VIDEO_FRAME_WIDTH (frame);
  int ncomp = is_rgb (frame) ? 3 : 1;
  for (int y = y0; y < y1; y++) {
    const float *o = old_luma + (size_t) y * w, *n = new_luma + (size_t) y * w;
    for (int c = 0; c < ncomp; c++)
      ae_samples_add_change (comp_pixel (frame, c, 0, y), GST_VIDEO_FRAME_COMP_PSTRIDE (frame, c),
                             o, n, blend * 255.0f, w);
  }
}

/* Pixel (x, y) as RGB in [0, 1]: RGB formats directly, YUV by BT.601
 * limited range (as videoconvert assumes for SD), chroma by replication. */
static inline void
pixel_rgb (const GstVideoFrame *frame, int x, int y, float rgb[3])
{
  const float k = 1.0f / 255.0f;
  float c0 = *comp_pixel (frame, 0, x, y), c1 = *comp_pixel (frame, 1, x, y);
  float c2 = *comp_pixel (frame, 2, x, y), r = c0, g = c1, b = c2;
  if (!is_rgb (frame)) {
    float yy = 1.164f * (c0 - 16.0f), u = c1 - 128.0f, v = c2 - 128.0f;
    r = yy + 1.596f * v;
    g = yy - 0.392f * u - 0.813f * v;
    b = yy + 2.017f * u;
  }
  rgb[0] = fminf (fmaxf (r * k, 0.0f), 1.0f);
  rgb[1] = fminf (fmaxf (g * k, 0.0f), 1.0f);
  rgb[2] = fminf (fmaxf (b * k, 0.0f), 1.0f);
}

/* Pixel (x, y)'s luma in [0, 1], as gst_ae_frame_read_luma_rows computes it. */
static inline float
pixel_luma (const GstVideoFrame *frame, int x, int y)
{
  const float k = 1.0f / 255.0f;
  if (!is_rgb (frame))
    return *comp_pixel (frame, 0, x, y) * k;
  return (BT601_R * *comp_pixel (frame, 0, x, y) + BT601_G * *comp_pixel (frame, 1, x, y)
          + BT601_B * *comp_pixel (frame, 2, x, y)) * k;
}

/* Pixel (x, y) as `channels` values (1: luma; 3: RGB, gray replicated). */
static inline void
pixel_values (const GstVideoFrame *frame, int channels, int x, int y, float v[3])
{
  if (channels == 3 && !GST_VIDEO_INFO_IS_GRAY (&frame->info)) {
    pixel_rgb (frame, x, y, v);
    return;
  }
  v[0] = v[1] = v[2] = pixel_luma (frame, x, y);
}

void
gst_ae_frame_read_roi (const GstVideoFrame *frame, int channels, const GstVideoRectangle *roi,
                       float *dst, gint dw, gint dh)
{
  gsize plane = (gsize) dw * dh;
  for (gint y = 0; y < dh; y++) {
    gint sy = roi->y + MIN (y, roi->h - 1);
    for (gint x = 0; x < dw; x++) {
      float v[3];
      gsize i = (gsize) y * dw + x;
      if (x < roi->w)
        pixel_values (frame, channels, roi->x + x, sy, v);
      else /* padding: the row's last value */
        for (gint c = 0; c < channels; c++)
          v[c] = dst[c * plane + i - 1];
      for (gint c = 0; c < channels; c++)
        dst[c * plane + i] = v[c];
    }
  }
}

/* ---- Resampling --------------------------------------------------------------------------- */

static void
area_down (const float *src, int sw, int sh, float *dst, int dw, int dh)
{
  for (int y = 0; y < dh; y++) {
    int y0 = (int) ((long long) y * sh / dh), y1 = (int) ((long long) (y + 1) * sh / dh);
    if (y1 <= y0)
      y1 = y0 + 1;
    for (int x = 0; x < dw; x++) {
      int x0 = (int) ((long long) x * sw / dw), x1 = (int) ((long long) (x + 1) * sw / dw);
      if (x1 <= x0)
        x1 = x0 + 1;
      double s = 0.0;
      for (int yy = y0; yy < y1; yy++)
        for (int xx = x0; xx < x1; xx++)
          s += src[(size_t) yy * sw + xx];
      dst[(size_t) y * dw + x] = (float) (s / ((double) (y1 - y0) * (x1 - x0)));
    }
  }
}

static void
bilinear (const float *src, int sw, int sh, float *dst, int dw, int dh)
{
  for (int y = 0; y < dh; y++) {
    float fy = ((float) y + 0.5f) * sh / dh - 0.5f;
    fy = fminf (fmaxf (fy, 0.0f), (float) (sh - 1));
    int y0 = (int) fy, y1 = y0 + 1 < sh ? y0 + 1 : y0;
    float wy = fy - y0;
    for (int x = 0; x < dw; x++) {
      float fx = ((float) x + 0.5f) * sw / dw - 0.5f;
      fx = fminf (fmaxf (fx, 0.0f), (float) (sw - 1));
      int x0 = (int) fx, x1 = x0 + 1 < sw ? x0 + 1 : x0;
      float wx = fx - x0;
      const float *r0 = src + (size_t) y0 * sw, *r1 = src + (size_t) y1 * sw;
      dst[(size_t) y * dw + x] = (1 - wy) * ((1 - wx) * r0[x0] + wx * r0[x1])
                               + wy * ((1 - wx) * r1[x0] + wx * r1[x1]);
    }
  }
}

void
gst_ae_resample (const float *src, int sw, int sh, float *dst, int dw, int dh, int channels)
{
  for (int c = 0; c < channels; c++) {
    const float *s = src + (size_t) c * sw * sh;
    float *d = dst + (size_t) c * dw * dh;
    if (sw == dw && sh == dh)
      memcpy (d, s, (size_t) sw * sh * sizeof (float));
    else if (dw <= sw && dh <= sh)
      area_down (s, sw, sh, d, dw, dh);
    else
      bilinear (s, sw, sh, d, dw, dh);
  }
}

void
gst_ae_frame_read_network_input (const GstVideoFrame *frame, int channels,
                                 const GstVideoRectangle *roi, float *crop, float *input, gint aw,
                                 gint ah)
{
  if (!crop) {
    gst_ae_frame_read_roi (frame, channels, roi, input, aw, ah);
    return;
  }
  gst_ae_frame_read_roi (frame, channels, roi, crop, roi->w, roi->h);
  gst_ae_resample (crop, roi->w, roi->h, input, aw, ah, channels);
}

/* ---- Properties ----------------------------------------------------------------------- */

gboolean
gst_ae_parse_roi (const gchar *str, gboolean *set, GstVideoRectangle *r)
{
  gint64 v[4];
  gchar *s = g_strstrip (g_strdelimit (g_strdup (str ? str : ""), "<>", ' '));
  *set = FALSE;
  if (!*s) {
    g_free (s);
    return TRUE;
  }
  gchar **parts = g_strsplit (s, ",", -1);
  gboolean ok = g_strv_length (parts) == 4;
  for (guint i = 0; ok && i < 4; i++)
    ok = g_ascii_string_to_signed (g_strstrip (parts[i]), 10, i < 2 ? 0 : 1, G_MAXINT, &v[i],
                                   NULL);
  g_strfreev (parts);
  g_free (s);
  if (ok) {
    *set = TRUE;
    *r = (GstVideoRectangle) { (gint) v[0], (gint) v[1], (gint) v[2], (gint) v[3] };
  }
  return ok;
}

gint
gst_ae_stripe_threads (gint requested, gint max)
{
  gint threads = requested > 0 ? requested : CLAMP ((gint) g_get_num_processors (), 1, max);
  if (threads > 1)
    ae_set_blas_threads (1);
  return threads;
}
