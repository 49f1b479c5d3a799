/* aeencode: one latent vector per video frame, as an NNStreamer tensor stream.
 *
 * SPDX-License-Identifier: LGPL-2.1-or-later
 */
/**
 * SECTION:element-aeencode
 * @title: aeencode
 *
 * Runs the encoder half of an autoencoder on every frame and outputs its
 * latent vector (for a VAE: the mean) as one buffer of D little-endian
 * float32 values, with the input buffer's timestamps, duration and offsets.
 * The source pad speaks NNStreamer's static tensor caps:
 * `other/tensors,num_tensors=1,types=float32,format=static,dimensions=D:1:1:1,framerate=F`.
 *
 * The frame (or the #GstAeEncode:roi rectangle of it) is read as the
 * model's channels: 1 = luma (the Y plane of YUV, BT.601 luma of RGB), 3 =
 * RGB. Models with a dense layer, such as the embedded default (a 28x28
 * gray convolutional autoencoder trained on Fashion-MNIST, D = 32), take
 * one input size: the frame is scaled to it (area average when shrinking,
 * bilinear when enlarging). Fully convolutional models encode the frame at
 * its own size, padded by edge replication to the model's size multiple;
 * D is then the size of the latent map at that size and changes with the
 * frame size.
 *
 * Changing #GstAeEncode:model while PLAYING swaps the model between two
 * frames. When the new model's D differs, the element renegotiates its
 * source caps; a model that downstream would not accept (checked with an
 * ACCEPT_CAPS query before the swap) is refused with a WARNING and the old
 * one stays.
 *
 * ## Example launch line
 * |[
 * gst-launch-1.0 filesrc location=clip.mkv ! decodebin ! videoconvert ! \
 *     aeencode ! filesink location=latents.f32
 * ]| Writes 32 float32 values per frame with the embedded default model.
 * |[
 * gst-launch-1.0 v4l2src ! videoconvert ! aeencode model=parts.aem roi=100,50,320,240 ! \
 *     fakesink
 * ]| Encodes only a rectangle of a camera feed with a trained model.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstaeencode.h"

#include "aecommon.h"

#include <gst/video/video.h>
#include <string.h>

GST_DEBUG_CATEGORY_STATIC (gst_ae_encode_debug);
#define GST_CAT_DEFAULT gst_ae_encode_debug

#define DEFAULT_RESOURCE "encode-default.aem"
#define TENSOR_CAPS_NAME "other/tensors"
/* Pool depth: one buffer being filled, one on its way downstream. */
#define POOL_MIN_BUFFERS 2

enum
{
  PROP_0,
  PROP_MODEL,
  PROP_ROI,
};

/* How a frame maps onto the network input. */
typedef struct
{
  gint fw, fh;           /* frame */
  GstVideoRectangle roi; /* encoded rectangle, frame coordinates */
  gint channels;
  gint aw, ah;       /* network input */
  gboolean resample; /* fixed-size model: the roi is scaled to aw x ah */
  gsize latent;      /* D */
} GstAeEncodeShape;

struct _GstAeEncode
{
  GstBaseTransform parent;

  GstAeModelSlot slot;

  /* Properties (object lock). */
  gchar *roi_str;
  gboolean roi_set, roi_changed;
  GstVideoRectangle roi_prop;
  /* Shared with caps queries and the hot-swap check (object lock). The
   * streaming thread publishes the active model here and only frees a
   * model once it is no longer published, so caps code may use it while
   * holding the lock. */
  const ae_model *caps_model;
  gboolean running, have_caps;
  gint caps_width, caps_height;
  gsize caps_latent; /* D of the negotiated source caps */

  /* Streaming thread. */
  GstVideoInfo info;
  GstAeEncodeShape shape;
  ae_session *session;
  float *crop;  /* channels x roi (resampling only) */
  float *input; /* channels x aw x ah */
};

