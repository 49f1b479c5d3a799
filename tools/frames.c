/* frames — load training frames through GStreamer.
 *
 * Every source becomes a pipeline ending in
 *   videoconvert ! videoscale ! capsfilter ! appsink
 * and the main thread pulls samples with a timeout while watching the bus,
 * so a broken or stalled source turns into an error instead of a hang.
 */
#include "frames.h"

#include <errno.h>
#include <glob.h>
#include <string.h>
#include <sys/stat.h>

#include <gst/app/gstappsink.h>
#include <gst/gst.h>
#include <gst/video/video.h>

/* How long one pull waits before the bus is checked again. */
#define PULL_TIMEOUT (100 * GST_MSECOND)
/* A source that delivers nothing for this long is declared stalled. */
#define STALL_TIMEOUT_S 30
/* Frames allocated up front; the array doubles from there. */
#define INITIAL_CAPACITY 64

#define CONVERT_NAME "frames_convert"
#define CAPS_NAME "frames_caps"
#define SINK_NAME "frames_sink"

G_DEFINE_QUARK (frames-error-quark, frames_error)

/* Frames accumulated over all the sources of one frames_load call. */
typedef struct {
  frames_set *out;
  size_t capacity;   /* frames that fit in out->x */
  size_t max_frames; /* 0 = unlimited */
  float lut[256];    /* byte -> byte / 255, exactly as the contract says */
} accum;

/* One pipeline and the elements the loader talks to. */
typedef struct {
  GstElement *pipeline;
  GstElement *convert;  /* uridecodebin's video pad is linked here */
  GstElement *capsfilter;
  GstElement *sink;
  const char *label;    /* prefix of error messages */
  gboolean name_element; /* name the failing element in error messages */
} source;

static gboolean
accum_full (const accum *acc)
{
  return acc->max_frames > 0 && acc->out->count >= acc->max_frames;
}

static size_t
frame_floats (const frames_set *set)
{
  return (size_t) set->channels * (size_t) set->height * (size_t) set->width;
}

/* The caps the appsink accepts: the pixel format always, the size once it
 * is known (requested, or fixed by the first frame) so every source is
 * scaled to the same shape. */
static GstCaps *
target_caps (const frames_set *set)
{
  GstCaps *caps = gst_caps_new_simple ("video/x-raw", "format", G_TYPE_STRING,
                                       set->channels == 1 ? "GRAY8" : "RGB", NULL);
  if (set->width > 0)
    gst_caps_set_simple (caps, "width", G_TYPE_INT, set->width, NULL);
  if (set->height > 0)
    gst_caps_set_simple (caps, "height", G_TYPE_INT, set->height, NULL);
  return caps;
}

static void
source_set_caps (source *src, const frames_set *set)
{
  GstCaps *caps = target_caps (set);
  g_object_set (src->capsfilter, "caps", caps, NULL);
  gst_caps_unref (caps);
}

/* ---- Copying samples -------------------------------------------------------- */

static gboolean
accum_reserve (accum *acc, GError **error)
{
  frames_set *set = acc->out;
  if (set->count < acc->capacity)
    return TRUE;
  size_t per = frame_floats (set);
  size_t cap = acc->capacity ? acc->capacity * 2 : INITIAL_CAPACITY;
  if (acc->max_frames > 0 && cap > acc->max_frames)
    cap = acc->max_frames;
  float *x = NULL;
  if (cap <= G_MAXSIZE / per)
    x = g_try_realloc_n (set->x, cap * per, sizeof (float));
  if (!x) {
    g_set_error (error, FRAMES_ERROR, FRAMES_ERROR_NOMEM,
                 "out of memory after %zu frames of %dx%d (use --max-frames or a smaller --size)",
                 set->count, set->width, set->height);
    return FALSE;
  }
  set->x = x;
  acc->capacity = cap;
  return TRUE;
}

/* Converts one mapped frame to planar floats. The component macros honour
 * the stride and offsets of the video meta, so padded rows are skipped. */
static void
copy_frame (const accum *acc, const GstVideoFrame *vf, float *dst)
{
  const frames_set *set = acc->out;
  for (int c = 0; c < set->channels; c++) {
    const guint8 *plane = GST_VIDEO_FRAME_COMP_DATA (vf, c);
    int stride = GST_VIDEO_FRAME_COMP_STRIDE (vf, c);
    int pstride = GST_VIDEO_FRAME_COMP_PSTRIDE (vf, c);
    for (int y = 0; y < set->height; y++) {
      const guint8 *row = plane + (gsize) y * stride;
      float *out = dst + ((size_t) c * set->height + y) * set->width;
      for (int x = 0; x < set->width; x++)
        out[x] = acc->lut[row[x * pstride]];
    }
  }
}

