/* The .aem container (docs/model-format.md): a little-endian header,
 * typed metadata, a tensor table, 64-byte aligned float32 data and a
 * CRC-32 trailer.
 *
 * The layout is canonical: for given contents there is exactly one valid
 * byte image. The writer plans every offset before it writes a byte, and
 * the reader accepts only that image, checking each length, offset and
 * count against the buffer before it touches the bytes it names. */
#include "ae_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define AEM_MAGIC "AEMF"
#define AEM_VERSION 1
#define AEM_HEADER 64
#define AEM_TRAILER 4
#define AEM_ALIGN 64
#define AEM_DTYPE_F32 1
#define AEM_MAX_FILE ((uint64_t) 1 << 30)
#define AEM_MAX_NUMEL (AEM_MAX_FILE / 4)
#define AEM_MAX_KEY 255
/* Per section. Models have tens of entries; the cap keeps quadratic
 * duplicate checks and metadata copies cheap on hostile files. */
#define AEM_MAX_ENTRIES 4096
/* The smallest possible entries: a 1-byte key with an empty string
 * (2 + 1 + 1 + 4), a 1-byte name of rank 1 (1 + 1 + 1 + 1 + 8 + 8 + 8). */
#define AEM_MIN_META_ENTRY 8
#define AEM_MIN_TENSOR_ENTRY 28

/* Header fields: byte offsets (docs/model-format.md, "Header"). */
enum {
  H_MAGIC = 0, H_VERSION = 4, H_FLAGS = 8, H_SIZE = 12, H_LENGTH = 16,
  H_META_OFF = 24, H_META_LEN = 32, H_TABLE_OFF = 40, H_TABLE_LEN = 48,
  H_META_COUNT = 56, H_TENSOR_COUNT = 60
};

/* ---- CRC-32 (IEEE 802.3, the zlib polynomial 0xEDB88320) -------------------- */

/* Four bits at a time: a 16-entry table, four times faster than bit by bit. */
uint32_t
aem_crc32 (uint32_t crc, const void *data, size_t len)
{
  static const uint32_t nibble[16] = {
    0x00000000u, 0x1db71064u, 0x3b6e20c8u, 0x26d930acu, 0x76dc4190u, 0x6b6b51f4u,
    0x4db26158u, 0x5005713cu, 0xedb88320u, 0xf00f9344u, 0xd6d6a3e8u, 0xcb61b38cu,
    0x9b64c2b0u, 0x86d3d2d4u, 0xa00ae278u, 0xbdbdf21cu
  };
  const unsigned char *p = data;
  crc = ~crc;
  for (size_t i = 0; i < len; i++) {
    crc ^= p[i];
    crc = (crc >> 4) ^ nibble[crc & 15];
    crc = (crc >> 4) ^ nibble[crc & 15];
  }
  return ~crc;
}

/* The caller guarantees a valid shape (the writer checks, the reader only
 * returns checked ones). */
size_t
aem_tensor_numel (const aem_tensor *t)
{
  size_t n = 1;
  for (int i = 0; i < t->ndim; i++)
    n *= (size_t) t->shape[i];
  return n;
}

/* ---- Shared helpers ----------------------------------------------------------- */

static uint64_t
load_le (const unsigned char *p, int bytes)
{
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++)
    v |= (uint64_t) p[i] << (8 * i);
  return v;
}

/* Two's complement reinterpretation without implementation-defined casts. */
static int64_t
as_signed (uint64_t u)
{
  int64_t s;
  memcpy (&s, &u, sizeof s);
  return s;
}

static void
store_le (unsigned char *p, uint64_t v, int bytes)
{
  for (int i = 0; i < bytes; i++)
    p[i] = (unsigned char) (v >> (8 * i));
}

static uint64_t
align_up (uint64_t n)
{
  return (n + AEM_ALIGN - 1) & ~(uint64_t) (AEM_ALIGN - 1);
}

/* Keys and tensor names: 1..max printable ASCII bytes, no spaces (the rule
 * meta.c applies to keys). */
static int
token_ok (const char *s, size_t n, size_t max)
{
  if (n == 0 || n > max)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] <= ' ' || s[i] > '~')
      return 0;
  return 1;
}

static size_t
name_length (const aem_tensor *t)
{
  size_t n = 0;
  while (n < sizeof t->name && t->name[n])
    n++;
  return n;
}

/* ---- Writing: validate, plan, fill, commit --------------------------------------- */

