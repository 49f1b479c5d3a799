/* frames — load training frames through GStreamer.
 *
 * Decodes images, videos, URIs or an arbitrary gst-launch description into
 * one contiguous float array (NCHW, values pixel / 255), the layout libae's
 * ae_dataset expects.
 */
#ifndef FRAMES_H
#define FRAMES_H

#include <glib.h>
#include <stddef.h>

G_BEGIN_DECLS

#define FRAMES_ERROR (frames_error_quark ())
GQuark frames_error_quark (void);

typedef enum {
  FRAMES_ERROR_ARG,       /* bad arguments (both or neither source given...) */
  FRAMES_ERROR_NOT_FOUND, /* file, directory or glob matches nothing */
  FRAMES_ERROR_PIPELINE,  /* pipeline description does not parse */
  FRAMES_ERROR_STREAM,    /* GStreamer reported an error while running */
  FRAMES_ERROR_NO_FRAMES, /* the source produced no video frames */
  FRAMES_ERROR_SIZE,      /* frames of different sizes */
  FRAMES_ERROR_NOMEM,     /* frames do not fit in memory */
  FRAMES_ERROR_TIMEOUT    /* the source stalled */
} FramesError;

typedef struct {
  float *x;            /* count * channels * height * width floats, NCHW */
  size_t count;
  int channels, height, width;
  char *description;   /* human summary for provenance metadata */
} frames_set;

/* Loads frames from exactly one of `input` (a file, a directory of image or
 * video files, a glob(3) pattern, or a URI) or `pipeline` (a gst-launch
 * description producing raw video; conversion and the sink are appended).
 *
 * width/height: 0 keeps the size of the first frame (later frames are
 * scaled to it). channels: 1 (GRAY8) or 3 (RGB). max_frames: 0 = all.
 * On failure returns FALSE, sets `error` to a one-line message and leaves
 * `out` zeroed. */
gboolean frames_load (const char *input, const char *pipeline, int width, int height,
                      int channels, size_t max_frames, frames_set *out, GError **error);

/* Frees the contents of `set` and zeroes it; safe on a zeroed set. */
void frames_set_clear (frames_set *set);

G_END_DECLS

#endif /* FRAMES_H */
