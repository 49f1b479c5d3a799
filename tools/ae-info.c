/* ae-info — show what a libae model file holds.
 *
 *   ae-info [--json] MODEL.aem
 *
 * Exit status: 0 success, 1 the file cannot be loaded, 2 usage error.
 */
#include <ae.h>

#include <glib.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define EXIT_USAGE 2

static const char *
yes_no (int v)
{
  return v ? "yes" : "no";
}

/* ---- Text output ------------------------------------------------------------ */

/* The shortest decimal that reads back as the same double: 0.1 rather
 * than 0.10000000000000001, yet never ambiguous. Locale-independent. */
static const char *
format_double (char buf[G_ASCII_DTOSTR_BUF_SIZE], double v)
{
  for (int digits = 15; digits < 17; digits++) {
    char fmt[8];
    g_snprintf (fmt, sizeof fmt, "%%.%dg", digits);
    g_ascii_formatd (buf, G_ASCII_DTOSTR_BUF_SIZE, fmt, v);
    if (g_ascii_strtod (buf, NULL) == v)
      return buf;
  }
  return g_ascii_formatd (buf, G_ASCII_DTOSTR_BUF_SIZE, "%.17g", v);
}

static void
print_meta_value (ae_meta_type type, int64_t i, double f, const char *s)
{
  switch (type) {
  case AE_META_INT:
    printf ("%" G_GINT64_FORMAT "\n", (gint64) i);
    break;
  case AE_META_FLOAT: {
    char buf[G_ASCII_DTOSTR_BUF_SIZE];
    printf ("%s\n", format_double (buf, f));
    break;
  }
  case AE_META_STR:
    printf ("%s\n", s ? s : "");
    break;
  default:
    printf ("?\n");
  }
}

static void
print_metadata (const ae_model *m)
{
  size_t n = ae_model_meta_count (m);
  int width = 0;
  for (size_t k = 0; k < n; k++) {
    const char *key;
    if (ae_model_meta_at (m, k, &key, NULL, NULL, NULL, NULL) == AE_OK)
      width = MAX (width, (int) strlen (key));
  }
  printf ("metadata (%zu):\n", n);
  for (size_t k = 0; k < n; k++) {
    const char *key, *s;
    ae_meta_type type;
    int64_t i;
    double f;
    if (ae_model_meta_at (m, k, &key, &type, &i, &f, &s) != AE_OK)
      continue;
    printf ("  %-*s  ", width, key);
    print_meta_value (type, i, f, s);
  }
}

/* "32 k3 s2 p1" for convolutions, "" otherwise: the shape columns already
 * say what a dense layer does. */
static void
layer_detail (const ae_layer_info *li, char *buf, size_t len)
{
  if (li->kernel > 0)
    g_snprintf (buf, len, "k%d s%d p%d", li->kernel, li->stride, li->pad);
  else
    buf[0] = '\0';
}

static void
shape_str (const int s[3], char *buf, size_t len)
{
  g_snprintf (buf, len, "%dx%dx%d", s[0], s[1], s[2]);
}

static void
print_layers (const ae_model *m)
{
  int n = ae_model_layer_count (m), latent = ae_model_latent_layer (m);
  printf ("layers (%d, shapes CxHxW):\n", n);
  printf ("  %3s  %-7s %-8s %-11s %-14s    %-14s %10s\n", "#", "type", "act", "kernel", "in",
          "out", "params");
  for (int k = 0; k < n; k++) {
    ae_layer_info li;
    char detail[48], in[48], out[48];
    if (ae_model_layer_info (m, k, &li) != AE_OK)
      continue;
    layer_detail (&li, detail, sizeof detail);
    shape_str (li.in_shape, in, sizeof in);
    shape_str (li.out_shape, out, sizeof out);
    printf ("  %3d  %-7s %-8s %-11s %-14s -> %-14s %10zu%s\n", k, li.type, ae_act_name (li.act),
            detail, in, out, li.params, k == latent ? "  <- latent" : "");
  }
}

/* The map and frame score aeanomaly computes, when they are not the plain
 * error map and its aggregate. */