static GstStaticPadTemplate sink_template = GST_STATIC_PAD_TEMPLATE ("sink", GST_PAD_SINK,
    GST_PAD_ALWAYS, GST_STATIC_CAPS (GST_VIDEO_CAPS_MAKE (GST_AE_VIDEO_FORMATS)));
static GstStaticPadTemplate src_template = GST_STATIC_PAD_TEMPLATE ("src", GST_PAD_SRC,
    GST_PAD_ALWAYS, GST_STATIC_CAPS (TENSOR_CAPS_NAME ", num_tensors = (int) 1, "
        "types = (string) float32, format = (string) static, "
        "framerate = (fraction) [ 0/1, 2147483647/1 ]"));

#define gst_ae_encode_parent_class parent_class
G_DEFINE_TYPE (GstAeEncode, gst_ae_encode, GST_TYPE_BASE_TRANSFORM);
GST_ELEMENT_REGISTER_DEFINE (aeencode, "aeencode", GST_RANK_NONE, GST_TYPE_AE_ENCODE);

/* ---- Shapes ------------------------------------------------------------------------ */

static gint
round_up (gint v, gint k)
{
  return k > 1 ? (v + k - 1) / k * k : v;
}

/* Dense models take their own input size; fully convolutional ones the
 * roi padded to their multiple. */
static void
shape_for_model (const ae_model *m, gint rw, gint rh, GstAeEncodeShape *s)
{
  int c, h, w;
  ae_model_input_shape (m, &c, &h, &w);
  s->channels = c;
  s->resample = !ae_model_is_fully_convolutional (m);
  s->aw = s->resample ? w : round_up (rw, ae_model_size_multiple (m));
  s->ah = s->resample ? h : round_up (rh, ae_model_size_multiple (m));
  s->latent = ae_model_latent_size (m, s->ah, s->aw);
}

static gsize
latent_for (const ae_model *m, gint rw, gint rh)
{
  GstAeEncodeShape s;
  shape_for_model (m, rw, rh, &s);
  return s.latent;
}

/* The encoded rectangle of a fw x fh frame. */
static gboolean
roi_in_frame (gboolean set, const GstVideoRectangle *prop, gint fw, gint fh,
              GstVideoRectangle *out, GError **error)
{
  if (!set) {
    *out = (GstVideoRectangle) { 0, 0, fw, fh };
    return TRUE;
  }
  if ((gint64) prop->x + prop->w > fw || (gint64) prop->y + prop->h > fh) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
                 "roi %d,%d,%d,%d does not fit the %dx%d frames", prop->x, prop->y, prop->w,
                 prop->h, fw, fh);
    return FALSE;
  }
  *out = *prop;
  return TRUE;
}

/* ---- Tensor caps --------------------------------------------------------------------- */

/* Product of an NNStreamer "dimensions" string such as "32:1:1:1"; 0 if
 * absent or not a fixed, valid string. */
static gsize
tensor_elements (const GstStructure *s)
{
  const gchar *dims = gst_structure_get_string (s, "dimensions");
  if (!dims)
    return 0;
  gchar **parts = g_strsplit (dims, ":", -1);
  guint64 n = 1, v;
  for (guint i = 0; parts[i] && n; i++)
    n = g_ascii_string_to_unsigned (parts[i], 10, 1, G_MAXUINT32, &v, NULL) ? n * v : 0;
  g_strfreev (parts);
  return n < G_MAXSIZE / sizeof (float) ? (gsize) n : 0;
}

static void
set_dimensions (GstStructure *s, gsize latent)
{
  gchar *dims = g_strdup_printf ("%" G_GSIZE_FORMAT ":1:1:1", latent);
  gst_structure_set (s, "dimensions", G_TYPE_STRING, dims, NULL);
  g_free (dims);
}

/* D for video caps `v` if it is determined: always for dense models, for
 * fully convolutional ones once the roi or the frame size is fixed. Object
 * lock held. */
