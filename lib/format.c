/* The .aem container (docs/model-format.md): a little-endian header,
 * typed metadata, a tensor table, 64-byte aligned float32 data and a
 * CRC-32 trailer. The writer builds the image in memory and renames a
 * finished temporary file into place; the reader checks every field against
 * the buffer's length before it touches the bytes it names. */
#include "ae_internal.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define AEM_MAGIC "AEMF"
#define AEM_VERSION 1
#define AEM_HEADER 64
#define AEM_ALIGN 64
#define AEM_DTYPE_F32 1
#define AEM_MAX_FILE ((uint64_t) 1 << 30)

/* ---- CRC-32 (IEEE 802.3, the zlib polynomial), bitwise: no tables ---------- */

uint32_t
aem_crc32 (uint32_t crc, const void *data, size_t len)
{
  const unsigned char *p = data;
  crc = ~crc;
  for (size_t i = 0; i < len; i++) {
    crc ^= p[i];
    for (int k = 0; k < 8; k++)
      crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

size_t
aem_tensor_numel (const aem_tensor *t)
{
  size_t n = 1;
  for (int i = 0; i < t->ndim; i++)
    n *= (size_t) t->shape[i];
  return n;
}

/* ---- Little-endian byte buffers ----------------------------------------------- */

typedef struct wbuf {
  unsigned char *p;
  size_t len, cap;
  int failed;
} wbuf;

static void
put_bytes (wbuf *b, const void *src, size_t n)
{
  if (b->failed)
    return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n)
      cap *= 2;
    unsigned char *p = realloc (b->p, cap);
    if (!p) {
      b->failed = 1;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  if (src)
    memcpy (b->p + b->len, src, n);
  else
    memset (b->p + b->len, 0, n);
  b->len += n;
}

static void
put_le (wbuf *b, uint64_t v, int bytes)
{
  unsigned char tmp[8];
  for (int i = 0; i < bytes; i++)
    tmp[i] = (unsigned char) (v >> (8 * i));
  put_bytes (b, tmp, (size_t) bytes);
}

static void
patch_le (wbuf *b, size_t at, uint64_t v, int bytes)
{
  for (int i = 0; !b->failed && i < bytes; i++)
    b->p[at + (size_t) i] = (unsigned char) (v >> (8 * i));
}

static uint64_t
double_bits (double d)
{
  uint64_t u;
  memcpy (&u, &d, sizeof u);
  return u;
}

static uint32_t
float_bits (float f)
{
  uint32_t u;
  memcpy (&u, &f, sizeof u);
  return u;
}

static void
put_meta (wbuf *b, const ae_meta_entry *e)
{
  size_t klen = strlen (e->key);
  put_le (b, klen, 2);
  put_bytes (b, e->key, klen);
  put_le (b, (uint64_t) e->type, 1);
  if (e->type == AE_META_INT) {
    put_le (b, (uint64_t) e->i, 8);
  } else if (e->type == AE_META_FLOAT) {
    put_le (b, double_bits (e->f), 8);
  } else {
    size_t slen = strlen (e->s);
    put_le (b, slen, 4);
    put_bytes (b, e->s, slen);
  }
}

static size_t
aligned (size_t n)
{
  return (n + AEM_ALIGN - 1) / AEM_ALIGN * AEM_ALIGN;
}

/* Table entries are written with placeholder offsets, patched once the
 * data positions are known. */
static ae_status
build_image (const ae_meta *meta, const aem_tensor *t, size_t count, wbuf *b, ae_error *err)
{
  size_t *offset_at = calloc (count ? count : 1, sizeof *offset_at);
  if (!offset_at)
    return ae_fail (err, AE_E_NOMEM, "out of memory writing model");
  put_bytes (b, AEM_MAGIC, 4);
  put_le (b, AEM_VERSION, 4);
  put_le (b, 0, 4);             /* flags */
  put_le (b, AEM_HEADER, 4);
  put_bytes (b, NULL, AEM_HEADER - 16); /* patched below */
  size_t meta_off = b->len;
  for (size_t i = 0; i < meta->n; i++)
    put_meta (b, &meta->v[i]);
  size_t table_off = b->len;
  for (size_t i = 0; i < count; i++) {
    size_t nlen = strlen (t[i].name);
    put_le (b, nlen, 1);
    put_bytes (b, t[i].name, nlen);
    put_le (b, AEM_DTYPE_F32, 1);
    put_le (b, (uint64_t) t[i].ndim, 1);
    for (int d = 0; d < t[i].ndim; d++)
      put_le (b, (uint64_t) t[i].shape[d], 8);
    offset_at[i] = b->len;
    put_bytes (b, NULL, 16);
  }
  size_t table_end = b->len;
  for (size_t i = 0; i < count; i++) {
    put_bytes (b, NULL, aligned (b->len) - b->len);
    size_t n = aem_tensor_numel (&t[i]);
    patch_le (b, offset_at[i], b->len, 8);
    patch_le (b, offset_at[i] + 8, n * 4, 8);
    for (size_t j = 0; j < n; j++)
      put_le (b, float_bits (t[i].data[j]), 4);
  }
  free (offset_at);
  size_t total = b->len + 4;
  patch_le (b, 16, total, 8);
  patch_le (b, 24, meta_off, 8);
  patch_le (b, 32, table_off - meta_off, 8);
  patch_le (b, 40, table_off, 8);
  patch_le (b, 48, table_end - table_off, 8);
  patch_le (b, 56, meta->n, 4);
  patch_le (b, 60, count, 4);
  if (!b->failed)
    put_le (b, aem_crc32 (0, b->p, b->len), 4);
  return b->failed ? ae_fail (err, AE_E_NOMEM, "out of memory writing model") : AE_OK;
}

static ae_status
write_atomically (const char *path, const unsigned char *data, size_t len, ae_error *err)
{
  size_t plen = strlen (path);
  char *tmp = malloc (plen + 16);
  if (!tmp)
    return ae_fail (err, AE_E_NOMEM, "out of memory");
  memcpy (tmp, path, plen);
  memcpy (tmp + plen, ".tmp.XXXXXX", 12);
  int fd = mkstemp (tmp);
  if (fd < 0) {
    ae_status st = ae_fail (err, AE_E_IO, "cannot create %s: %s", tmp, strerror (errno));
    free (tmp);
    return st;
  }
  FILE *f = fdopen (fd, "wb");
  int ok = f && fwrite (data, 1, len, f) == len && fflush (f) == 0 && fsync (fd) == 0;
  int saved = errno;
  if (f)
    ok = (fclose (f) == 0) && ok;
  else
    close (fd);
  if (ok && rename (tmp, path) != 0) {
    ok = 0;
    saved = errno;
  }
  ae_status st = AE_OK;
  if (!ok) {
    unlink (tmp);
    st = ae_fail (err, AE_E_IO, "cannot write %s: %s", path, strerror (saved));
  }
  free (tmp);
  return st;
}

static int
valid_name (const char *name)
{
  size_t n = strlen (name);
  if (n == 0 || n > AEM_MAX_NAME)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (name[i] <= ' ' || name[i] > '~')
      return 0;
  return 1;
}

ae_status
aem_write (const char *path, const ae_meta *meta, const aem_tensor *tensors, size_t count,
           ae_error *err)
{
  if (!path || !meta || (count && !tensors))
    return ae_fail (err, AE_E_ARG, "aem_write: missing arguments");
  for (size_t i = 0; i < count; i++)
    if (!valid_name (tensors[i].name) || tensors[i].ndim < 1 || tensors[i].ndim > AEM_MAX_DIMS)
      return ae_fail (err, AE_E_ARG, "tensor %zu has a bad name or rank", i);
  wbuf b = { NULL, 0, 0, 0 };
  ae_status st = build_image (meta, tensors, count, &b, err);
  if (st == AE_OK && b.len > AEM_MAX_FILE)
    st = ae_fail (err, AE_E_ARG, "model of %zu bytes exceeds the 1 GiB format limit", b.len);
  if (st == AE_OK)
    st = write_atomically (path, b.p, b.len, err);
  free (b.p);
  return st;
}

/* ---- Reading ---------------------------------------------------------------------- */

/* A bounded cursor: every read checks the remaining length first. */
typedef struct rbuf {
  const unsigned char *p;
  size_t pos, end;
} rbuf;

static int
get_le (rbuf *r, int bytes, uint64_t *v)
{
  if (r->end - r->pos < (size_t) bytes)
    return 0;
  *v = 0;
  for (int i = 0; i < bytes; i++)
    *v |= (uint64_t) r->p[r->pos + (size_t) i] << (8 * i);
  r->pos += (size_t) bytes;
  return 1;
}

/* Copies n bytes into a new NUL-terminated string; rejects embedded NULs. */
static char *
get_string (rbuf *r, size_t n)
{
  if (r->end - r->pos < n || memchr (r->p + r->pos, 0, n))
    return NULL;
  char *s = malloc (n + 1);
  if (!s)
    return NULL;
  memcpy (s, r->p + r->pos, n);
  s[n] = '\0';
  r->pos += n;
  return s;
}

typedef struct header {
  uint64_t length, meta_off, meta_len, table_off, table_len;
  uint32_t meta_count, tensor_count;
} header;

static uint64_t
rd (const unsigned char *p, int bytes)
{
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++)
    v |= (uint64_t) p[i] << (8 * i);
  return v;
}

/* Section [off, off+len) inside [AEM_HEADER, end). */
static int
section_ok (uint64_t off, uint64_t len, uint64_t end)
{
  return off >= AEM_HEADER && off <= end && len <= end - off;
}

static ae_status
parse_header (const unsigned char *p, size_t len, header *h, ae_error *err)
{
  if (len < AEM_HEADER + 4)
    return ae_fail (err, AE_E_FORMAT, "model file truncated: %zu bytes", len);
  if (memcmp (p, AEM_MAGIC, 4) != 0)
    return ae_fail (err, AE_E_FORMAT, "not a model file (bad magic)");
  uint32_t version = (uint32_t) rd (p + 4, 4);
  if (version != AEM_VERSION)
    return ae_fail (err, AE_E_FORMAT, "unsupported model format version %u (this build reads %d)",
                    version, AEM_VERSION);
  if (rd (p + 8, 4) != 0 || rd (p + 12, 4) != AEM_HEADER)
    return ae_fail (err, AE_E_FORMAT, "unsupported model header (flags or size)");
  h->length = rd (p + 16, 8);
  if (h->length != len)
    return ae_fail (err, AE_E_FORMAT, "model file truncated or padded: %zu of %llu bytes", len,
                    (unsigned long long) h->length);
  uint32_t stored = (uint32_t) rd (p + len - 4, 4);
  if (aem_crc32 (0, p, len - 4) != stored)
    return ae_fail (err, AE_E_FORMAT, "model file CRC mismatch (corrupt)");
  h->meta_off = rd (p + 24, 8);
  h->meta_len = rd (p + 32, 8);
  h->table_off = rd (p + 40, 8);
  h->table_len = rd (p + 48, 8);
  h->meta_count = (uint32_t) rd (p + 56, 4);
  h->tensor_count = (uint32_t) rd (p + 60, 4);
  uint64_t body = len - 4;
  if (!section_ok (h->meta_off, h->meta_len, body) || !section_ok (h->table_off, h->table_len, body)
      || h->meta_off + h->meta_len > h->table_off)
    return ae_fail (err, AE_E_FORMAT, "model file sections out of bounds");
  /* Each entry takes at least 4 (metadata) or 19 (tensor) bytes. */
  if (h->meta_count > h->meta_len / 4 || h->tensor_count > h->table_len / 19)
    return ae_fail (err, AE_E_FORMAT, "model file entry counts exceed their sections");
  return AE_OK;
}

static ae_status
parse_meta_entry (rbuf *r, ae_meta *meta, ae_error *err)
{
  uint64_t klen, type, v;
  if (!get_le (r, 2, &klen) || klen == 0 || klen > 255)
    return ae_fail (err, AE_E_FORMAT, "bad metadata key length");
  char *key = get_string (r, (size_t) klen);
  if (!key)
    return ae_fail (err, AE_E_FORMAT, "metadata key truncated");
  ae_status st = AE_OK;
  if (ae_meta_find (meta, key))
    st = ae_fail (err, AE_E_FORMAT, "duplicate metadata key '%s'", key);
  else if (!get_le (r, 1, &type))
    st = ae_fail (err, AE_E_FORMAT, "metadata '%s' truncated", key);
  else if (type == AE_META_INT || type == AE_META_FLOAT) {
    if (!get_le (r, 8, &v))
      st = ae_fail (err, AE_E_FORMAT, "metadata '%s' truncated", key);
    else if (type == AE_META_INT)
      st = ae_meta_set_int (meta, key, (int64_t) v);
    else {
      double d;
      memcpy (&d, &v, sizeof d);
      st = ae_meta_set_float (meta, key, d);
    }
  } else if (type == AE_META_STR) {
    char *s = get_le (r, 4, &v) ? get_string (r, (size_t) v) : NULL;
    st = s ? ae_meta_set_str (meta, key, s) : ae_fail (err, AE_E_FORMAT, "metadata '%s' "
                                                        "string truncated", key);
    free (s);
  } else {
    st = ae_fail (err, AE_E_FORMAT, "metadata '%s' has unknown type %u", key, (unsigned) type);
  }
  if (st == AE_E_ARG)
    st = ae_fail (err, AE_E_FORMAT, "metadata key '%s' is not valid", key);
  free (key);
  return st;
}

/* The tensor's byte range must lie in the data area, after the tables,
 * aligned, and not overlap the previous tensor (data is in table order). */
static ae_status
parse_tensor_entry (rbuf *r, aem_tensor *t, uint64_t data_start, uint64_t body,
                    uint64_t *prev_end, ae_error *err)
{
  uint64_t nlen, dtype, ndim, off, bytes, dim;
  memset (t, 0, sizeof *t);
  if (!get_le (r, 1, &nlen) || nlen == 0 || nlen > AEM_MAX_NAME || r->end - r->pos < nlen)
    return ae_fail (err, AE_E_FORMAT, "bad tensor name");
  memcpy (t->name, r->p + r->pos, (size_t) nlen);
  r->pos += (size_t) nlen;
  if (!valid_name (t->name))
    return ae_fail (err, AE_E_FORMAT, "bad tensor name");
  if (!get_le (r, 1, &dtype) || dtype != AEM_DTYPE_F32 || !get_le (r, 1, &ndim) || ndim < 1
      || ndim > AEM_MAX_DIMS)
    return ae_fail (err, AE_E_FORMAT, "tensor '%s': unsupported type or rank", t->name);
  t->ndim = (int) ndim;
  uint64_t numel = 1;
  for (int d = 0; d < t->ndim; d++) {
    if (!get_le (r, 8, &dim) || dim == 0 || dim > AEM_MAX_FILE || numel > AEM_MAX_FILE / dim)
      return ae_fail (err, AE_E_FORMAT, "tensor '%s': bad shape", t->name);
    t->shape[d] = (int64_t) dim;
    numel *= dim;
  }
  if (!get_le (r, 8, &off) || !get_le (r, 8, &bytes))
    return ae_fail (err, AE_E_FORMAT, "tensor table truncated");
  if (bytes != numel * 4)
    return ae_fail (err, AE_E_FORMAT, "tensor '%s': %llu bytes for %llu values", t->name,
                    (unsigned long long) bytes, (unsigned long long) numel);
  if (off % AEM_ALIGN || off < data_start || off < *prev_end || off > body || bytes > body - off)
    return ae_fail (err, AE_E_FORMAT, "tensor '%s' lies outside the data area", t->name);
  *prev_end = off + bytes;
  return AE_OK;
}

static ae_status
load_tensor_data (const unsigned char *p, aem_tensor *t, uint64_t off, ae_error *err)
{
  size_t n = aem_tensor_numel (t);
  t->data = malloc (n * sizeof (float));
  if (!t->data)
    return ae_fail (err, AE_E_NOMEM, "out of memory for tensor '%s'", t->name);
  for (size_t i = 0; i < n; i++) {
    uint32_t u = (uint32_t) rd (p + off + 4 * i, 4);
    memcpy (&t->data[i], &u, sizeof u);
  }
  return AE_OK;
}

static ae_status
parse_tensors (const unsigned char *p, const header *h, uint64_t body, aem_tensor *t,
               ae_error *err)
{
  rbuf r = { p, (size_t) h->table_off, (size_t) (h->table_off + h->table_len) };
  uint64_t prev_end = 0, data_start = h->table_off + h->table_len;
  uint64_t *offs = malloc ((h->tensor_count ? h->tensor_count : 1) * sizeof *offs);
  if (!offs)
    return ae_fail (err, AE_E_NOMEM, "out of memory");
  ae_status st = AE_OK;
  for (uint32_t i = 0; st == AE_OK && i < h->tensor_count; i++) {
    st = parse_tensor_entry (&r, &t[i], data_start, body, &prev_end, err);
    offs[i] = prev_end - aem_tensor_numel (&t[i]) * 4;
    for (uint32_t j = 0; st == AE_OK && j < i; j++)
      if (strcmp (t[j].name, t[i].name) == 0)
        st = ae_fail (err, AE_E_FORMAT, "duplicate tensor '%s'", t[i].name);
  }
  if (st == AE_OK && r.pos != r.end)
    st = ae_fail (err, AE_E_FORMAT, "tensor table has %zu stray bytes", r.end - r.pos);
  for (uint32_t i = 0; st == AE_OK && i < h->tensor_count; i++)
    st = load_tensor_data (p, &t[i], offs[i], err);
  free (offs);
  return st;
}

ae_status
aem_parse (const void *buf, size_t len, ae_meta *meta, aem_tensor **tensors, size_t *count,
           ae_error *err)
{
  const unsigned char *p = buf;
  header h = { 0 };
  *tensors = NULL;
  *count = 0;
  ae_meta_init (meta);
  if (!buf)
    return ae_fail (err, AE_E_ARG, "no model data");
  ae_status st = parse_header (p, len, &h, err);
  if (st != AE_OK)
    return st;
  rbuf r = { p, (size_t) h.meta_off, (size_t) (h.meta_off + h.meta_len) };
  for (uint32_t i = 0; st == AE_OK && i < h.meta_count; i++)
    st = parse_meta_entry (&r, meta, err);
  if (st == AE_OK && r.pos != r.end)
    st = ae_fail (err, AE_E_FORMAT, "metadata section has %zu stray bytes", r.end - r.pos);
  aem_tensor *t = NULL;
  if (st == AE_OK) {
    t = calloc (h.tensor_count ? h.tensor_count : 1, sizeof *t);
    st = t ? parse_tensors (p, &h, len - 4, t, err) : ae_fail (err, AE_E_NOMEM, "out of memory");
  }
  if (st != AE_OK) {
    aem_tensors_free (t, h.tensor_count);
    ae_meta_free (meta);
    return st;
  }
  *tensors = t;
  *count = h.tensor_count;
  return AE_OK;
}

void
aem_tensors_free (aem_tensor *tensors, size_t count)
{
  for (size_t i = 0; tensors && i < count; i++)
    free (tensors[i].data);
  free (tensors);
}

ae_status
aem_read_file (const char *path, void **buf, size_t *len, ae_error *err)
{
  *buf = NULL;
  *len = 0;
  FILE *f = fopen (path, "rb");
  if (!f)
    return ae_fail (err, AE_E_IO, "cannot open %s: %s", path, strerror (errno));
  long size = -1;
  if (fseek (f, 0, SEEK_END) == 0)
    size = ftell (f);
  if (size < 0 || fseek (f, 0, SEEK_SET) != 0) {
    fclose (f);
    return ae_fail (err, AE_E_IO, "cannot read %s: not a regular file", path);
  }
  if ((uint64_t) size > AEM_MAX_FILE) {
    fclose (f);
    return ae_fail (err, AE_E_FORMAT, "%s is larger than 1 GiB: not a model", path);
  }
  void *p = malloc (size ? (size_t) size : 1);
  if (!p) {
    fclose (f);
    return ae_fail (err, AE_E_NOMEM, "out of memory reading %s", path);
  }
  size_t got = fread (p, 1, (size_t) size, f);
  int failed = ferror (f);
  fclose (f);
  if (failed || got != (size_t) size) {
    free (p);
    return ae_fail (err, AE_E_IO, "cannot read %s", path);
  }
  *buf = p;
  *len = got;
  return AE_OK;
}
