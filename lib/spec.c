/* The layer specification language (docs/architecture.md) and the shape
 * rules of every layer kind. */
#include "nn.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LAYERS 256
#define MAX_DIM 65536

static const char *const act_names[] = { "linear", "relu", "lrelu", "sigmoid", "tanh" };
static const char *const loss_names[] = { "mse", "l1", "bce", "ssim" };
static const char *const kind_names[] = { "dense", "conv", "deconv", "bn", "act", "sample",
                                             "residual", "shuffle", "noise" };

const char *
ae_act_name (ae_act act)
{
  return (unsigned) act < 5 ? act_names[act] : "?";
}

const char *
ae_loss_name (ae_loss loss)
{
  return (unsigned) loss < 4 ? loss_names[loss] : "?";
}

int
ae_loss_from_name (const char *name, ae_loss *out)
{
  for (int i = 0; i < 4; i++)
    if (name && strcmp (name, loss_names[i]) == 0) {
      *out = (ae_loss) i;
      return 1;
    }
  return 0;
}

const char *
ae_layer_kind_name (layer_kind kind)
{
  return (unsigned) kind < sizeof kind_names / sizeof *kind_names ? kind_names[kind] : "?";
}

/* Parses a positive decimal integer of at most MAX_DIM. */
static int
parse_dim (const char *s, int *out)
{
  char *end;
  if (!isdigit ((unsigned char) *s))
    return 0;
  errno = 0;
  long v = strtol (s, &end, 10);
  if (errno || *end || v <= 0 || v > MAX_DIM)
    return 0;
  *out = (int) v;
  return 1;
}

static int
parse_nonneg (const char *s, int *out)
{
  if (strcmp (s, "0") == 0) {
    *out = 0;
    return 1;
  }
  return parse_dim (s, out);
}

/* "lrelu" or "lrelu=0.1" sets the slope. */
static int
parse_act (const char *s, ae_act *act, float *alpha)
{
  *alpha = 0.2f;
  if (strncmp (s, "lrelu=", 6) == 0) {
    char *end;
    double a = strtod (s + 6, &end);
    if (*end || !(a > 0.0 && a < 1.0))
      return 0;
    *act = AE_ACT_LRELU;
    *alpha = (float) a;
    return 1;
  }
  for (int i = 0; i < 5; i++)
    if (strcmp (s, act_names[i]) == 0) {
      *act = (ae_act) i;
      return 1;
    }
  return 0;
}

static int
parse_shape (const char *s, int *c, int *h, int *w)
{
  char buf[64];
  if (strlen (s) >= sizeof buf)
    return 0;
  strcpy (buf, s);
  char *x1 = strchr (buf, 'x');
  char *x2 = x1 ? strchr (x1 + 1, 'x') : NULL;
  if (!x1 || !x2)
    return 0;
  *x1 = *x2 = '\0';
  return parse_dim (buf, c) && parse_dim (x1 + 1, h) && parse_dim (x2 + 1, w);
}

#define MAX_FIELDS 8

/* Splits one layer token at ':' in place. */
static int
split_fields (char *tok, char **f)
{
  int n = 0;
  for (char *p = tok;; p++) {
    if (n == MAX_FIELDS)
      return -1;
    f[n++] = p;
    p = strchr (p, ':');
    if (!p)
      break;
    *p = '\0';
  }
  return n;
}

static ae_status
parse_geometry_layer (ae_layer *l, char **f, int n, ae_error *err)
{
  if (n < 5 || n > 6)
    return ae_fail (err, AE_E_ARG, "%s wants %s:OUT:KERNEL:STRIDE:PAD[:ACT]",
                    f[0], f[0]);
  if (!parse_dim (f[1], &l->out_c) || !parse_dim (f[2], &l->k) || !parse_dim (f[3], &l->s)
      || !parse_nonneg (f[4], &l->p))
    return ae_fail (err, AE_E_ARG, "%s: bad number in '%s:%s:%s:%s'", f[0], f[1], f[2], f[3], f[4]);
  if (l->k > 64 || l->s > l->k + 16 || l->p >= l->k)
    return ae_fail (err, AE_E_ARG, "%s: kernel %d, stride %d, pad %d out of range", f[0], l->k,
                    l->s, l->p);
  if (n == 6 && !parse_act (f[5], &l->act, &l->alpha))
    return ae_fail (err, AE_E_ARG, "unknown activation '%s'", f[5]);
  return AE_OK;
}