static gsize
latent_for_video_locked (GstAeEncode *self, const GstStructure *v)
{
  const ae_model *m = self->caps_model;
  gint w, h;
  if (!m)
    return 0;
  if (!ae_model_is_fully_convolutional (m))
    return latent_for (m, 1, 1);
  if (self->roi_set)
    return latent_for (m, self->roi_prop.w, self->roi_prop.h);
  if (v && gst_structure_get_int (v, "width", &w) && gst_structure_get_int (v, "height", &h))
    return latent_for (m, w, h);
  return 0;
}

static GstStructure *
tensor_structure (const GstStructure *video, gsize latent)
{
  GstStructure *t = gst_structure_new (TENSOR_CAPS_NAME, "num_tensors", G_TYPE_INT, 1,
                                       "types", G_TYPE_STRING, "float32",
                                       "format", G_TYPE_STRING, "static", NULL);
  const GValue *rate = video ? gst_structure_get_value (video, "framerate") : NULL;
  if (rate)
    gst_structure_set_value (t, "framerate", rate);
  if (latent)
    set_dimensions (t, latent);
  return t;
}

static GstCaps *
video_to_tensors (GstAeEncode *self, GstCaps *caps)
{
  GstCaps *out = gst_caps_new_empty ();
  GST_OBJECT_LOCK (self);
  if (gst_caps_is_any (caps))
    gst_caps_append_structure (out, tensor_structure (NULL, latent_for_video_locked (self, NULL)));
  for (guint i = 0; !gst_caps_is_any (caps) && i < gst_caps_get_size (caps); i++) {
    const GstStructure *v = gst_caps_get_structure (caps, i);
    out = gst_caps_merge_structure (out,
        tensor_structure (v, latent_for_video_locked (self, v)));
  }
  GST_OBJECT_UNLOCK (self);
  return out;
}

/* Any size and format we take; only the frame rate carries over, and a
 * dense model's fixed D must match. */
static GstCaps *
tensors_to_video (GstAeEncode *self, GstCaps *caps)
{
  GstCaps *templ = gst_static_pad_template_get_caps (&sink_template);
  GstCaps *out = gst_caps_new_empty ();
  GST_OBJECT_LOCK (self);
  gsize fixed = self->caps_model && !ae_model_is_fully_convolutional (self->caps_model)
                    ? latent_for (self->caps_model, 1, 1) : 0;
  GST_OBJECT_UNLOCK (self);
  for (guint i = 0; i < gst_caps_get_size (caps); i++) {
    const GstStructure *t = gst_caps_get_structure (caps, i);
    gsize d = tensor_elements (t);
    if (fixed && d && d != fixed)
      continue;
    GstStructure *v = gst_structure_copy (gst_caps_get_structure (templ, 0));
    const GValue *rate = gst_structure_get_value (t, "framerate");
    if (rate)
      gst_structure_set_value (v, "framerate", rate);
    out = gst_caps_merge_structure (out, v);
  }
  if (gst_caps_is_any (caps))
    gst_caps_replace (&out, templ);
  gst_caps_unref (templ);
  return out;
}

/* ---- Model and work buffers ------------------------------------------------------- */

static void
release_work (GstAeEncode *self)
{
  ae_session_free (self->session);
  self->session = NULL;
  g_clear_pointer (&self->crop, g_free);
  g_clear_pointer (&self->input, g_free);
}

static void
publish_model (GstAeEncode *self)
{
  GST_OBJECT_LOCK (self);
  self->caps_model = self->slot.active;
  GST_OBJECT_UNLOCK (self);
}

/* Would downstream take D = `latent` instead of what it has now? */
static gboolean
downstream_accepts (GstAeEncode *self, gsize latent)
{
  GstPad *src = GST_BASE_TRANSFORM_SRC_PAD (self);
  GstCaps *caps = gst_pad_get_current_caps (src);
  if (!caps)
    return TRUE;
  caps = gst_caps_make_writable (caps);
  set_dimensions (gst_caps_get_structure (caps, 0), latent);
  gboolean ok = gst_pad_peer_query_accept_caps (src, caps);
  gst_caps_unref (caps);
  return ok;
}