/* The first frame decides the size when none was requested; pin it in the
 * capsfilter so a mid-stream resolution change is scaled rather than
 * failing (frames already queued at the old size are still caught). */
static gboolean
check_frame_size (accum *acc, source *src, const GstVideoInfo *info, GError **error)
{
  frames_set *set = acc->out;
  int w = GST_VIDEO_INFO_WIDTH (info), h = GST_VIDEO_INFO_HEIGHT (info);
  if (set->width == 0 || set->height == 0) {
    set->width = w;
    set->height = h;
    source_set_caps (src, set);
  }
  if (w != set->width || h != set->height) {
    g_set_error (error, FRAMES_ERROR, FRAMES_ERROR_SIZE,
                 "%s: frame %zu is %dx%d but earlier frames are %dx%d (give a size)", src->label,
                 set->count + 1, w, h, set->width, set->height);
    return FALSE;
  }
  return TRUE;
}

static gboolean
accum_add_sample (accum *acc, source *src, GstSample *sample, GError **error)
{
  GstCaps *caps = gst_sample_get_caps (sample);
  GstBuffer *buf = gst_sample_get_buffer (sample);
  GstVideoInfo info;
  GstVideoFrame vf;

  if (!caps || !buf || !gst_video_info_from_caps (&info, caps)) {
    g_set_error (error, FRAMES_ERROR, FRAMES_ERROR_STREAM, "%s: sample without raw video caps",
                 src->label);
    return FALSE;
  }
  if (!check_frame_size (acc, src, &info, error) || !accum_reserve (acc, error))
    return FALSE;
  if (!gst_video_frame_map (&vf, &info, buf, GST_MAP_READ)) {
    g_set_error (error, FRAMES_ERROR, FRAMES_ERROR_STREAM, "%s: cannot map video frame %zu",
                 src->label, acc->out->count + 1);
    return FALSE;
  }
  copy_frame (acc, &vf, acc->out->x + acc->out->count * frame_floats (acc->out));
  gst_video_frame_unmap (&vf);
  acc->out->count++;
  return TRUE;
}

/* ---- Running a pipeline ----------------------------------------------------- */

/* One line from an ERROR message. The message alone is often vague
 * ("Resource not found.", "Internal data stream error."); the details after
 * the source location in the debug string name the file or the flow
 * return, so they are appended in parentheses. */
static void
set_error_from_message (const source *src, GstMessage *msg, GError **error)
{
  GError *gerr = NULL;
  gchar *debug = NULL;
  gst_message_parse_error (msg, &gerr, &debug);

  const char *details = debug ? strchr (debug, '\n') : NULL;
  gchar *trimmed = g_strstrip (g_strdup (details ? details + 1 : ""));
  gchar *extra = trimmed[0] ? g_strdup_printf (" (%s)", trimmed) : g_strdup ("");
  g_free (trimmed);
  /* In a user's description the failing element is worth naming. */
  gchar *element = src->name_element
                       ? g_strdup_printf ("%s: ", GST_OBJECT_NAME (GST_MESSAGE_SRC (msg)))
                       : g_strdup ("");
  gchar *line = g_strdup_printf ("%s: %s%s%s", src->label, element, gerr->message, extra);
  /* Callers print one line; some plugins put newlines in messages. */
  g_set_error_literal (error, FRAMES_ERROR, FRAMES_ERROR_STREAM, g_strdelimit (line, "\r\n", ' '));
  g_free (line);
  g_free (element);
  g_free (extra);
  g_error_free (gerr);
  g_free (debug);
}

/* Returns TRUE and fills `error` if the bus holds an ERROR message. */
static gboolean
bus_has_error (const source *src, GstBus *bus, GError **error)
{
  GstMessage *msg = gst_bus_pop_filtered (bus, GST_MESSAGE_ERROR);
  if (!msg)
    return FALSE;
  set_error_from_message (src, msg, error);
  gst_message_unref (msg);
  return TRUE;
}

