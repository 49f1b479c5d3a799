/* Shared adaptation between GStreamer and libae for the autoencoder
 * plugin: model loading (file or embedded default), hot-swapping a model
 * between two frames, and reading/writing video frames as float planes. */
#ifndef GST_AE_COMMON_H
#define GST_AE_COMMON_H

#include <ae.h>
#include <gst/gst.h>
#include <gst/video/video.h>

G_BEGIN_DECLS

#define GST_AE_RESOURCE_PREFIX "/org/freedesktop/gstreamer/autoencoder/"

/* Loads `location` or, when it is NULL or empty, the embedded model named
 * `resource` (a file under plugins/models/). */
ae_model *gst_ae_model_load (const gchar *location, const gchar *resource, GError **error);

/* "what" for messages: the file's path or "embedded default NAME". */
gchar *gst_ae_model_origin (const gchar *location, const gchar *resource);

/* Does `model` fit the element's current stream? Called off the streaming
 * thread for hot-swaps, so it must only read state under the object lock. */
typedef gboolean (*GstAeModelCheck) (GstElement *element, const ae_model *model,
                                     GError **error);

/* A model that the `model` property can replace while PLAYING. The
 * streaming thread owns `active`; a loader thread fills `pending`, which the
 * streaming thread adopts before its next frame (gst_ae_model_slot_swap). */
typedef struct {
  GMutex lock;
  ae_model *active;
  ae_model *pending;
  gchar *location;   /* the `model` property */
  guint request;     /* increases with every property change */
  GThread *loader;
  const gchar *resource;
  GstAeModelCheck check;
} GstAeModelSlot;

void gst_ae_model_slot_init (GstAeModelSlot *slot, const gchar *resource, GstAeModelCheck check);
void gst_ae_model_slot_clear (GstAeModelSlot *slot);
/* The property: getter returns a copy. */
gchar *gst_ae_model_slot_dup_location (GstAeModelSlot *slot);
/* Sets the property. When `running`, loads in a thread and posts a
 * WARNING if the file does not load or fit; the old model stays. */
void gst_ae_model_slot_set_location (GstAeModelSlot *slot, GstElement *element,
                                     const gchar *location, gboolean running);
/* Changes the embedded model used while `model` is unset (a static
 * string); loads it like a new location when it is in use. */
void gst_ae_model_slot_set_resource (GstAeModelSlot *slot, GstElement *element,
                                     const gchar *resource, gboolean running);
/* Loads synchronously (start of stream). On failure posts nothing itself:
 * the caller raises GST_ELEMENT_ERROR with the message. */
gboolean gst_ae_model_slot_load (GstAeModelSlot *slot, GstElement *element, GError **error);
/* Streaming thread: adopts a pending model. When the active model
 * changed, *changed is TRUE and the previous model is returned: the caller
 * frees its sessions on it first, then the model (sessions point to it). */
ae_model *gst_ae_model_slot_swap (GstAeModelSlot *slot, gboolean *changed);
/* Streaming thread at stop: drops the active model (and any pending one). */
void gst_ae_model_slot_unload (GstAeModelSlot *slot);

/* ---- Frames as float planes in [0,1] -------------------------------------------- */

/* Luma (GRAY8 and YUV: the Y plane; RGB: BT.601 luma) into w*h floats. */
void gst_ae_frame_read_luma (const GstVideoFrame *frame, float *dst);
/* Only rows [y0, y1) (dst is still the whole w x h plane). */
void gst_ae_frame_read_luma_rows (const GstVideoFrame *frame, float *dst, int y0, int y1);
/* Adds (new - old) luma to every pixel: YUV writes Y, RGB adds the same
 * delta to R, G and B, which leaves BT.601 chroma unchanged. Alpha and
 * chroma planes are untouched. `blend` in [0,1] mixes new with old. */
void gst_ae_frame_write_luma (GstVideoFrame *frame, const float *old_luma, const float *new_luma,
                              float blend);
void gst_ae_frame_write_luma_rows (GstVideoFrame *frame, const float *old_luma,
                                   const float *new_luma, float blend, int y0, int y1);
/* Reads rectangle `roi` of the frame as `channels` dw x dh planes (dw >=
 * roi->w, dh >= roi->h), replicating its last row and column into the
 * padding; only the rectangle's pixels are converted. 1 channel: the luma
 * as above; 3: RGB formats directly, YUV via BT.601 (chroma upsampled by
 * replication), GRAY8 replicated. */
void gst_ae_frame_read_roi (const GstVideoFrame *frame, int channels, const GstVideoRectangle *roi,
                            float *dst, gint dw, gint dh);

/* Area-average (down) or bilinear (up) resampling of `channels` planes. */
void gst_ae_resample (const float *src, int sw, int sh, float *dst, int dw, int dh, int channels);

/* A model's input from rectangle `roi` of the frame: read straight into
 * the aw x ah `input` planes (padded by replication), or, with a `crop`
 * buffer of roi->w x roi->h planes, read there and resampled to aw x ah
 * (fixed-size models). */
void gst_ae_frame_read_network_input (const GstVideoFrame *frame, int channels,
                                      const GstVideoRectangle *roi, float *crop, float *input,
                                      gint aw, gint ah);

/* Worker threads for frame stripes: `requested`, or one per core (at most
 * `max`) for 0. With several, OpenBLAS goes to one thread (process-wide: it
 * has no other setting) so that the stripes, not its threads, use the cores. */
gint gst_ae_stripe_threads (gint requested, gint max);

/* The `roi` property: "x,y,w,h" (also "<x,y,w,h>"), x, y >= 0, w, h > 0.
 * An empty or NULL string is valid and means the whole frame (*set FALSE).
 * Returns FALSE on anything else. */
gboolean gst_ae_parse_roi (const gchar *str, gboolean *set, GstVideoRectangle *r);

/* Formats every element accepts (a caps string list). */
#define GST_AE_VIDEO_FORMATS \
  "{ GRAY8, I420, YV12, NV12, Y444, RGB, BGR, RGBx, BGRx, xRGB, xBGR, RGBA, BGRA }"

G_END_DECLS

#endif /* GST_AE_COMMON_H */