static void
print_frame_score (const ae_model *m)
{
  ae_frame_scoring fs;
  if (ae_model_has_map_mean (m))
    printf ("anomaly map: divided by the mean map of normal frames (map.mean)\n");
  if (ae_model_frame_scoring (m, &fs, NULL) != AE_OK || fs.kind == AE_SCORE_RECON)
    return;
  printf ("frame score: %s", ae_score_kind_name (fs.kind));
  if (fs.kind == AE_SCORE_ELBO)
    printf (" (error map averaged over %d posterior samples, seed %" G_GUINT64_FORMAT
            ", + %g x KL, beta %g)", fs.elbo_samples, (guint64) fs.elbo_seed, fs.kl_weight,
            fs.elbo_beta);
  printf ("\n");
}

static void
print_text (const char *path, const ae_model *m)
{
  int c, h, w;
  ae_model_input_shape (m, &c, &h, &w);
  printf ("file:       %s\n", path);
  printf ("spec:       %s\n", ae_model_spec (m));
  printf ("input:      %dx%dx%d (CxHxW)\n", c, h, w);
  printf ("fully convolutional: %s", yes_no (ae_model_is_fully_convolutional (m)));
  if (ae_model_is_fully_convolutional (m))
    printf (" (sides multiple of %d)", ae_model_size_multiple (m));
  printf ("\nvariational: %s\n", yes_no (ae_model_is_vae (m)));
  if (ae_model_is_noise_conditioned (m))
    printf ("noise-conditioned: yes (told each frame's measured noise level)\n");
  printf ("latent:     %zu values", ae_model_latent_size (m, h, w));
  if (ae_model_latent_gaussian (m))
    printf (" (Gaussian of normal latents' %s stored: latent.mean, latent.whiten)",
            ae_latent_vector_name (ae_model_latent_vector (m)));
  printf ("\nparameters: %zu\n", ae_model_param_count (m));
  print_frame_score (m);
  printf ("\n");
  print_metadata (m);
  printf ("\n");
  print_layers (m);
}

/* ---- JSON output ---------------------------------------------------------------- */

/* A JSON string literal. Invalid UTF-8 (a file name in some legacy
 * encoding) becomes U+FFFD rather than an unparseable document. */
static void
json_string (GString *out, const char *s)
{
  gchar *valid = g_utf8_make_valid (s ? s : "", -1);
  g_string_append_c (out, '"');
  for (const unsigned char *p = (const unsigned char *) valid; *p; p++) {
    switch (*p) {
    case '"':
      g_string_append (out, "\\\"");
      break;
    case '\\':
      g_string_append (out, "\\\\");
      break;
    case '\n':
      g_string_append (out, "\\n");
      break;
    case '\r':
      g_string_append (out, "\\r");
      break;
    case '\t':
      g_string_append (out, "\\t");
      break;
    default:
      if (*p < 0x20 || *p == 0x7f)
        g_string_append_printf (out, "\\u%04x", *p);
      else
        g_string_append_c (out, (char) *p);
    }
  }
  g_string_append_c (out, '"');
  g_free (valid);
}

/* JSON has no NaN or infinity; null keeps the document valid. */
static void
json_double (GString *out, double v)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];
  if (isfinite (v))
    g_string_append (out, format_double (buf, v));
  else
    g_string_append (out, "null");
}

static void
json_shape (GString *out, const int s[3])
{
  g_string_append_printf (out, "[%d, %d, %d]", s[0], s[1], s[2]);
}

static void
json_metadata (GString *out, const ae_model *m)
{
  size_t n = ae_model_meta_count (m);
  g_string_append (out, "{");
  for (size_t k = 0, written = 0; k < n; k++) {
    const char *key, *s;
    ae_meta_type type;
    int64_t i;
    double f;
    if (ae_model_meta_at (m, k, &key, &type, &i, &f, &s) != AE_OK)
      continue;
    g_string_append (out, written++ ? ",\n    " : "\n    ");
    json_string (out, key);
    g_string_append (out, ": ");
    if (type == AE_META_INT)
      g_string_append_printf (out, "%" G_GINT64_FORMAT, (gint64) i);
    else if (type == AE_META_FLOAT)
      json_double (out, f);
    else
      json_string (out, s);
  }
  g_string_append (out, n ? "\n  }" : "}");
}