/* GstAeModelCheck: at start, and for hot-swaps on the loader thread. The
 * model must take 1 or 3 channels and run on the current roi; a D change
 * must be acceptable downstream, as the swap renegotiates. */
static gboolean
gst_ae_encode_check_model (GstElement *element, const ae_model *m, GError **error)
{
  GstAeEncode *self = GST_AE_ENCODE (element);
  GstAeEncodeShape s;
  GstVideoRectangle roi;
  ae_error err = { AE_OK, "" };
  int c, mh, mw;

  ae_model_input_shape (m, &c, &mh, &mw);
  if (c != 1 && c != 3) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
                 "the model takes %d channels; aeencode needs 1 (luma) or 3 (RGB)", c);
    return FALSE;
  }
  GST_OBJECT_LOCK (self);
  gboolean have_caps = self->have_caps, ok = TRUE;
  gsize current = self->caps_latent;
  if (have_caps)
    ok = roi_in_frame (self->roi_set, &self->roi_prop, self->caps_width, self->caps_height,
                       &roi, error);
  GST_OBJECT_UNLOCK (self);
  if (!ok)
    return FALSE;
  shape_for_model (m, have_caps ? roi.w : mw, have_caps ? roi.h : mh, &s);
  ae_session *session = ae_session_new (m, 1, s.ah, s.aw, &err);
  if (!session) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
                 "the model cannot encode %dx%d: %s", s.aw, s.ah, err.message);
    return FALSE;
  }
  ae_session_free (session);
  if (have_caps && s.latent != current && !downstream_accepts (self, s.latent)) {
    g_set_error (error, GST_RESOURCE_ERROR, GST_RESOURCE_ERROR_SETTINGS,
                 "downstream does not accept dimensions=%" G_GSIZE_FORMAT ":1:1:1 (now %"
                 G_GSIZE_FORMAT ")", s.latent, current);
    return FALSE;
  }
  return TRUE;
}

/* Builds the shape, session and float planes for the active model, the
 * negotiated frames and the roi: the only place that allocates. */
static gboolean
gst_ae_encode_configure (GstAeEncode *self)
{
  const ae_model *m = self->slot.active;
  GstAeEncodeShape s = { 0 };
  GError *error = NULL;
  ae_error err = { AE_OK, "" };

  release_work (self);
  s.fw = GST_VIDEO_INFO_WIDTH (&self->info);
  s.fh = GST_VIDEO_INFO_HEIGHT (&self->info);
  GST_OBJECT_LOCK (self);
  gboolean ok = roi_in_frame (self->roi_set, &self->roi_prop, s.fw, s.fh, &s.roi, &error);
  self->roi_changed = FALSE;
  GST_OBJECT_UNLOCK (self);
  if (!ok) {
    GST_ELEMENT_ERROR (self, RESOURCE, SETTINGS, ("The %s.", error->message), (NULL));
    g_error_free (error);
    return FALSE;
  }
  shape_for_model (m, s.roi.w, s.roi.h, &s);
  self->session = ae_session_new (m, 1, s.ah, s.aw, &err);
  if (!self->session) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, ("The model cannot encode %dx%d: %s", s.aw, s.ah,
                       err.message), ("model %s", ae_model_spec (m)));
    return FALSE;
  }
  self->shape = s;
  self->crop = s.resample ? g_new (float, (gsize) s.channels * s.roi.w * s.roi.h) : NULL;
  self->input = g_new (float, (gsize) s.channels * s.aw * s.ah);
  GST_DEBUG_OBJECT (self, "frames %dx%d, roi %d,%d,%d,%d, network %dx%dx%d%s, D = %" G_GSIZE_FORMAT,
                    s.fw, s.fh, s.roi.x, s.roi.y, s.roi.w, s.roi.h, s.channels, s.aw, s.ah,
                    s.resample ? " (resampled)" : "", s.latent);
  return TRUE;
}

/* Adopts a pending model; the old one is unpublished before it is freed,
 * and its session goes first (sessions point at their model). */
