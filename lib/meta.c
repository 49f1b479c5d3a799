/* Typed key/value metadata, kept in insertion order.
 *
 * Models carry a few dozen entries, so a linear search is the whole index.
 * The invariants every entry keeps (the .aem writer relies on them): the
 * key is 1..255 printable ASCII characters without spaces, and a string
 * value is a private, valid UTF-8 copy. */
#include "ae_internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_KEY 255

void
ae_meta_init (ae_meta *meta)
{
  meta->v = NULL;
  meta->n = meta->cap = 0;
}

void
ae_meta_free (ae_meta *meta)
{
  if (!meta)
    return;
  for (size_t i = 0; i < meta->n; i++) {
    free (meta->v[i].key);
    free (meta->v[i].s);
  }
  free (meta->v);
  ae_meta_init (meta);
}

/* Keys are dotted printable ASCII without spaces ("train.epochs"); the
 * same rule as format.c applies to keys it reads. */
static int
valid_key (const char *key)
{
  size_t n = key ? strlen (key) : 0;
  if (n == 0 || n > MAX_KEY)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (key[i] <= ' ' || key[i] > '~')
      return 0;
  return 1;
}

/* Strict UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing past
 * U+10FFFF, so every consumer (GStreamer structures, JSON, terminals) can
 * take the strings as they are. */
static int
valid_utf8 (const char *str)
{
  const unsigned char *s = (const unsigned char *) str;
  while (*s) {
    unsigned c = *s, extra, min;
    if (c < 0x80) {
      s++;
      continue;
    }
    if ((c & 0xE0) == 0xC0)
      extra = 1, min = 0x80, c &= 0x1F;
    else if ((c & 0xF0) == 0xE0)
      extra = 2, min = 0x800, c &= 0x0F;
    else if ((c & 0xF8) == 0xF0)
      extra = 3, min = 0x10000, c &= 0x07;
    else
      return 0;
    /* A NUL terminator fails the continuation test, so this stops in time. */
    for (unsigned k = 1; k <= extra; k++) {
      if ((s[k] & 0xC0) != 0x80)
        return 0;
      c = (c << 6) | (s[k] & 0x3F);
    }
    if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
      return 0;
    s += extra + 1;
  }
  return 1;
}

const ae_meta_entry *
ae_meta_find (const ae_meta *meta, const char *key)
{
  for (size_t i = 0; meta && key && i < meta->n; i++)
    if (strcmp (meta->v[i].key, key) == 0)
      return &meta->v[i];
  return NULL;
}

static ae_status
grow (ae_meta *meta)
{
  if (meta->n < meta->cap)
    return AE_OK;
  size_t cap = meta->cap ? 2 * meta->cap : 16;
  ae_meta_entry *v = realloc (meta->v, cap * sizeof *v);
  if (!v)
    return AE_E_NOMEM;
  meta->v = v;
  meta->cap = cap;
  return AE_OK;
}

/* The entry for key: the existing one (its position kept), or a new empty
 * one at the end. */
static ae_status
find_or_add (ae_meta *meta, const char *key, ae_meta_entry **out)
{
  if (!meta || !valid_key (key))
    return AE_E_ARG;
  *out = (ae_meta_entry *) ae_meta_find (meta, key);
  if (*out)
    return AE_OK;
  char *copy = strdup (key);
  if (!copy || grow (meta) != AE_OK) {
    free (copy);
    return AE_E_NOMEM;
  }
  *out = &meta->v[meta->n++];
  memset (*out, 0, sizeof **out);
  (*out)->key = copy;
  return AE_OK;
}

/* Replaces the value; the type may change, an old string is released. */
static void
assign (ae_meta_entry *e, ae_meta_type type, int64_t i, double f, char *s)
{
  free (e->s);
  e->type = type;
  e->i = i;
  e->f = f;
  e->s = s;
}

ae_status
ae_meta_set_int (ae_meta *meta, const char *key, int64_t value)
{
  ae_meta_entry *e;
  ae_status st = find_or_add (meta, key, &e);
  if (st == AE_OK)
    assign (e, AE_META_INT, value, 0.0, NULL);
  return st;
}

ae_status
ae_meta_set_float (ae_meta *meta, const char *key, double value)
{
  ae_meta_entry *e;
  ae_status st = find_or_add (meta, key, &e);
  if (st == AE_OK)
    assign (e, AE_META_FLOAT, 0, value, NULL);
  return st;
}

ae_status
ae_meta_set_str (ae_meta *meta, const char *key, const char *value)
{
  if (!value || !valid_utf8 (value))
    return AE_E_ARG;
  char *copy = strdup (value);
  if (!copy)
    return AE_E_NOMEM;
  ae_meta_entry *e;
  ae_status st = find_or_add (meta, key, &e);
  if (st != AE_OK) {
    free (copy);
    return st;
  }
  assign (e, AE_META_STR, 0, 0.0, copy);
  return AE_OK;
}

/* dst gets its own copies of every key and string. src's keys are already
 * unique and valid, so entries are copied straight across (linear time);
 * on failure dst is left empty. */
ae_status
ae_meta_copy (ae_meta *dst, const ae_meta *src)
{
  ae_meta_init (dst);
  if (!src || src->n == 0)
    return AE_OK;
  dst->v = calloc (src->n, sizeof *dst->v);
  if (!dst->v)
    return AE_E_NOMEM;
  dst->cap = src->n;
  for (size_t i = 0; i < src->n; i++) {
    ae_meta_entry *d = &dst->v[i];
    *d = src->v[i];
    d->key = strdup (src->v[i].key);
    d->s = src->v[i].s ? strdup (src->v[i].s) : NULL;
    dst->n++; /* counted now, so ae_meta_free releases whatever was copied */
    if (!d->key || (src->v[i].s && !d->s)) {
      ae_meta_free (dst);
      return AE_E_NOMEM;
    }
  }
  return AE_OK;
}
