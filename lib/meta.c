/* Typed key/value metadata, kept in insertion order. */
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
  for (size_t i = 0; i < meta->n; i++) {
    free (meta->v[i].key);
    free (meta->v[i].s);
  }
  free (meta->v);
  ae_meta_init (meta);
}

/* Keys are dotted printable ASCII without spaces ("train.epochs"). */
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

const ae_meta_entry *
ae_meta_find (const ae_meta *meta, const char *key)
{
  for (size_t i = 0; key && i < meta->n; i++)
    if (strcmp (meta->v[i].key, key) == 0)
      return &meta->v[i];
  return NULL;
}

/* The entry for key, created empty if absent; NULL on a bad key or no memory. */
static ae_meta_entry *
slot (ae_meta *meta, const char *key)
{
  if (!valid_key (key))
    return NULL;
  ae_meta_entry *e = (ae_meta_entry *) ae_meta_find (meta, key);
  if (e) {
    free (e->s);
    e->s = NULL;
    return e;
  }
  if (meta->n == meta->cap) {
    size_t cap = meta->cap ? 2 * meta->cap : 16;
    ae_meta_entry *v = realloc (meta->v, cap * sizeof *v);
    if (!v)
      return NULL;
    meta->v = v;
    meta->cap = cap;
  }
  char *k = strdup (key);
  if (!k)
    return NULL;
  e = &meta->v[meta->n++];
  memset (e, 0, sizeof *e);
  e->key = k;
  return e;
}

ae_status
ae_meta_set_int (ae_meta *meta, const char *key, int64_t value)
{
  ae_meta_entry *e = slot (meta, key);
  if (!e)
    return AE_E_ARG;
  e->type = AE_META_INT;
  e->i = value;
  return AE_OK;
}

ae_status
ae_meta_set_float (ae_meta *meta, const char *key, double value)
{
  ae_meta_entry *e = slot (meta, key);
  if (!e)
    return AE_E_ARG;
  e->type = AE_META_FLOAT;
  e->f = value;
  return AE_OK;
}

ae_status
ae_meta_set_str (ae_meta *meta, const char *key, const char *value)
{
  char *copy = value ? strdup (value) : NULL;
  ae_meta_entry *e = copy ? slot (meta, key) : NULL;
  if (!e) {
    free (copy);
    return AE_E_ARG;
  }
  e->type = AE_META_STR;
  e->s = copy;
  return AE_OK;
}

ae_status
ae_meta_copy (ae_meta *dst, const ae_meta *src)
{
  ae_meta_init (dst);
  for (size_t i = 0; i < src->n; i++) {
    const ae_meta_entry *e = &src->v[i];
    ae_status st = e->type == AE_META_INT ? ae_meta_set_int (dst, e->key, e->i)
                 : e->type == AE_META_FLOAT ? ae_meta_set_float (dst, e->key, e->f)
                 : ae_meta_set_str (dst, e->key, e->s);
    if (st != AE_OK) {
      ae_meta_free (dst);
      return AE_E_NOMEM;
    }
  }
  return AE_OK;
}