static gboolean
swap_model (GstAeEncode *self)
{
  gboolean changed;
  ae_model *old = gst_ae_model_slot_swap (&self->slot, &changed);
  if (!changed)
    return FALSE;
  publish_model (self);
  release_work (self);
  ae_model_free (old);
  GST_INFO_OBJECT (self, "model changed to %s", ae_model_spec (self->slot.active));
  return TRUE;
}

/* ---- Frames ------------------------------------------------------------------------ */

static const float *
encode_frame (GstAeEncode *self, const GstVideoFrame *frame)
{
  const GstAeEncodeShape *s = &self->shape;
  gst_ae_frame_read_network_input (frame, s->channels, &s->roi, self->crop, self->input, s->aw,
                                   s->ah);
  return ae_session_encode (self->session, self->input);
}

/* float32, little-endian whatever the host. */
static void
write_le_floats (guint8 *dst, const float *src, gsize n)
{
#if G_BYTE_ORDER == G_LITTLE_ENDIAN
  memcpy (dst, src, n * sizeof (float));
#else
  for (gsize i = 0; i < n; i++) {
    guint32 u;
    memcpy (&u, &src[i], sizeof u);
    u = GUINT32_TO_LE (u);
    memcpy (dst + i * sizeof u, &u, sizeof u);
  }
#endif
}

/* ---- GstBaseTransform ---------------------------------------------------------------- */

static gboolean
gst_ae_encode_start (GstBaseTransform *trans)
{
  GstAeEncode *self = GST_AE_ENCODE (trans);
  GError *error = NULL;

  if (!gst_ae_model_slot_load (&self->slot, GST_ELEMENT (self), &error)) {
    gchar *location = gst_ae_model_slot_dup_location (&self->slot);
    gchar *origin = gst_ae_model_origin (location, DEFAULT_RESOURCE);
    GST_ELEMENT_ERROR (self, RESOURCE, OPEN_READ,
                       ("Could not load the encoder model: %s", error->message),
                       ("model: %s", origin));
    g_free (origin);
    g_free (location);
    g_error_free (error);
    return FALSE;
  }
  GST_INFO_OBJECT (self, "model %s", ae_model_spec (self->slot.active));
  GST_OBJECT_LOCK (self);
  self->caps_model = self->slot.active;
  self->running = TRUE;
  GST_OBJECT_UNLOCK (self);
  return TRUE;
}

static gboolean
gst_ae_encode_stop (GstBaseTransform *trans)
{
  GstAeEncode *self = GST_AE_ENCODE (trans);
  GST_OBJECT_LOCK (self);
  self->caps_model = NULL;
  self->running = self->have_caps = FALSE;
  self->caps_latent = 0;
  GST_OBJECT_UNLOCK (self);
  release_work (self);
  gst_ae_model_slot_unload (&self->slot);
  gst_video_info_init (&self->info);
  return TRUE;
}

static GstCaps *
gst_ae_encode_transform_caps (GstBaseTransform *trans, GstPadDirection direction, GstCaps *caps,
                              GstCaps *filter)
{
  GstAeEncode *self = GST_AE_ENCODE (trans);
  GstCaps *out = direction == GST_PAD_SINK ? video_to_tensors (self, caps)
                                           : tensors_to_video (self, caps);
  if (filter) {
    GstCaps *tmp = gst_caps_intersect_full (filter, out, GST_CAPS_INTERSECT_FIRST);
    gst_caps_unref (out);
    out = tmp;
  }
  GST_DEBUG_OBJECT (self, "%s %" GST_PTR_FORMAT " -> %" GST_PTR_FORMAT,
                    direction == GST_PAD_SINK ? "sink" : "src", caps, out);
  return out;
}

/* Fixed video caps give D (for fully convolutional models it was left
 * open while the size was not fixed) and the frame rate. */