static ae_status
check_meta_for_write (const ae_meta *meta, ae_error *err)
{
  if (meta->n > AEM_MAX_ENTRIES)
    return ae_fail (err, AE_E_ARG, "%zu metadata entries exceed the format's limit of %d",
                    meta->n, AEM_MAX_ENTRIES);
  for (size_t i = 0; i < meta->n; i++) {
    const ae_meta_entry *e = &meta->v[i];
    if (!e->key || !token_ok (e->key, strlen (e->key), AEM_MAX_KEY))
      return ae_fail (err, AE_E_ARG, "metadata entry %zu has an invalid key", i);
    if (e->type != AE_META_INT && e->type != AE_META_FLOAT
        && !(e->type == AE_META_STR && e->s && strlen (e->s) <= AEM_MAX_FILE))
      return ae_fail (err, AE_E_ARG, "metadata '%s' has an invalid type or value", e->key);
  }
  return AE_OK;
}

static ae_status
check_tensor_for_write (const aem_tensor *t, size_t i, ae_error *err)
{
  if (!token_ok (t->name, name_length (t), AEM_MAX_NAME))
    return ae_fail (err, AE_E_ARG, "tensor %zu: name must be 1-%d printable characters, "
                    "no spaces", i, AEM_MAX_NAME);
  if (t->ndim < 1 || t->ndim > AEM_MAX_DIMS)
    return ae_fail (err, AE_E_ARG, "tensor '%s': rank %d is not 1-%d", t->name, t->ndim,
                    AEM_MAX_DIMS);
  uint64_t numel = 1;
  for (int d = 0; d < t->ndim; d++) {
    int64_t dim = t->shape[d];
    if (dim <= 0 || (uint64_t) dim > AEM_MAX_NUMEL / numel)
      return ae_fail (err, AE_E_ARG, "tensor '%s': dimension %d (%lld) is not positive or "
                      "too large", t->name, d, (long long) dim);
    numel *= (uint64_t) dim;
  }
  if (!t->data)
    return ae_fail (err, AE_E_ARG, "tensor '%s' has no data", t->name);
  return AE_OK;
}

static ae_status
check_tensors_for_write (const aem_tensor *t, size_t count, ae_error *err)
{
  if (count > AEM_MAX_ENTRIES)
    return ae_fail (err, AE_E_ARG, "%zu tensors exceed the format's limit of %d", count,
                    AEM_MAX_ENTRIES);
  for (size_t i = 0; i < count; i++) {
    ae_status st = check_tensor_for_write (&t[i], i, err);
    if (st != AE_OK)
      return st;
    for (size_t j = 0; j < i; j++)
      if (strcmp (t[i].name, t[j].name) == 0)
        return ae_fail (err, AE_E_ARG, "duplicate tensor name '%s'", t[i].name);
  }
  return AE_OK;
}

static uint64_t
meta_entry_size (const ae_meta_entry *e)
{
  uint64_t value = e->type == AE_META_STR ? 4 + (uint64_t) strlen (e->s) : 8;
  return 2 + (uint64_t) strlen (e->key) + 1 + value;
}

static uint64_t
tensor_entry_size (const aem_tensor *t)
{
  return 1 + (uint64_t) name_length (t) + 2 + 8 * (uint64_t) t->ndim + 16;
}

/* Section sizes and the file length, computed from validated inputs whose
 * every piece is below 2^32 bytes, so the uint64 sums cannot overflow. */
typedef struct plan {
  uint64_t meta_len, table_len, total;
} plan;

static ae_status
plan_layout (const ae_meta *meta, const aem_tensor *t, size_t count, plan *pl, ae_error *err)
{
  pl->meta_len = pl->table_len = 0;
  for (size_t i = 0; i < meta->n; i++)
    pl->meta_len += meta_entry_size (&meta->v[i]);
  for (size_t i = 0; i < count; i++)
    pl->table_len += tensor_entry_size (&t[i]);
  uint64_t cursor = AEM_HEADER + pl->meta_len + pl->table_len;
  for (size_t i = 0; i < count && cursor <= AEM_MAX_FILE; i++)
    cursor = align_up (cursor) + 4 * (uint64_t) aem_tensor_numel (&t[i]);
  pl->total = cursor + AEM_TRAILER;
  if (pl->total > AEM_MAX_FILE)
    return ae_fail (err, AE_E_ARG, "model of %llu bytes exceeds the format's 1 GiB limit",
                    (unsigned long long) pl->total);
  return AE_OK;
}

/* A write cursor over the planned image. */
typedef struct wcur {
  unsigned char *p;
  size_t pos;
} wcur;

static void
put_le (wcur *w, uint64_t v, int bytes)
{
  store_le (w->p + w->pos, v, bytes);
  w->pos += (size_t) bytes;
}

static void
put_bytes (wcur *w, const void *src, size_t n)
{
  memcpy (w->p + w->pos, src, n);
  w->pos += n;
}