static ae_status
parse_dense (ae_layer *l, char **f, int n, ae_error *err)
{
  if (n < 2 || n > 4 || !parse_dim (f[1], &l->out_c))
    return ae_fail (err, AE_E_ARG, "dense wants dense:OUT[:ACT][:CxHxW]");
  for (int i = 2; i < n; i++) {
    if (strchr (f[i], 'x') && !strchr (f[i], '=')) {
      if (!parse_shape (f[i], &l->shape_c, &l->shape_h, &l->shape_w))
        return ae_fail (err, AE_E_ARG, "dense: bad output shape '%s'", f[i]);
      if ((long long) l->shape_c * l->shape_h * l->shape_w != l->out_c)
        return ae_fail (err, AE_E_ARG, "dense: shape %s does not hold %d values", f[i], l->out_c);
    } else if (!parse_act (f[i], &l->act, &l->alpha)) {
      return ae_fail (err, AE_E_ARG, "unknown activation '%s'", f[i]);
    }
  }
  if (!l->shape_c) {
    l->shape_c = l->out_c;
    l->shape_h = l->shape_w = 1;
  }
  return AE_OK;
}

static ae_status
parse_layer (char *tok, ae_layer *l, ae_error *err)
{
  char *f[MAX_FIELDS];
  int n = split_fields (tok, f);
  memset (l, 0, sizeof *l);
  l->act = AE_ACT_LINEAR;
  l->alpha = 0.2f;
  if (n < 0)
    return ae_fail (err, AE_E_ARG, "layer '%s' has too many fields", tok);
  if (strcmp (f[0], "dense") == 0) {
    l->kind = LAYER_DENSE;
    return parse_dense (l, f, n, err);
  }
  if (strcmp (f[0], "conv") == 0 || strcmp (f[0], "deconv") == 0) {
    l->kind = f[0][0] == 'c' ? LAYER_CONV : LAYER_DECONV;
    return parse_geometry_layer (l, f, n, err);
  }
  if (strcmp (f[0], "bn") == 0 || strcmp (f[0], "act") == 0 || strcmp (f[0], "noise") == 0) {
    l->kind = f[0][0] == 'b' ? LAYER_BN : f[0][0] == 'a' ? LAYER_ACT : LAYER_NOISE;
    if (n > 2 || (l->kind == LAYER_ACT && n != 2))
      return ae_fail (err, AE_E_ARG, "%s wants %s%s", f[0], f[0], n > 2 ? "[:ACT]" : ":ACT");
    if (n == 2 && !parse_act (f[1], &l->act, &l->alpha))
      return ae_fail (err, AE_E_ARG, "unknown activation '%s'", f[1]);
    return AE_OK;
  }
  if (strcmp (f[0], "sample") == 0) {
    l->kind = LAYER_SAMPLE;
    return n == 1 ? AE_OK : ae_fail (err, AE_E_ARG, "sample takes no fields");
  }
  if (strcmp (f[0], "shuffle") == 0) {
    l->kind = LAYER_SHUFFLE;
    if (n < 2 || n > 3 || !parse_dim (f[1], &l->s) || l->s > 8)
      return ae_fail (err, AE_E_ARG, "shuffle wants shuffle:FACTOR[:ACT], factor 1 to 8");
    if (n == 3 && !parse_act (f[2], &l->act, &l->alpha))
      return ae_fail (err, AE_E_ARG, "unknown activation '%s'", f[2]);
    return AE_OK;
  }
  if (strcmp (f[0], "residual") == 0) {
    l->kind = LAYER_RESIDUAL;
    return n == 1 ? AE_OK : ae_fail (err, AE_E_ARG, "residual takes no fields");
  }
  return ae_fail (err, AE_E_ARG, "unknown layer type '%s'", f[0]);
}