static GstCaps *
gst_ae_encode_fixate_caps (GstBaseTransform *trans, GstPadDirection direction, GstCaps *caps,
                           GstCaps *othercaps)
{
  GstAeEncode *self = GST_AE_ENCODE (trans);
  if (direction != GST_PAD_SINK)
    return GST_BASE_TRANSFORM_CLASS (parent_class)->fixate_caps (trans, direction, caps,
                                                                 othercaps);
  othercaps = gst_caps_make_writable (gst_caps_truncate (othercaps));
  const GstStructure *v = gst_caps_get_structure (caps, 0);
  GstStructure *t = gst_caps_get_structure (othercaps, 0);
  gint n, d;
  GST_OBJECT_LOCK (self);
  gsize latent = latent_for_video_locked (self, v);
  GST_OBJECT_UNLOCK (self);
  if (latent)
    set_dimensions (t, latent);
  if (gst_structure_get_fraction (v, "framerate", &n, &d) && gst_structure_has_field (t, "framerate"))
    gst_structure_fixate_field_nearest_fraction (t, "framerate", n, d);
  return gst_caps_fixate (othercaps);
}

static gboolean
gst_ae_encode_set_caps (GstBaseTransform *trans, GstCaps *incaps, GstCaps *outcaps)
{
  GstAeEncode *self = GST_AE_ENCODE (trans);
  if (!gst_video_info_from_caps (&self->info, incaps))
    return FALSE;
  GST_OBJECT_LOCK (self);
  self->have_caps = TRUE;
  self->caps_width = GST_VIDEO_INFO_WIDTH (&self->info);
  self->caps_height = GST_VIDEO_INFO_HEIGHT (&self->info);
  GST_OBJECT_UNLOCK (self);
  if (!self->slot.active || !gst_ae_encode_configure (self))
    return FALSE;
  gsize d = tensor_elements (gst_caps_get_structure (outcaps, 0));
  if (d != self->shape.latent) {
    GST_ELEMENT_ERROR (self, CORE, NEGOTIATION, ("Output caps do not fit the model."),
                       ("dimensions give %" G_GSIZE_FORMAT " values, the model has %"
                        G_GSIZE_FORMAT ": %" GST_PTR_FORMAT, d, self->shape.latent, outcaps));
    return FALSE;
  }
  GST_OBJECT_LOCK (self);
  self->caps_latent = d;
  GST_OBJECT_UNLOCK (self);
  return TRUE;
}

static gboolean
gst_ae_encode_transform_size (GstBaseTransform *trans, GstPadDirection direction, GstCaps *caps,
                              gsize size, GstCaps *othercaps, gsize *othersize)
{
  GstVideoInfo info;
  (void) trans;
  (void) caps;
  (void) size;
  if (direction == GST_PAD_SINK) {
    *othersize = tensor_elements (gst_caps_get_structure (othercaps, 0)) * sizeof (float);
    return *othersize > 0;
  }
  if (!gst_video_info_from_caps (&info, othercaps))
    return FALSE;
  *othersize = GST_VIDEO_INFO_SIZE (&info);
  return TRUE;
}

/* Output buffers come from a pool of D-float buffers: downstream's, or
 * ours when it offers none (fakesink, filesink), so that steady state
 * allocates nothing. */
static gboolean
gst_ae_encode_decide_allocation (GstBaseTransform *trans, GstQuery *query)
{
  GstCaps *outcaps;
  GstBufferPool *pool = NULL;
  guint size = 0, min = 0, max = 0;

  gst_query_parse_allocation (query, &outcaps, NULL);
  guint bytes = outcaps ? (guint) (tensor_elements (gst_caps_get_structure (outcaps, 0))
                                   * sizeof (float)) : 0;
  if (gst_query_get_n_allocation_pools (query) > 0) {
    gst_query_parse_nth_allocation_pool (query, 0, &pool, &size, &min, &max);
    gst_query_set_nth_allocation_pool (query, 0, pool, MAX (size, bytes), min, max);
    if (pool)
      gst_object_unref (pool);
  } else {
    gst_query_add_allocation_pool (query, NULL, bytes, POOL_MIN_BUFFERS, 0);
  }
  return GST_BASE_TRANSFORM_CLASS (parent_class)->decide_allocation (trans, query);
}