static void
put_header (wcur *w, const plan *pl, size_t meta_count, size_t tensor_count)
{
  put_bytes (w, AEM_MAGIC, 4);
  put_le (w, AEM_VERSION, 4);
  put_le (w, 0, 4); /* flags */
  put_le (w, AEM_HEADER, 4);
  put_le (w, pl->total, 8);
  put_le (w, AEM_HEADER, 8);
  put_le (w, pl->meta_len, 8);
  put_le (w, AEM_HEADER + pl->meta_len, 8);
  put_le (w, pl->table_len, 8);
  put_le (w, meta_count, 4);
  put_le (w, tensor_count, 4);
}

static void
put_meta_entry (wcur *w, const ae_meta_entry *e)
{
  size_t klen = strlen (e->key);
  put_le (w, klen, 2);
  put_bytes (w, e->key, klen);
  put_le (w, (uint64_t) e->type, 1);
  if (e->type == AE_META_INT) {
    put_le (w, (uint64_t) e->i, 8);
  } else if (e->type == AE_META_FLOAT) {
    uint64_t bits;
    memcpy (&bits, &e->f, sizeof bits);
    put_le (w, bits, 8);
  } else {
    size_t slen = strlen (e->s);
    put_le (w, slen, 4);
    put_bytes (w, e->s, slen);
  }
}

/* Table entries name their data offsets, which follow from the sizes:
 * each tensor starts at the first 64-byte boundary after the previous. */
static void
put_tensor_table (wcur *w, const aem_tensor *t, size_t count, uint64_t data_start)
{
  uint64_t cursor = data_start;
  for (size_t i = 0; i < count; i++) {
    size_t nlen = name_length (&t[i]);
    uint64_t bytes = 4 * (uint64_t) aem_tensor_numel (&t[i]);
    put_le (w, nlen, 1);
    put_bytes (w, t[i].name, nlen);
    put_le (w, AEM_DTYPE_F32, 1);
    put_le (w, (uint64_t) t[i].ndim, 1);
    for (int d = 0; d < t[i].ndim; d++)
      put_le (w, (uint64_t) t[i].shape[d], 8);
    put_le (w, align_up (cursor), 8);
    put_le (w, bytes, 8);
    cursor = align_up (cursor) + bytes;
  }
}

/* The image is zero-filled, so skipping to the boundary writes the padding. */
static void
put_tensor_data (wcur *w, const aem_tensor *t, size_t count)
{
  for (size_t i = 0; i < count; i++) {
    w->pos = (size_t) align_up (w->pos);
    size_t n = aem_tensor_numel (&t[i]);
    for (size_t j = 0; j < n; j++) {
      uint32_t bits;
      memcpy (&bits, &t[i].data[j], sizeof bits);
      put_le (w, bits, 4);
    }
  }
}

static unsigned char *
build_image (const ae_meta *meta, const aem_tensor *t, size_t count, const plan *pl)
{
  wcur w = { calloc (1, (size_t) pl->total), 0 };
  if (!w.p)
    return NULL;
  put_header (&w, pl, meta->n, count);
  for (size_t i = 0; i < meta->n; i++)
    put_meta_entry (&w, &meta->v[i]);
  put_tensor_table (&w, t, count, AEM_HEADER + pl->meta_len + pl->table_len);
  put_tensor_data (&w, t, count);
  put_le (&w, aem_crc32 (0, w.p, w.pos), 4);
  return w.p;
}

/* Creates "<path>.tmp.<pid>.<salt>" with O_EXCL and mode 0666, so the umask
 * applies as for any other new file (mkstemp would force 0600 and make a
 * model unreadable to, say, a pipeline run by another user). The salt mixes
 * the clock, a stack address and the attempt; a clash just tries again. */
static int
create_temp (const char *path, char *tmp, size_t cap)
{
  for (unsigned attempt = 0; attempt < 100; attempt++) {
    struct timespec ts;
    clock_gettime (CLOCK_REALTIME, &ts);
    unsigned long long salt = (unsigned long long) ts.tv_nsec * 2654435761u
                              ^ (unsigned long long) (uintptr_t) &ts ^ attempt;
    snprintf (tmp, cap, "%s.tmp.%ld.%010llx", path, (long) getpid (), salt & 0xffffffffffULL);
    int fd = open (tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0 || errno != EEXIST)
      return fd;
  }
  errno = EEXIST;
  return -1;
}

/* fwrite, fflush, fsync, fclose; returns 0 or the first errno. */
static int
write_and_sync (int fd, const unsigned char *data, size_t len)
{
  FILE *f = fdopen (fd, "wb");
  if (!f) {
    int e = errno;
    close (fd);
    return e;
  }
  int e = 0;
  errno = 0;
  if (fwrite (data, 1, len, f) != len || fflush (f) != 0 || fsync (fd) != 0)
    e = errno ? errno : EIO;
  if (fclose (f) != 0 && e == 0)
    e = errno ? errno : EIO;
  return e;
}

/* Makes the rename itself durable. Best effort: some file systems cannot
 * fsync a directory, and the model is complete either way. */