ae_status
ae_spec_parse (const char *spec, ae_layer **layers, int *count, ae_error *err)
{
  *layers = NULL;
  *count = 0;
  if (!spec || !*spec)
    return ae_fail (err, AE_E_ARG, "empty layer specification");
  char *copy = strdup (spec);
  ae_layer *v = calloc (MAX_LAYERS, sizeof *v);
  if (!copy || !v) {
    free (copy);
    free (v);
    return ae_fail (err, AE_E_NOMEM, "out of memory parsing layer specification");
  }
  int n = 0;
  ae_status st = AE_OK;
  char *save = NULL;
  for (char *tok = strtok_r (copy, ",", &save); tok && st == AE_OK;
       tok = strtok_r (NULL, ",", &save)) {
    while (isspace ((unsigned char) *tok))
      tok++;
    if (n == MAX_LAYERS)
      st = ae_fail (err, AE_E_ARG, "more than %d layers", MAX_LAYERS);
    else
      st = parse_layer (tok, &v[n++], err);
  }
  free (copy);
  if (st == AE_OK && n == 0)
    st = ae_fail (err, AE_E_ARG, "empty layer specification");
  if (st != AE_OK) {
    free (v);
    return st;
  }
  *layers = v;
  *count = n;
  return AE_OK;
}

static int
fits (long long v)
{
  return v > 0 && v <= MAX_DIM;
}

ae_status
ae_layer_out_shape (const ae_layer *l, const int in[3], const int net_in[3], int out[3],
                    ae_error *err)
{
  long long h = in[1], w = in[2];
  switch (l->kind) {
  case LAYER_DENSE:
    out[0] = l->shape_c;
    out[1] = l->shape_h;
    out[2] = l->shape_w;
    return AE_OK;
  case LAYER_CONV:
    h = (h + 2LL * l->p - l->k) / l->s + 1;
    w = (w + 2LL * l->p - l->k) / l->s + 1;
    if (in[1] + 2 * l->p < l->k || in[2] + 2 * l->p < l->k || !fits (h) || !fits (w))
      return ae_fail (err, AE_E_SHAPE, "conv kernel %d does not fit a %dx%d input", l->k,
                      in[2], in[1]);
    out[0] = l->out_c;
    break;
  case LAYER_DECONV:
    h = (h - 1) * l->s - 2LL * l->p + l->k;
    w = (w - 1) * l->s - 2LL * l->p + l->k;
    if (!fits (h) || !fits (w))
      return ae_fail (err, AE_E_SHAPE, "deconv output of a %dx%d input is empty", in[2], in[1]);
    out[0] = l->out_c;
    break;
  case LAYER_SAMPLE:
    if (in[0] % 2)
      return ae_fail (err, AE_E_SHAPE, "sample needs an even channel count (mu, log-variance), "
                      "got %d", in[0]);
    out[0] = in[0] / 2;
    break;
  case LAYER_SHUFFLE:
    if (in[0] % (l->s * l->s))
      return ae_fail (err, AE_E_SHAPE, "shuffle:%d needs a multiple of %d channels, got %d", l->s,
                      l->s * l->s, in[0]);
    h *= l->s;
    w *= l->s;
    if (!fits (h) || !fits (w))
      return ae_fail (err, AE_E_SHAPE, "shuffle output of a %dx%d input is too large", in[2], in[1]);
    out[0] = in[0] / (l->s * l->s);
    break;
  case LAYER_RESIDUAL:
    if (memcmp (in, net_in, 3 * sizeof *in) != 0)
      return ae_fail (err, AE_E_SHAPE, "residual adds the %dx%dx%d input to a %dx%dx%d map; "
                      "the shapes must match", net_in[0], net_in[2], net_in[1], in[0], in[2],
                      in[1]);
    out[0] = in[0];
    break;
  default:
    out[0] = in[0];
    break;
  }
  out[1] = (int) h;
  out[2] = (int) w;
  return AE_OK;
}