/* Hot-swaps and roi changes are adopted here, before the base class looks
 * at its source pad: a new D marks it for renegotiation, which then
 * happens before this very buffer is handled. */
static void
gst_ae_encode_before_transform (GstBaseTransform *trans, GstBuffer *buffer)
{
  GstAeEncode *self = GST_AE_ENCODE (trans);
  (void) buffer;
  gboolean swapped = swap_model (self);
  GST_OBJECT_LOCK (self);
  gboolean roi_changed = self->roi_changed, have_caps = self->have_caps;
  gsize negotiated = self->caps_latent;
  GST_OBJECT_UNLOCK (self);
  if ((!swapped && !roi_changed) || !have_caps)
    return;
  if (!gst_ae_encode_configure (self))
    return; /* posted an error; transform refuses the buffer */
  if (self->shape.latent != negotiated) {
    GST_INFO_OBJECT (self, "D %" G_GSIZE_FORMAT " -> %" G_GSIZE_FORMAT ": renegotiating",
                     negotiated, self->shape.latent);
    gst_base_transform_reconfigure_src (trans);
  }
}

static GstFlowReturn
gst_ae_encode_transform (GstBaseTransform *trans, GstBuffer *inbuf, GstBuffer *outbuf)
{
  GstAeEncode *self = GST_AE_ENCODE (trans);
  GstVideoFrame frame;
  GstMapInfo map;
  gsize bytes = self->shape.latent * sizeof (float);

  if (!self->session)
    return GST_FLOW_NOT_NEGOTIATED;
  if (!gst_video_frame_map (&frame, &self->info, inbuf, GST_MAP_READ)) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Could not map the input frame."), (NULL));
    return GST_FLOW_ERROR;
  }
  const float *z = encode_frame (self, &frame);
  gst_video_frame_unmap (&frame);
  if (!z) {
    GST_ELEMENT_ERROR (self, LIBRARY, FAILED, ("The encoder model failed."), (NULL));
    return GST_FLOW_ERROR;
  }
  if (gst_buffer_get_size (outbuf) != bytes)
    gst_buffer_resize (outbuf, 0, (gssize) bytes);
  if (!gst_buffer_map (outbuf, &map, GST_MAP_WRITE)) {
    GST_ELEMENT_ERROR (self, STREAM, FAILED, ("Could not map the output buffer."), (NULL));
    return GST_FLOW_ERROR;
  }
  write_le_floats (map.data, z, self->shape.latent);
  gst_buffer_unmap (outbuf, &map);
  return GST_FLOW_OK;
}

/* ---- Properties ------------------------------------------------------------------- */

static void
set_model (GstAeEncode *self, const gchar *location)
{
  GST_OBJECT_LOCK (self);
  gboolean running = self->running;
  GST_OBJECT_UNLOCK (self);
  gst_ae_model_slot_set_location (&self->slot, GST_ELEMENT (self), location, running);
}