static gboolean
pull_loop (accum *acc, source *src, GstBus *bus, GError **error)
{
  GstAppSink *sink = GST_APP_SINK (src->sink);
  gint64 last_frame = g_get_monotonic_time ();

  while (!accum_full (acc)) {
    if (bus_has_error (src, bus, error))
      return FALSE;
    GstSample *sample = gst_app_sink_try_pull_sample (sink, PULL_TIMEOUT);
    if (sample) {
      gboolean ok = accum_add_sample (acc, src, sample, error);
      gst_sample_unref (sample);
      if (!ok)
        return FALSE;
      last_frame = g_get_monotonic_time ();
      continue;
    }
    if (gst_app_sink_is_eos (sink))
      return !bus_has_error (src, bus, error);
    if (g_get_monotonic_time () - last_frame > STALL_TIMEOUT_S * G_USEC_PER_SEC) {
      g_set_error (error, FRAMES_ERROR, FRAMES_ERROR_TIMEOUT, "%s: no frame for %d s, giving up",
                   src->label, STALL_TIMEOUT_S);
      return FALSE;
    }
  }
  return TRUE;
}

/* Plays the pipeline until EOS, an error, or max_frames; always leaves it
 * in NULL state (which also stops an endless source early). */
static gboolean
source_run (accum *acc, source *src, GError **error)
{
  GstBus *bus = gst_element_get_bus (src->pipeline);
  gboolean ok;

  if (gst_element_set_state (src->pipeline, GST_STATE_PLAYING) == GST_STATE_CHANGE_FAILURE) {
    ok = FALSE;
    if (!bus_has_error (src, bus, error))
      g_set_error (error, FRAMES_ERROR, FRAMES_ERROR_STREAM, "%s: pipeline does not start",
                   src->label);
  } else {
    ok = pull_loop (acc, src, bus, error);
  }
  gst_element_set_state (src->pipeline, GST_STATE_NULL);
  gst_object_unref (bus);
  return ok;
}

static void
configure_sink (GstElement *sink)
{
  /* sync=false: decode as fast as possible. A short queue gives
   * back-pressure so a fast source cannot buffer the whole file. */
  g_object_set (sink, "sync", FALSE, "max-buffers", 4, "drop", FALSE, NULL);
}

static void
source_clear (source *src)
{
  g_clear_object (&src->convert);
  g_clear_object (&src->capsfilter);
  g_clear_object (&src->sink);
  g_clear_object (&src->pipeline);
}

/* ---- uridecodebin sources --------------------------------------------------- */

static gboolean
pad_is_video (GstPad *pad)
{
  GstCaps *caps = gst_pad_get_current_caps (pad);
  if (!caps)
    caps = gst_pad_query_caps (pad, NULL);
  gboolean video = caps && !gst_caps_is_empty (caps) &&
                   g_str_has_prefix (gst_structure_get_name (gst_caps_get_structure (caps, 0)),
                                     "video/");
  if (caps)
    gst_caps_unref (caps);
  return video;
}

/* Links the first video pad; other streams stay unlinked, which decodebin
 * tolerates as long as one stream is linked. */
static void
on_pad_added (GstElement *dec, GstPad *pad, gpointer user)
{
  GstElement *convert = user;
  GstPad *sinkpad = gst_element_get_static_pad (convert, "sink");
  (void) dec;
  if (!gst_pad_is_linked (sinkpad) && pad_is_video (pad))
    gst_pad_link (pad, sinkpad);
  gst_object_unref (sinkpad);
}

/* Without a video stream nothing would ever reach the appsink; turn that
 * into an ERROR on the bus so the pull loop reports it. */
static void
on_no_more_pads (GstElement *dec, gpointer user)
{
  GstElement *convert = user;
  GstPad *sinkpad = gst_element_get_static_pad (convert, "sink");
  if (!gst_pad_is_linked (sinkpad)) {
    GError *e = g_error_new_literal (GST_STREAM_ERROR, GST_STREAM_ERROR_WRONG_TYPE,
                                     "no video stream");
    gst_element_post_message (dec, gst_message_new_error (GST_OBJECT (dec), e, NULL));
    g_error_free (e);
  }
  gst_object_unref (sinkpad);
}

static GstElement *
make_element (const char *factory, const char *name, GError **error)
{
  GstElement *e = gst_element_factory_make (factory, name);
  if (!e)
    g_set_error (error, FRAMES_ERROR, FRAMES_ERROR_PIPELINE,
                 "GStreamer element '%s' is missing (check the GStreamer plugin installation)",
                 factory);
  return e;
}