static void
sync_parent_dir (const char *path)
{
  const char *slash = strrchr (path, '/');
  char *dir = slash ? strndup (path, slash == path ? 1 : (size_t) (slash - path)) : strdup (".");
  if (!dir)
    return;
  int fd = open (dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    fsync (fd);
    close (fd);
  }
  free (dir);
}

static ae_status
write_atomically (const char *path, const unsigned char *data, size_t len, ae_error *err)
{
  size_t cap = strlen (path) + 64;
  char *tmp = malloc (cap);
  if (!tmp)
    return ae_fail (err, AE_E_NOMEM, "out of memory saving %s", path);
  int fd = create_temp (path, tmp, cap);
  if (fd < 0) {
    ae_status st = ae_fail (err, AE_E_IO, "cannot create a temporary file for %s: %s", path,
                            strerror (errno));
    free (tmp);
    return st;
  }
  int e = write_and_sync (fd, data, len);
  if (e == 0 && rename (tmp, path) != 0)
    e = errno;
  ae_status st = AE_OK;
  if (e != 0) {
    unlink (tmp);
    st = ae_fail (err, AE_E_IO, "cannot write %s: %s", path, strerror (e));
  } else {
    sync_parent_dir (path);
  }
  free (tmp);
  return st;
}

ae_status
aem_write (const char *path, const ae_meta *meta, const aem_tensor *tensors, size_t count,
           ae_error *err)
{
  if (!path || !*path || !meta || (count && !tensors))
    return ae_fail (err, AE_E_ARG, "aem_write: missing path, metadata or tensors");
  plan pl;
  ae_status st = check_meta_for_write (meta, err);
  if (st == AE_OK)
    st = check_tensors_for_write (tensors, count, err);
  if (st == AE_OK)
    st = plan_layout (meta, tensors, count, &pl, err);
  if (st != AE_OK)
    return st;
  unsigned char *image = build_image (meta, tensors, count, &pl);
  if (!image)
    return ae_fail (err, AE_E_NOMEM, "out of memory building %s (%llu bytes)", path,
                    (unsigned long long) pl.total);
  st = write_atomically (path, image, (size_t) pl.total, err);
  free (image);
  return st;
}

/* ---- Reading ---------------------------------------------------------------------- */

/* A bounded cursor: every read checks the remaining length first. */
typedef struct rcur {
  const unsigned char *p;
  size_t pos, end;
} rcur;

static size_t
remaining (const rcur *r)
{
  return r->end - r->pos;
}

static int
get_le (rcur *r, int bytes, uint64_t *v)
{
  if (remaining (r) < (size_t) bytes)
    return 0;
  *v = load_le (r->p + r->pos, bytes);
  r->pos += (size_t) bytes;
  return 1;
}

typedef struct header {
  uint64_t length, meta_off, meta_len, table_off, table_len;
  uint32_t meta_count, tensor_count;
} header;

static ae_status
truncated (size_t len, ae_error *err)
{
  return ae_fail (err, AE_E_FORMAT, "model file truncated: %zu bytes", len);
}

/* Magic, version and the declared length, each as soon as enough bytes
 * exist to hold it, so a short or foreign file gets the apt message. */
static ae_status
check_identity (const unsigned char *p, size_t len, ae_error *err)
{
  if (len < 4)
    return truncated (len, err);
  if (memcmp (p + H_MAGIC, AEM_MAGIC, 4) != 0)
    return ae_fail (err, AE_E_FORMAT, "not a model file (magic is not \"" AEM_MAGIC "\")");
  if (len < 8)
    return truncated (len, err);
  uint64_t version = load_le (p + H_VERSION, 4);
  if (version != AEM_VERSION)
    return ae_fail (err, AE_E_FORMAT, "unsupported model format version %llu (this build "
                    "reads %d)", (unsigned long long) version, AEM_VERSION);
  if (len < H_LENGTH + 8)
    return truncated (len, err);
  uint64_t declared = load_le (p + H_LENGTH, 8);
  if (declared > len)
    return ae_fail (err, AE_E_FORMAT, "model file truncated: %zu of %llu bytes", len,
                    (unsigned long long) declared);
  if (declared < len)
    return ae_fail (err, AE_E_FORMAT, "model file has %zu bytes, %zu more than its header "
                    "declares", len, len - (size_t) declared);
  if (len < AEM_HEADER + AEM_TRAILER)
    return ae_fail (err, AE_E_FORMAT, "model file of %zu bytes is too short for a header",
                    len);
  return AE_OK;
}

static ae_status
check_crc (const unsigned char *p, size_t len, ae_error *err)
{
  uint32_t stored = (uint32_t) load_le (p + len - AEM_TRAILER, 4);
  uint32_t computed = aem_crc32 (0, p, len - AEM_TRAILER);
  if (stored != computed)
    return ae_fail (err, AE_E_FORMAT, "model file CRC mismatch (stored %08x, computed %08x)",
                    (unsigned) stored, (unsigned) computed);
  return AE_OK;
}