static void
set_roi (GstAeEncode *self, const gchar *str)
{
  gboolean set;
  GstVideoRectangle r = { 0, 0, 0, 0 };
  if (!gst_ae_parse_roi (str, &set, &r)) {
    g_warning ("aeencode: ignoring roi \"%s\": expected \"x,y,w,h\" with w, h > 0", str);
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

static void
gst_ae_encode_set_property (GObject *object, guint prop_id, const GValue *value,
                            GParamSpec *pspec)
{
  GstAeEncode *self = GST_AE_ENCODE (object);
  switch (prop_id) {
  case PROP_MODEL:
    set_model (self, g_value_get_string (value));
    break;
  case PROP_ROI:
    set_roi (self, g_value_get_string (value));
    break;
  default:
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    break;
  }
}

static void
gst_ae_encode_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  GstAeEncode *self = GST_AE_ENCODE (object);
  switch (prop_id) {
  case PROP_MODEL:
    g_value_take_string (value, gst_ae_model_slot_dup_location (&self->slot));
    break;
  case PROP_ROI:
    GST_OBJECT_LOCK (self);
    g_value_set_string (value, self->roi_str);
    GST_OBJECT_UNLOCK (self);
    break;
  default:
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    break;
  }
}

static void
gst_ae_encode_finalize (GObject *object)
{
  GstAeEncode *self = GST_AE_ENCODE (object);
  release_work (self);
  gst_ae_model_slot_clear (&self->slot);
  g_free (self->roi_str);
  G_OBJECT_CLASS (parent_class)->finalize (object);
}

#define RW_FLAGS (G_PARAM_READWRITE | G_PARAM_STATIC_STRINGS)

static void
install_properties (GObjectClass *oc)
{
  g_object_class_install_property (oc, PROP_MODEL,
      g_param_spec_string ("model", "Model",
          "Autoencoder model (.aem, 1 or 3 channels); unset or empty: the embedded default "
          "(28x28 gray, D = 32). Can be changed while PLAYING (loaded in the background; a "
          "model that does not load, does not fit or whose D downstream refuses is refused "
          "with a warning; a new D renegotiates the source caps)",
          NULL, RW_FLAGS | GST_PARAM_MUTABLE_PLAYING));
  g_object_class_install_property (oc, PROP_ROI,
      g_param_spec_string ("roi", "Region of interest",
          "Encode only this rectangle, \"x,y,w,h\" in pixels (also \"<x,y,w,h>\"); empty: the "
          "whole frame. Must fit the frames. With a fully convolutional model D depends on "
          "its size, and a change renegotiates",
          NULL, RW_FLAGS | GST_PARAM_MUTABLE_PLAYING));
}

static void
gst_ae_encode_class_init (GstAeEncodeClass *klass)
{
  GObjectClass *oc = G_OBJECT_CLASS (klass);
  GstElementClass *ec = GST_ELEMENT_CLASS (klass);
  GstBaseTransformClass *bt = GST_BASE_TRANSFORM_CLASS (klass);

  GST_DEBUG_CATEGORY_INIT (gst_ae_encode_debug, "aeencode", 0, "autoencoder latent encoder");

  oc->set_property = gst_ae_encode_set_property;
  oc->get_property = gst_ae_encode_get_property;
  oc->finalize = gst_ae_encode_finalize;
  install_properties (oc);

  gst_element_class_add_static_pad_template (ec, &sink_template);
  gst_element_class_add_static_pad_template (ec, &src_template);
  gst_element_class_set_static_metadata (ec, "Autoencoder encoder", "Filter/Analyzer/Video",
      "Outputs an autoencoder's latent vector of every frame as a float32 tensor",
      "gst-autoencoder developers");

  bt->start = GST_DEBUG_FUNCPTR (gst_ae_encode_start);
  bt->stop = GST_DEBUG_FUNCPTR (gst_ae_encode_stop);
  bt->transform_caps = GST_DEBUG_FUNCPTR (gst_ae_encode_transform_caps);
  bt->fixate_caps = GST_DEBUG_FUNCPTR (gst_ae_encode_fixate_caps);
  bt->set_caps = GST_DEBUG_FUNCPTR (gst_ae_encode_set_caps);
  bt->transform_size = GST_DEBUG_FUNCPTR (gst_ae_encode_transform_size);
  bt->decide_allocation = GST_DEBUG_FUNCPTR (gst_ae_encode_decide_allocation);
  bt->before_transform = GST_DEBUG_FUNCPTR (gst_ae_encode_before_transform);
  bt->transform = GST_DEBUG_FUNCPTR (gst_ae_encode_transform);
}

static void
gst_ae_encode_init (GstAeEncode *self)
{
  gst_ae_model_slot_init (&self->slot, DEFAULT_RESOURCE, gst_ae_encode_check_model);
  gst_video_info_init (&self->info);
}