static gboolean
build_uri_source (source *src, const char *uri, GError **error)
{
  GstElement *dec = make_element ("uridecodebin", NULL, error);
  GstElement *convert = dec ? make_element ("videoconvert", CONVERT_NAME, error) : NULL;
  GstElement *scale = convert ? make_element ("videoscale", NULL, error) : NULL;
  GstElement *filter = scale ? make_element ("capsfilter", CAPS_NAME, error) : NULL;
  GstElement *sink = filter ? make_element ("appsink", SINK_NAME, error) : NULL;

  if (!sink) {
    GstElement *made[] = { dec, convert, scale, filter };
    for (guint i = 0; i < G_N_ELEMENTS (made); i++)
      if (made[i])
        gst_object_unref (gst_object_ref_sink (made[i]));
    return FALSE;
  }

  /* Audio tracks are decoded and left unlinked (decodebin tolerates that
   * while the video pad is linked). Restricting "caps" to video would skip
   * that work but turn an audio-only file into a misleading
   * "missing plug-in" error instead of "no video stream". */
  g_object_set (dec, "uri", uri, NULL);
  configure_sink (sink);

  src->pipeline = gst_object_ref_sink (gst_pipeline_new (NULL));
  gst_bin_add_many (GST_BIN (src->pipeline), dec, convert, scale, filter, sink, NULL);
  if (!gst_element_link_many (convert, scale, filter, sink, NULL)) {
    g_set_error (error, FRAMES_ERROR, FRAMES_ERROR_PIPELINE, "cannot link the conversion chain");
    return FALSE;
  }
  g_signal_connect (dec, "pad-added", G_CALLBACK (on_pad_added), convert);
  g_signal_connect (dec, "no-more-pads", G_CALLBACK (on_no_more_pads), convert);
  src->convert = gst_object_ref (convert);
  src->capsfilter = gst_object_ref (filter);
  src->sink = gst_object_ref (sink);
  return TRUE;
}

static gboolean
load_uri (accum *acc, const char *uri, const char *label, GError **error)
{
  source src = { .label = label };
  gboolean ok = build_uri_source (&src, uri, error);
  if (ok) {
    source_set_caps (&src, acc->out);
    ok = source_run (acc, &src, error);
  }
  source_clear (&src);
  return ok;
}

static gboolean
load_file (accum *acc, const char *path, GError **error)
{
  GError *uri_error = NULL;
  gchar *uri = gst_filename_to_uri (path, &uri_error);
  if (!uri) {
    g_set_error (error, FRAMES_ERROR, FRAMES_ERROR_NOT_FOUND, "%s: %s", path,
                 uri_error->message);
    g_error_free (uri_error);
    return FALSE;
  }
  gboolean ok = load_uri (acc, uri, path, error);
  g_free (uri);
  return ok;
}

/* ---- gst-launch descriptions -------------------------------------------------- */

/* Appends the conversion chain to the user's description; trailing
 * whitespace and a dangling "!" are tolerated. */
static gchar *
full_description (const char *desc)
{
  gchar *user = g_strstrip (g_strdup (desc));
  gsize len = strlen (user);
  if (len > 0 && user[len - 1] == '!')
    user[len - 1] = '\0';
  gchar *full = g_strdup_printf ("%s ! videoconvert name=" CONVERT_NAME
                                 " ! videoscale ! capsfilter name=" CAPS_NAME
                                 " ! appsink name=" SINK_NAME, user);
  g_free (user);
  return full;
}

static gboolean
build_launch_source (source *src, const char *desc, GError **error)
{
  GError *parse_error = NULL;
  gchar *full = full_description (desc);
  GstElement *p = gst_parse_launch_full (full, NULL, GST_PARSE_FLAG_FATAL_ERRORS, &parse_error);
  g_free (full);

  if (!p || !GST_IS_BIN (p)) {
    g_set_error (error, FRAMES_ERROR, FRAMES_ERROR_PIPELINE, "bad pipeline '%s': %s", desc,
                 parse_error ? parse_error->message : "not a pipeline");
    g_clear_error (&parse_error);
    if (p)
      gst_object_unref (gst_object_ref_sink (p));
    return FALSE;
  }
  g_clear_error (&parse_error);
  src->pipeline = gst_object_ref_sink (p);
  src->convert = gst_bin_get_by_name (GST_BIN (p), CONVERT_NAME);
  src->capsfilter = gst_bin_get_by_name (GST_BIN (p), CAPS_NAME);
  src->sink = gst_bin_get_by_name (GST_BIN (p), SINK_NAME);
  if (!src->convert || !src->capsfilter || !src->sink || !GST_IS_APP_SINK (src->sink)) {
    g_set_error (error, FRAMES_ERROR, FRAMES_ERROR_PIPELINE,
                 "bad pipeline '%s': the description must not use the names " CONVERT_NAME
                 ", " CAPS_NAME " or " SINK_NAME, desc);
    return FALSE;
  }
  configure_sink (src->sink);
  return TRUE;
}