static void
read_header (const unsigned char *p, header *h)
{
  h->length = load_le (p + H_LENGTH, 8);
  h->meta_off = load_le (p + H_META_OFF, 8);
  h->meta_len = load_le (p + H_META_LEN, 8);
  h->table_off = load_le (p + H_TABLE_OFF, 8);
  h->table_len = load_le (p + H_TABLE_LEN, 8);
  h->meta_count = (uint32_t) load_le (p + H_META_COUNT, 4);
  h->tensor_count = (uint32_t) load_le (p + H_TENSOR_COUNT, 4);
}

/* The sections follow the header back to back; each length is compared
 * with the room left before it is added to anything. */
static ae_status
check_sections (const header *h, uint64_t body, ae_error *err)
{
  if (h->meta_off != AEM_HEADER)
    return ae_fail (err, AE_E_FORMAT, "metadata section at %llu, not right after the header",
                    (unsigned long long) h->meta_off);
  if (h->meta_len > body - h->meta_off)
    return ae_fail (err, AE_E_FORMAT, "metadata section (%llu bytes) extends past end of file",
                    (unsigned long long) h->meta_len);
  if (h->table_off != h->meta_off + h->meta_len)
    return ae_fail (err, AE_E_FORMAT, "tensor table at %llu, not right after the metadata",
                    (unsigned long long) h->table_off);
  if (h->table_len > body - h->table_off)
    return ae_fail (err, AE_E_FORMAT, "tensor table (%llu bytes) extends past end of file",
                    (unsigned long long) h->table_len);
  return AE_OK;
}

/* Counts are bounded twice: by the format's limit and by how many of the
 * smallest possible entries would fit the section. */
static ae_status
check_counts (const header *h, ae_error *err)
{
  if (h->meta_count > AEM_MAX_ENTRIES || h->tensor_count > AEM_MAX_ENTRIES)
    return ae_fail (err, AE_E_FORMAT, "model file declares %u metadata entries and %u tensors "
                    "(limit %d each)", (unsigned) h->meta_count, (unsigned) h->tensor_count,
                    AEM_MAX_ENTRIES);
  if (h->meta_count > h->meta_len / AEM_MIN_META_ENTRY)
    return ae_fail (err, AE_E_FORMAT, "%u metadata entries cannot fit in %llu bytes",
                    (unsigned) h->meta_count, (unsigned long long) h->meta_len);
  if (h->tensor_count > h->table_len / AEM_MIN_TENSOR_ENTRY)
    return ae_fail (err, AE_E_FORMAT, "%u tensors cannot fit in a %llu-byte table",
                    (unsigned) h->tensor_count, (unsigned long long) h->table_len);
  return AE_OK;
}

static ae_status
parse_header (const unsigned char *p, size_t len, header *h, ae_error *err)
{
  if (len > AEM_MAX_FILE)
    return ae_fail (err, AE_E_FORMAT, "model data of %zu bytes exceeds the 1 GiB limit", len);
  ae_status st = check_identity (p, len, err);
  if (st == AE_OK)
    st = check_crc (p, len, err);
  if (st != AE_OK)
    return st;
  if (load_le (p + H_FLAGS, 4) != 0)
    return ae_fail (err, AE_E_FORMAT, "model file has unknown flags %08llx",
                    (unsigned long long) load_le (p + H_FLAGS, 4));
  if (load_le (p + H_SIZE, 4) != AEM_HEADER)
    return ae_fail (err, AE_E_FORMAT, "model header size %llu, expected %d",
                    (unsigned long long) load_le (p + H_SIZE, 4), AEM_HEADER);
  read_header (p, h);
  st = check_sections (h, len - AEM_TRAILER, err);
  return st == AE_OK ? check_counts (h, err) : st;
}

/* ---- Metadata section ---- */

/* Reads a key into buf (NUL-terminated) after checking its length and
 * characters; nothing unchecked is ever printed. */
static ae_status
get_key (rcur *r, uint32_t index, char buf[AEM_MAX_KEY + 1], ae_error *err)
{
  uint64_t klen;
  if (!get_le (r, 2, &klen))
    return ae_fail (err, AE_E_FORMAT, "metadata entry %u truncated", (unsigned) index);
  if (klen == 0 || klen > AEM_MAX_KEY || klen > remaining (r))
    return ae_fail (err, AE_E_FORMAT, "metadata entry %u: bad key length %llu", (unsigned) index,
                    (unsigned long long) klen);
  if (!token_ok ((const char *) r->p + r->pos, (size_t) klen, AEM_MAX_KEY))
    return ae_fail (err, AE_E_FORMAT, "metadata entry %u: key is not printable ASCII without "
                    "spaces", (unsigned) index);
  memcpy (buf, r->p + r->pos, (size_t) klen);
  buf[klen] = '\0';
  r->pos += (size_t) klen;
  return AE_OK;
}