static void
json_layer (GString *out, const ae_layer_info *li, int index, gboolean latent)
{
  g_string_append_printf (out, "{\"index\": %d, \"type\": ", index);
  json_string (out, li->type);
  g_string_append (out, ", \"act\": ");
  json_string (out, ae_act_name (li->act));
  g_string_append_printf (out, ", \"out_channels\": %d, \"kernel\": %d, \"stride\": %d, "
                          "\"pad\": %d, \"in\": ", li->out_channels, li->kernel, li->stride,
                          li->pad);
  json_shape (out, li->in_shape);
  g_string_append (out, ", \"out\": ");
  json_shape (out, li->out_shape);
  g_string_append_printf (out, ", \"params\": %zu, \"latent\": %s}", li->params,
                          latent ? "true" : "false");
}

static void
json_layers (GString *out, const ae_model *m)
{
  int n = ae_model_layer_count (m), latent = ae_model_latent_layer (m);
  g_string_append (out, "[");
  for (int k = 0; k < n; k++) {
    ae_layer_info li;
    if (ae_model_layer_info (m, k, &li) != AE_OK)
      continue;
    g_string_append (out, k ? ",\n    " : "\n    ");
    json_layer (out, &li, k, k == latent);
  }
  g_string_append (out, n ? "\n  ]" : "]");
}

static void
print_json (const char *path, const ae_model *m)
{
  GString *out = g_string_new ("{\n  \"file\": ");
  int c, h, w;
  ae_model_input_shape (m, &c, &h, &w);
  json_string (out, path);
  g_string_append (out, ",\n  \"spec\": ");
  json_string (out, ae_model_spec (m));
  g_string_append_printf (out, ",\n  \"input\": {\"channels\": %d, \"height\": %d, "
                          "\"width\": %d}", c, h, w);
  g_string_append_printf (out, ",\n  \"fully_convolutional\": %s, \"size_multiple\": %d, "
                          "\"vae\": %s, \"noise_conditioned\": %s",
                          ae_model_is_fully_convolutional (m) ? "true" : "false",
                          ae_model_size_multiple (m), ae_model_is_vae (m) ? "true" : "false",
                          ae_model_is_noise_conditioned (m) ? "true" : "false");
  g_string_append_printf (out, ",\n  \"params\": %zu, \"latent_size\": %zu, "
                          "\"latent_layer\": %d, \"latent_gaussian\": %d", ae_model_param_count (m),
                          ae_model_latent_size (m, h, w), ae_model_latent_layer (m),
                          ae_model_latent_gaussian (m));
  g_string_append (out, ",\n  \"metadata\": ");
  json_metadata (out, m);
  g_string_append (out, ",\n  \"layers\": ");
  json_layers (out, m);
  g_string_append (out, "\n}\n");
  fputs (out->str, stdout);
  g_string_free (out, TRUE);
}

/* ---- Main ---------------------------------------------------------------------------- */

int
main (int argc, char **argv)
{
  gboolean json = FALSE;
  gchar **files = NULL;
  const GOptionEntry entries[] = {
    { "json", 'j', 0, G_OPTION_ARG_NONE, &json, "Print one JSON object", NULL },
    { G_OPTION_REMAINING, 0, 0, G_OPTION_ARG_FILENAME_ARRAY, &files, NULL, "MODEL.aem" },
    { NULL, 0, 0, 0, NULL, NULL, NULL },
  };
  GOptionContext *ctx = g_option_context_new ("MODEL.aem - show a model's metadata and layers");
  GError *error = NULL;
  int rc = 0;

  /* Localised messages, but numbers always formatted the C way. */
  setlocale (LC_ALL, "");
  setlocale (LC_NUMERIC, "C");
  g_option_context_add_main_entries (ctx, entries, NULL);
  if (!g_option_context_parse (ctx, &argc, &argv, &error)) {
    fprintf (stderr, "ae-info: %s\n", error->message);
    g_error_free (error);
    rc = EXIT_USAGE;
  } else if (!files || !files[0] || files[1]) {
    fprintf (stderr, "ae-info: expected one model file (ae-info [--json] MODEL.aem)\n");
    rc = EXIT_USAGE;
  } else {
    ae_error err = { 0 };
    ae_model *m = ae_model_load (files[0], &err);
    if (!m) {
      fprintf (stderr, "ae-info: %s\n", err.message);
      rc = 1;
    } else {
      if (json)
        print_json (files[0], m);
      else
        print_text (files[0], m);
      ae_model_free (m);
    }
  }
  g_option_context_free (ctx);
  g_strfreev (files);
  return rc;
}