static gboolean
load_launch (accum *acc, const char *desc, GError **error)
{
  source src = { .label = "pipeline", .name_element = TRUE };
  gboolean ok = build_launch_source (&src, desc, error);
  if (ok) {
    source_set_caps (&src, acc->out);
    ok = source_run (acc, &src, error);
  }
  source_clear (&src);
  return ok;
}

/* ---- File lists ------------------------------------------------------------- */

/* Extensions picked from a directory; anything else (notes, labels,
 * checksums) is skipped rather than failing to decode. */
static gboolean
is_media_name (const char *name)
{
  static const char *const exts[] = {
    "png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp", "pnm", "pgm", "ppm", "pbm",
    "avi", "mkv", "mp4", "m4v", "mov", "webm", "ogv", "ogg", "mpg", "mpeg", "ts", "y4m",
  };
  const char *dot = strrchr (name, '.');
  if (!dot || name[0] == '.')
    return FALSE;
  for (guint i = 0; i < G_N_ELEMENTS (exts); i++)
    if (g_ascii_strcasecmp (dot + 1, exts[i]) == 0)
      return TRUE;
  return FALSE;
}

static gint
compare_paths (gconstpointer a, gconstpointer b)
{
  /* Byte order, not the locale's collation, so the frame order (and so a
   * seeded training run) is the same everywhere. */
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static GPtrArray *
list_directory (const char *dir, GError **error)
{
  GError *dir_error = NULL;
  GDir *d = g_dir_open (dir, 0, &dir_error);
  if (!d) {
    g_set_error (error, FRAMES_ERROR, FRAMES_ERROR_NOT_FOUND, "%s", dir_error->message);
    g_error_free (dir_error);
    return NULL;
  }
  GPtrArray *files = g_ptr_array_new_with_free_func (g_free);
  const char *name;
  while ((name = g_dir_read_name (d))) {
    gchar *path = g_build_filename (dir, name, NULL);
    if (is_media_name (name) && g_file_test (path, G_FILE_TEST_IS_REGULAR))
      g_ptr_array_add (files, path);
    else
      g_free (path);
  }
  g_dir_close (d);
  g_ptr_array_sort (files, compare_paths);
  if (files->len == 0) {
    g_set_error (error, FRAMES_ERROR, FRAMES_ERROR_NOT_FOUND,
                 "%s: no image or video files in this directory", dir);
    g_ptr_array_unref (files);
    return NULL;
  }
  return files;
}

static GPtrArray *
list_glob (const char *pattern, GError **error)
{
  glob_t g;
  int rc = glob (pattern, 0, NULL, &g);
  GPtrArray *files = g_ptr_array_new_with_free_func (g_free);
  if (rc == 0)
    for (size_t i = 0; i < g.gl_pathc; i++)
      if (g_file_test (g.gl_pathv[i], G_FILE_TEST_IS_REGULAR))
        g_ptr_array_add (files, g_strdup (g.gl_pathv[i]));
  if (rc == 0 || rc == GLOB_NOMATCH)
    globfree (&g);
  g_ptr_array_sort (files, compare_paths);
  if (files->len == 0) {
    g_set_error (error, FRAMES_ERROR, FRAMES_ERROR_NOT_FOUND, "no files match '%s'", pattern);
    g_ptr_array_unref (files);
    return NULL;
  }
  return files;
}

static gboolean
load_files (accum *acc, GPtrArray *files, guint *used, GError **error)
{
  for (*used = 0; *used < files->len && !accum_full (acc); (*used)++)
    if (!load_file (acc, g_ptr_array_index (files, *used), error))
      return FALSE;
  return TRUE;
}

/* ---- Entry point -------------------------------------------------------------- */

typedef enum { KIND_FILE, KIND_DIR, KIND_GLOB, KIND_URI, KIND_PIPELINE } input_kind;

static gboolean
classify_input (const char *input, input_kind *kind, GError **error)
{
  struct stat st;
  if (stat (input, &st) == 0) {
    *kind = S_ISDIR (st.st_mode) ? KIND_DIR : KIND_FILE;
    return TRUE;
  }
  int saved = errno;
  if (gst_uri_is_valid (input)) {
    *kind = KIND_URI;
    return TRUE;
  }
  if (strpbrk (input, "*?[")) {
    *kind = KIND_GLOB;
    return TRUE;
  }
  g_set_error (error, FRAMES_ERROR, FRAMES_ERROR_NOT_FOUND, "%s: %s", input, g_strerror (saved));
  return FALSE;
}

static gboolean
load_list (accum *acc, GPtrArray *files, guint *used, GError **error)
{
  if (!files)
    return FALSE;
  gboolean ok = load_files (acc, files, used, error);
  g_ptr_array_unref (files);
  return ok;
}

static gboolean
load_kind (accum *acc, input_kind kind, const char *input, guint *files_used, GError **error)
{
  switch (kind) {
  case KIND_PIPELINE:
    return load_launch (acc, input, error);
  case KIND_URI:
    return load_uri (acc, input, input, error);
  case KIND_FILE:
    return load_file (acc, input, error);
  case KIND_DIR:
    return load_list (acc, list_directory (input, error), files_used, error);
  case KIND_GLOB:
    return load_list (acc, list_glob (input, error), files_used, error);
  }
  g_assert_not_reached ();
}

static gchar *
describe (const frames_set *set, input_kind kind, const char *input, guint files_used)
{
  static const char *const kind_names[] = { "file", "directory", "glob", "uri", "pipeline" };
  gchar *files = kind == KIND_DIR || kind == KIND_GLOB
                     ? g_strdup_printf ("%u file%s, ", files_used, files_used == 1 ? "" : "s")
                     : g_strdup ("");
  /* File names need not be UTF-8; the model's metadata strings must be. */
  gchar *shown = kind == KIND_PIPELINE || kind == KIND_URI ? g_utf8_make_valid (input, -1)
                                                           : g_filename_display_name (input);
  gchar *d = g_strdup_printf ("%s '%s' (%s%zu frame%s, %dx%d %s)", kind_names[kind], shown,
                              files, set->count, set->count == 1 ? "" : "s", set->width,
                              set->height, set->channels == 1 ? "gray" : "RGB");
  g_free (shown);
  g_free (files);
  return d;
}

static gboolean
check_args (const char *input, const char *pipeline, int width, int height, int channels,
            GError **error)
{
  const char *msg = NULL;
  if ((input == NULL) == (pipeline == NULL))
    msg = "give exactly one of an input and a pipeline";
  else if (width < 0 || height < 0)
    msg = "negative frame size";
  else if (channels != 1 && channels != 3)
    msg = "channels must be 1 (gray) or 3 (RGB)";
  if (msg)
    g_set_error_literal (error, FRAMES_ERROR, FRAMES_ERROR_ARG, msg);
  return msg == NULL;
}

gboolean
frames_load (const char *input, const char *pipeline, int width, int height, int channels,
             size_t max_frames, frames_set *out, GError **error)
{
  g_return_val_if_fail (out != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  memset (out, 0, sizeof *out);
  if (!check_args (input, pipeline, width, height, channels, error))
    return FALSE;
  if (!gst_is_initialized () && !gst_init_check (NULL, NULL, error))
    return FALSE;

  accum acc = { .out = out, .max_frames = max_frames };
  for (int i = 0; i < 256; i++)
    acc.lut[i] = (float) i / 255.0f;
  out->channels = channels;
  out->width = width;
  out->height = height;

  input_kind kind = KIND_PIPELINE;
  guint files_used = 0;
  const char *what = pipeline ? pipeline : input;
  gboolean ok = (pipeline || classify_input (input, &kind, error)) &&
                load_kind (&acc, kind, what, &files_used, error);
  if (ok && out->count == 0) {
    g_set_error (error, FRAMES_ERROR, FRAMES_ERROR_NO_FRAMES, "%s: no video frames",
                 kind == KIND_PIPELINE ? "pipeline" : input);
    ok = FALSE;
  }
  if (!ok) {
    frames_set_clear (out);
    return FALSE;
  }
  /* Give back the unused tail of the last doubling. */
  out->x = g_realloc_n (out->x, out->count * frame_floats (out), sizeof (float));
  out->description = describe (out, kind, what, files_used);
  return TRUE;
}

void
frames_set_clear (frames_set *set)
{
  if (!set)
    return;
  g_free (set->x);
  g_free (set->description);
  memset (set, 0, sizeof *set);
}