static ae_status
get_string_value (rcur *r, ae_meta *meta, const char *key, ae_error *err)
{
  uint64_t slen;
  if (!get_le (r, 4, &slen) || slen > remaining (r))
    return ae_fail (err, AE_E_FORMAT, "metadata '%s': string extends past its section", key);
  if (memchr (r->p + r->pos, 0, (size_t) slen))
    return ae_fail (err, AE_E_FORMAT, "metadata '%s': string holds a NUL byte", key);
  char *s = malloc ((size_t) slen + 1);
  if (!s)
    return ae_fail (err, AE_E_NOMEM, "out of memory reading metadata '%s'", key);
  memcpy (s, r->p + r->pos, (size_t) slen);
  s[slen] = '\0';
  r->pos += (size_t) slen;
  ae_status st = ae_meta_set_str (meta, key, s); /* validates the UTF-8 */
  free (s);
  if (st == AE_E_ARG)
    return ae_fail (err, AE_E_FORMAT, "metadata '%s': string is not valid UTF-8", key);
  return st == AE_OK ? st : ae_fail (err, st, "out of memory reading metadata '%s'", key);
}

static ae_status
get_number_value (rcur *r, ae_meta *meta, const char *key, uint64_t type, ae_error *err)
{
  uint64_t bits;
  if (!get_le (r, 8, &bits))
    return ae_fail (err, AE_E_FORMAT, "metadata '%s': value extends past its section", key);
  ae_status st;
  if (type == AE_META_INT) {
    st = ae_meta_set_int (meta, key, as_signed (bits));
  } else {
    double d;
    memcpy (&d, &bits, sizeof d);
    st = ae_meta_set_float (meta, key, d);
  }
  return st == AE_OK ? st : ae_fail (err, st, "out of memory reading metadata '%s'", key);
}

static ae_status
parse_meta_entry (rcur *r, uint32_t index, ae_meta *meta, ae_error *err)
{
  char key[AEM_MAX_KEY + 1];
  uint64_t type;
  ae_status st = get_key (r, index, key, err);
  if (st != AE_OK)
    return st;
  if (ae_meta_find (meta, key))
    return ae_fail (err, AE_E_FORMAT, "duplicate metadata key '%s'", key);
  if (!get_le (r, 1, &type))
    return ae_fail (err, AE_E_FORMAT, "metadata '%s' truncated", key);
  if (type == AE_META_INT || type == AE_META_FLOAT)
    return get_number_value (r, meta, key, type, err);
  if (type == AE_META_STR)
    return get_string_value (r, meta, key, err);
  return ae_fail (err, AE_E_FORMAT, "metadata '%s' has unknown type %u", key, (unsigned) type);
}

static ae_status
parse_meta_section (const unsigned char *p, const header *h, ae_meta *meta, ae_error *err)
{
  rcur r = { p, (size_t) h->meta_off, (size_t) (h->meta_off + h->meta_len) };
  for (uint32_t i = 0; i < h->meta_count; i++) {
    ae_status st = parse_meta_entry (&r, i, meta, err);
    if (st != AE_OK)
      return st;
  }
  if (r.pos != r.end)
    return ae_fail (err, AE_E_FORMAT, "metadata section has %zu stray bytes", remaining (&r));
  return AE_OK;
}

/* ---- Tensor table and data ---- */

static ae_status
get_tensor_name (rcur *r, uint32_t index, aem_tensor *t, ae_error *err)
{
  uint64_t nlen;
  if (!get_le (r, 1, &nlen) || nlen == 0 || nlen > AEM_MAX_NAME || nlen > remaining (r))
    return ae_fail (err, AE_E_FORMAT, "tensor %u: bad name length", (unsigned) index);
  if (!token_ok ((const char *) r->p + r->pos, (size_t) nlen, AEM_MAX_NAME))
    return ae_fail (err, AE_E_FORMAT, "tensor %u: name is not printable ASCII without spaces",
                    (unsigned) index);
  memcpy (t->name, r->p + r->pos, (size_t) nlen);
  t->name[nlen] = '\0';
  r->pos += (size_t) nlen;
  return AE_OK;
}

/* dtype, rank and dimensions; *numel gets the product, at most 2^28 (a
 * larger tensor could not fit in a 1 GiB file), so nothing overflows. */