/* ---- Presets --------------------------------------------------------------- */

typedef struct spec_buf {
  char *p;
  size_t len, cap;
  int overflow;
} spec_buf;

static void AE_PRINTF (2, 3)
emit (spec_buf *b, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  int n = vsnprintf (b->p + b->len, b->cap - b->len, fmt, ap);
  va_end (ap);
  if (n < 0 || (size_t) n >= b->cap - b->len)
    b->overflow = 1;
  else
    b->len += (size_t) n;
}

/* Stride-2 stages until the map is at most 8 pixels on its longer side. */
static int
conv_stages (int h, int w)
{
  int stages = 2, m = h > w ? h : w;
  while ((m >> stages) > 8 && stages < 5)
    stages++;
  return stages;
}

static void
emit_conv_encoder (spec_buf *b, int stages)
{
  for (int i = 0; i < stages; i++)
    emit (b, "conv:%d:3:2:1,bn:lrelu,", i == 0 ? 32 : 64);
}

static void
emit_conv_decoder (spec_buf *b, int channels, int stages)
{
  for (int i = stages - 1; i > 0; i--)
    emit (b, "deconv:%d:4:2:1,bn:lrelu,", i == 1 ? 32 : 64);
  emit (b, "deconv:%d:4:2:1:sigmoid", channels);
}

ae_status
ae_arch_preset (const char *name, int channels, int height, int width, int latent, char *buf,
                size_t buflen, ae_error *err)
{
  spec_buf b = { buf, 0, buflen, 0 };
  if (channels <= 0 || height <= 0 || width <= 0 || latent <= 0 || !buf || !buflen)
    return ae_fail (err, AE_E_ARG, "preset: bad input shape or latent size");
  buf[0] = '\0';
  long long d = (long long) channels * height * width;
  if (strcmp (name, "dense") == 0) {
    emit (&b, "dense:256:relu,dense:%d,dense:256:relu,dense:%lld:sigmoid:%dx%dx%d", latent, d,
          channels, height, width);
  } else if (strcmp (name, "conv") == 0 || strcmp (name, "vae") == 0) {
    int st = conv_stages (height, width), m = 1 << st;
    if (height % m || width % m)
      return ae_fail (err, AE_E_SHAPE, "preset '%s' needs a size that is a multiple of %d, got "
                      "%dx%d", name, m, width, height);
    int bh = height / m, bw = width / m;
    emit_conv_encoder (&b, st);
    if (name[0] == 'v')
      emit (&b, "dense:%d,sample,", 2 * latent);
    else
      emit (&b, "dense:%d,", latent);
    emit (&b, "dense:%d:lrelu:64x%dx%d,", 64 * bh * bw, bh, bw);
    emit_conv_decoder (&b, channels, st);
  } else if (strcmp (name, "fconv") == 0) {
    if (height % 8 || width % 8)
      return ae_fail (err, AE_E_SHAPE, "preset 'fconv' trains on sizes that are multiples of 8, "
                      "got %dx%d", width, height);
    int lc = latent < 16 ? latent : 16;
    emit (&b, "conv:32:3:2:1,bn:lrelu,conv:64:3:2:1,bn:lrelu,conv:%d:3:2:1:lrelu,", lc);
    emit (&b, "deconv:64:4:2:1,bn:lrelu,deconv:32:4:2:1,bn:lrelu,deconv:%d:4:2:1:sigmoid",
          channels);
  } else {
    return ae_fail (err, AE_E_ARG, "unknown architecture preset '%s' (dense, conv, vae, fconv)",
                    name);
  }
  if (b.overflow)
    return ae_fail (err, AE_E_ARG, "preset specification longer than %zu bytes", buflen);
  return AE_OK;
}