static ae_status
get_tensor_shape (rcur *r, aem_tensor *t, uint64_t *numel, ae_error *err)
{
  uint64_t dtype, rank, dim;
  if (!get_le (r, 1, &dtype) || !get_le (r, 1, &rank))
    return ae_fail (err, AE_E_FORMAT, "tensor '%s': table entry truncated", t->name);
  if (dtype != AEM_DTYPE_F32)
    return ae_fail (err, AE_E_FORMAT, "tensor '%s': unsupported data type %u", t->name,
                    (unsigned) dtype);
  if (rank < 1 || rank > AEM_MAX_DIMS)
    return ae_fail (err, AE_E_FORMAT, "tensor '%s': rank %u is not 1-%d", t->name,
                    (unsigned) rank, AEM_MAX_DIMS);
  t->ndim = (int) rank;
  *numel = 1;
  for (int d = 0; d < t->ndim; d++) {
    if (!get_le (r, 8, &dim))
      return ae_fail (err, AE_E_FORMAT, "tensor '%s': table entry truncated", t->name);
    if (dim == 0 || dim > INT64_MAX)
      return ae_fail (err, AE_E_FORMAT, "tensor '%s': dimension %d is %lld, not positive",
                      t->name, d, (long long) as_signed (dim));
    if (dim > AEM_MAX_NUMEL / *numel)
      return ae_fail (err, AE_E_FORMAT, "tensor '%s': shape too large for a model file",
                      t->name);
    t->shape[d] = (int64_t) dim;
    *numel *= dim;
  }
  return AE_OK;
}

static ae_status
check_padding (const unsigned char *p, uint64_t from, uint64_t to, const char *name,
               ae_error *err)
{
  for (uint64_t k = from; k < to; k++)
    if (p[k] != 0)
      return ae_fail (err, AE_E_FORMAT, "nonzero padding before tensor '%s'", name);
  return AE_OK;
}

/* Tensor data lie in table order, each at the first 64-byte boundary after
 * the end of the previous one (*cursor), which starts at the table's end. */
static ae_status
check_placement (const unsigned char *p, const aem_tensor *t, uint64_t off, uint64_t bytes,
                 uint64_t table_end, uint64_t body, uint64_t *cursor, ae_error *err)
{
  if (off % AEM_ALIGN)
    return ae_fail (err, AE_E_FORMAT, "tensor '%s' data at %llu is not 64-byte aligned",
                    t->name, (unsigned long long) off);
  if (off < table_end)
    return ae_fail (err, AE_E_FORMAT, "tensor '%s' data overlaps the header or tables", t->name);
  if (off < *cursor)
    return ae_fail (err, AE_E_FORMAT, "tensor '%s' data overlaps the previous tensor", t->name);
  if (off > body || bytes > body - off)
    return ae_fail (err, AE_E_FORMAT, "tensor '%s' extends past end of file", t->name);
  if (off != align_up (*cursor))
    return ae_fail (err, AE_E_FORMAT, "tensor '%s' data at %llu leaves a gap (expected %llu)",
                    t->name, (unsigned long long) off, (unsigned long long) align_up (*cursor));
  ae_status st = check_padding (p, *cursor, off, t->name, err);
  *cursor = off + bytes;
  return st;
}

static ae_status
parse_tensor_entry (rcur *r, uint32_t index, aem_tensor *t, const header *h, uint64_t body,
                    uint64_t *cursor, ae_error *err)
{
  uint64_t numel = 0, off, bytes;
  ae_status st = get_tensor_name (r, index, t, err);
  if (st == AE_OK)
    st = get_tensor_shape (r, t, &numel, err);
  if (st != AE_OK)
    return st;
  if (!get_le (r, 8, &off) || !get_le (r, 8, &bytes))
    return ae_fail (err, AE_E_FORMAT, "tensor '%s': table entry truncated", t->name);
  if (bytes != 4 * numel)
    return ae_fail (err, AE_E_FORMAT, "tensor '%s': %llu data bytes for %llu float32 values",
                    t->name, (unsigned long long) bytes, (unsigned long long) numel);
  return check_placement (r->p, t, off, bytes, h->table_off + h->table_len, body, cursor, err);
}

static ae_status
check_unique_name (const aem_tensor *t, uint32_t i, ae_error *err)
{
  for (uint32_t j = 0; j < i; j++)
    if (strcmp (t[j].name, t[i].name) == 0)
      return ae_fail (err, AE_E_FORMAT, "duplicate tensor '%s'", t[i].name);
  return AE_OK;
}

/* Walks the table (checking everything) and records each data offset. */
static ae_status
parse_tensor_table (const unsigned char *p, const header *h, uint64_t body, aem_tensor *t,
                    uint64_t *offsets, ae_error *err)
{
  rcur r = { p, (size_t) h->table_off, (size_t) (h->table_off + h->table_len) };
  uint64_t cursor = h->table_off + h->table_len;
  for (uint32_t i = 0; i < h->tensor_count; i++) {
    ae_status st = parse_tensor_entry (&r, i, &t[i], h, body, &cursor, err);
    if (st == AE_OK)
      st = check_unique_name (t, i, err);
    if (st != AE_OK)
      return st;
    offsets[i] = cursor - 4 * (uint64_t) aem_tensor_numel (&t[i]);
  }
  if (r.pos != r.end)
    return ae_fail (err, AE_E_FORMAT, "tensor table has %zu stray bytes", remaining (&r));
  if (cursor != body)
    return ae_fail (err, AE_E_FORMAT, "%llu stray bytes after the last tensor's data",
                    (unsigned long long) (body - cursor));
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
    uint32_t bits = (uint32_t) load_le (p + off + 4 * i, 4);
    memcpy (&t->data[i], &bits, sizeof bits);
  }
  return AE_OK;
}

/* With no tensors the walk still runs, to reject stray table or data bytes. */
static ae_status
parse_tensors (const unsigned char *p, const header *h, uint64_t body, aem_tensor **tensors,
               ae_error *err)
{
  uint64_t *offsets = NULL;
  if (h->tensor_count) {
    *tensors = calloc (h->tensor_count, sizeof **tensors);
    offsets = malloc (h->tensor_count * sizeof *offsets);
    if (!*tensors || !offsets) {
      free (offsets);
      return ae_fail (err, AE_E_NOMEM, "out of memory reading the tensor table");
    }
  }
  ae_status st = parse_tensor_table (p, h, body, *tensors, offsets, err);
  for (uint32_t i = 0; st == AE_OK && i < h->tensor_count; i++)
    st = load_tensor_data (p, &(*tensors)[i], offsets[i], err);
  free (offsets);
  return st;
}

ae_status
aem_parse (const void *buf, size_t len, ae_meta *meta, aem_tensor **tensors, size_t *count,
           ae_error *err)
{
  if (!meta || !tensors || !count)
    return ae_fail (err, AE_E_ARG, "aem_parse: missing outputs");
  ae_meta_init (meta);
  *tensors = NULL;
  *count = 0;
  if (!buf)
    return ae_fail (err, AE_E_ARG, "no model data");
  header h = { 0 };
  ae_status st = parse_header (buf, len, &h, err);
  if (st == AE_OK)
    st = parse_meta_section (buf, &h, meta, err);
  if (st == AE_OK)
    st = parse_tensors (buf, &h, len - AEM_TRAILER, tensors, err);
  if (st != AE_OK) {
    aem_tensors_free (*tensors, h.tensor_count);
    *tensors = NULL;
    ae_meta_free (meta);
    return st;
  }
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

/* ---- Files -------------------------------------------------------------------- */

/* Reads to EOF, growing the buffer geometrically from `hint`; pipes and
 * /proc files (whose size stat cannot tell) work too. */
static ae_status
read_fd (int fd, const char *path, size_t hint, void **out, size_t *len, ae_error *err)
{
  size_t cap = hint + 1, size = 0; /* +1: the read that sees EOF needs room */
  unsigned char *p = malloc (cap);
  for (;;) {
    if (!p)
      return ae_fail (err, AE_E_NOMEM, "out of memory reading %s", path);
    if (size > AEM_MAX_FILE) {
      free (p);
      return ae_fail (err, AE_E_FORMAT, "%s is larger than 1 GiB: not a model", path);
    }
    if (size == cap) {
      unsigned char *q = realloc (p, cap *= 2);
      if (!q)
        free (p);
      p = q;
      continue;
    }
    ssize_t got = read (fd, p + size, cap - size);
    if (got == 0)
      break;
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0) {
      int e = errno;
      free (p);
      return ae_fail (err, AE_E_IO, "cannot read %s: %s", path, strerror (e));
    }
    size += (size_t) got;
  }
  *out = p;
  *len = size;
  return AE_OK;
}

ae_status
aem_read_file (const char *path, void **buf, size_t *len, ae_error *err)
{
  if (!buf || !len)
    return ae_fail (err, AE_E_ARG, "aem_read_file: missing outputs");
  *buf = NULL;
  *len = 0;
  if (!path)
    return ae_fail (err, AE_E_ARG, "no model path");
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return ae_fail (err, AE_E_IO, "cannot open %s: %s", path, strerror (errno));
  struct stat st;
  ae_status status;
  if (fstat (fd, &st) != 0)
    status = ae_fail (err, AE_E_IO, "cannot read %s: %s", path, strerror (errno));
  else if (S_ISDIR (st.st_mode))
    status = ae_fail (err, AE_E_IO, "cannot read %s: %s", path, strerror (EISDIR));
  else if (S_ISREG (st.st_mode) && (uint64_t) st.st_size > AEM_MAX_FILE)
    status = ae_fail (err, AE_E_FORMAT, "%s is larger than 1 GiB: not a model", path);
  else
    status = read_fd (fd, path, S_ISREG (st.st_mode) ? (size_t) st.st_size : 65536, buf, len, err);
  close (fd);
  return status;
}
