/* Tests for the .aem container (lib/format.c), metadata (lib/meta.c) and
 * error helpers (lib/error.c). Prints one line per check; exits non-zero if
 * any check fails. Run it under AddressSanitizer or valgrind: every parse
 * works on an exactly sized heap copy, so a read past the end is caught,
 * and leaks show up at exit. */
#include "ae_internal.h"
#include "check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define GIB ((uint64_t) 1 << 30)

/* ---- Small helpers -------------------------------------------------------------- */

/* splitmix64: a seeded, reproducible stream for the corruption tests. */
typedef struct rng {
  uint64_t s;
} rng;

static uint64_t
rng_next (rng *r)
{
  uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static size_t
rng_below (rng *r, size_t n)
{
  return (size_t) (rng_next (r) % n);
}

static void
store_le (unsigned char *p, uint64_t v, int bytes)
{
  for (int i = 0; i < bytes; i++)
    p[i] = (unsigned char) (v >> (8 * i));
}

static uint64_t
load_le (const unsigned char *p, int bytes)
{
  uint64_t v = 0;
  for (int i = 0; i < bytes; i++)
    v |= (uint64_t) p[i] << (8 * i);
  return v;
}

static void
fix_crc (unsigned char *p, size_t len)
{
  store_le (p + len - 4, aem_crc32 (0, p, len - 4), 4);
}

static float
float_from_bits (uint32_t u)
{
  float f;
  memcpy (&f, &u, sizeof f);
  return f;
}

static double
double_from_bits (uint64_t u)
{
  double d;
  memcpy (&d, &u, sizeof d);
  return d;
}

static unsigned char *
dup_bytes (const unsigned char *p, size_t len)
{
  unsigned char *q = malloc (len ? len : 1);
  if (!q)
    abort ();
  memcpy (q, p, len);
  return q;
}

static unsigned char *
read_whole (const char *path, size_t *len)
{
  void *buf = NULL;
  ae_error err;
  if (aem_read_file (path, &buf, len, &err) != AE_OK) {
    printf ("# %s\n", err.message);
    return NULL;
  }
  return buf;
}

/* Number of directory entries (besides . and ..) whose name contains `needle`. */
static int
count_entries (const char *dir, const char *needle)
{
  DIR *d = opendir (dir);
  int n = 0;
  if (!d)
    return -1;
  for (struct dirent *e; (e = readdir (d));)
    if (strcmp (e->d_name, ".") && strcmp (e->d_name, "..") && strstr (e->d_name, needle))
      n++;
  closedir (d);
  return n;
}

static void
remove_tree (const char *dir)
{
  DIR *d = opendir (dir);
  if (!d)
    return;
  char path[1024];
  for (struct dirent *e; (e = readdir (d));) {
    if (!strcmp (e->d_name, ".") || !strcmp (e->d_name, ".."))
      continue;
    snprintf (path, sizeof path, "%s/%s", dir, e->d_name);
    if (unlink (path) != 0)
      remove_tree (path);
  }
  closedir (d);
  chmod (dir, 0700);
  rmdir (dir);
}

/* ---- Parsing helpers ---------------------------------------------------------------- */

typedef struct parsed {
  ae_status status;
  ae_meta meta;
  aem_tensor *t;
  size_t n;
  ae_error err;
} parsed;

/* Parses an exactly sized private copy; the outputs start as garbage so
 * the test sees whether aem_parse resets them. */
static parsed
parse_copy (const unsigned char *buf, size_t len)
{
  static const char poison[] = "poison";
  parsed r;
  r.meta.v = (ae_meta_entry *) (uintptr_t) poison;
  r.meta.n = r.meta.cap = 7;
  r.t = (aem_tensor *) (uintptr_t) poison;
  r.n = 7;
  memset (&r.err, 0, sizeof r.err);
  unsigned char *copy = dup_bytes (buf, len);
  r.status = aem_parse (copy, len, &r.meta, &r.t, &r.n, &r.err);
  free (copy);
  return r;
}

static void
parsed_free (parsed *r)
{
  if (r->status == AE_OK) {
    aem_tensors_free (r->t, r->n);
    ae_meta_free (&r->meta);
  }
}

static int
rejected_cleanly (const parsed *r)
{
  return r->status == AE_E_FORMAT && r->err.status == AE_E_FORMAT && r->err.message[0]
         && r->meta.n == 0 && r->meta.v == NULL && r->meta.cap == 0 && r->t == NULL && r->n == 0;
}

/* The named image must be rejected with a message containing `needle`. */
static void
expect_reject (const char *what, const unsigned char *buf, size_t len, const char *needle)
{
  parsed r = parse_copy (buf, len);
  CHECK (rejected_cleanly (&r) && strstr (r.err.message, needle), "%s: \"%s\"", what,
         r.err.message);
  parsed_free (&r);
}

/* A copy of base with `bytes` bytes at `at` set to v and the CRC recomputed,
 * so the structural checks, not the CRC, must catch the change. */
static unsigned char *
patched (const unsigned char *base, size_t len, size_t at, uint64_t v, int bytes)
{
  unsigned char *p = dup_bytes (base, len);
  store_le (p + at, v, bytes);
  fix_crc (p, len);
  return p;
}

static void
expect_patch_rejected (const char *what, const unsigned char *base, size_t len, size_t at,
                       uint64_t v, int bytes, const char *needle)
{
  unsigned char *p = patched (base, len, at, v, bytes);
  expect_reject (what, p, len, needle);
  free (p);
}

static int
same_meta (const ae_meta *a, const ae_meta *b)
{
  if (a->n != b->n)
    return 0;
  for (size_t i = 0; i < a->n; i++) {
    const ae_meta_entry *x = &a->v[i], *y = &b->v[i];
    if (strcmp (x->key, y->key) || x->type != y->type)
      return 0;
    if (x->type == AE_META_INT && x->i != y->i)
      return 0;
    if (x->type == AE_META_FLOAT && memcmp (&x->f, &y->f, sizeof x->f))
      return 0; /* bitwise: NaN payloads and -0 included */
    if (x->type == AE_META_STR && strcmp (x->s, y->s))
      return 0;
  }
  return 1;
}

static int
same_tensors (const aem_tensor *a, size_t na, const aem_tensor *b, size_t nb)
{
  if (na != nb)
    return 0;
  for (size_t i = 0; i < na; i++) {
    if (strcmp (a[i].name, b[i].name) || a[i].ndim != b[i].ndim)
      return 0;
    for (int d = 0; d < a[i].ndim; d++)
      if (a[i].shape[d] != b[i].shape[d])
        return 0;
    if (memcmp (a[i].data, b[i].data, aem_tensor_numel (&a[i]) * sizeof (float)))
      return 0;
  }
  return 1;
}

/* ---- Fixtures ---------------------------------------------------------------------- */

/* Metadata of every type with edge values, and tensors of rank 1 to 4 whose
 * values are random bit patterns (NaN payloads, denormals, infinities). */
typedef struct fixture {
  ae_meta meta;
  aem_tensor t[5];
  float data[54 + 2 + 35 + 6 + 1];
} fixture;

static void
set_tensor (aem_tensor *t, const char *name, int ndim, const int64_t *shape, float *data)
{
  memset (t, 0, sizeof *t);
  snprintf (t->name, sizeof t->name, "%s", name);
  t->ndim = ndim;
  memcpy (t->shape, shape, (size_t) ndim * sizeof *shape);
  t->data = data;
}

static void
fixture_init (fixture *fx)
{
  char long_key[256];
  memset (long_key, 'k', 255);
  long_key[0] = 'x';
  long_key[1] = '.';
  long_key[255] = '\0';
  ae_meta_init (&fx->meta);
  ae_meta_set_str (&fx->meta, "arch.spec", "conv:2:3:2:1:lrelu,dense:5");
  ae_meta_set_int (&fx->meta, "train.epochs", 20);
  ae_meta_set_int (&fx->meta, "int.min", INT64_MIN);
  ae_meta_set_int (&fx->meta, "int.max", INT64_MAX);
  ae_meta_set_float (&fx->meta, "train.lr", 1e-3);
  ae_meta_set_float (&fx->meta, "float.negzero", -0.0);
  ae_meta_set_float (&fx->meta, "float.inf", -INFINITY);
  ae_meta_set_float (&fx->meta, "float.nan", double_from_bits (0x7ff8deadbeef0001ull));
  ae_meta_set_float (&fx->meta, "float.denormal", double_from_bits (1));
  ae_meta_set_str (&fx->meta, "str.empty", "");
  ae_meta_set_str (&fx->meta, "str.utf8", "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80");
  ae_meta_set_int (&fx->meta, long_key, -1);

  rng r = { 2024 };
  for (size_t i = 0; i < sizeof fx->data / sizeof fx->data[0]; i++)
    fx->data[i] = float_from_bits ((uint32_t) rng_next (&r));
  fx->data[0] = -0.0f;
  fx->data[1] = float_from_bits (0x7fc00001u); /* NaN with payload */
  fx->data[2] = float_from_bits (1);           /* smallest denormal */
  fx->data[3] = INFINITY;

  static const int64_t s4[] = { 2, 3, 3, 3 }, s1[] = { 2 }, s2[] = { 5, 7 }, s3[] = { 1, 2, 3 },
                       s0[] = { 1 };
  set_tensor (&fx->t[0], "enc.0.w", 4, s4, fx->data);
  set_tensor (&fx->t[1], "enc.0.b", 1, s1, fx->data + 54);
  set_tensor (&fx->t[2], "dense.w", 2, s2, fx->data + 56);
  set_tensor (&fx->t[3], "x3", 3, s3, fx->data + 91);
  /* 63 characters: the longest name allowed. */
  set_tensor (&fx->t[4], "a23456789.123456789.123456789.123456789.123456789.123456789.123", 1,
              s0, fx->data + 97);
}

/* The small image whose every field offset the malicious-header tests use:
 * meta "k" = int 7 and "s" = "hi", tensors "a" [3] and "b" [2,2]. */
enum {
  SM_META = 64,        /* "k": u16 len, 'k', type, i64 */
  SM_META_S = 76,      /* "s": u16 len, 's', type, u32 len, "hi" */
  SM_TABLE = 86,       /* meta_len 22 */
  SM_A = 86,           /* "a": u8 len, 'a', dtype, rank, dim, off, bytes: 28 */
  SM_A_DIM = SM_A + 4,
  SM_A_OFF = SM_A + 12,
  SM_A_BYTES = SM_A + 20,
  SM_B = 114,          /* "b": 36 bytes */
  SM_B_DIM0 = SM_B + 4,
  SM_B_DIM1 = SM_B + 12,
  SM_B_OFF = SM_B + 20,
  SM_B_BYTES = SM_B + 28,
  SM_TABLE_END = 150,  /* table_len 64 */
  SM_A_DATA = 192,     /* first 64-byte boundary after the table; 12 bytes */
  SM_B_DATA = 256,     /* 16 bytes */
  SM_LEN = 276         /* 272 + CRC */
};

static float small_a[3] = { 1.0f, -2.5f, 3.25f };
static float small_b[4] = { 0.5f, 0.25f, -0.125f, 1e-30f };

static void
small_model (ae_meta *meta, aem_tensor t[2])
{
  static const int64_t sa[] = { 3 }, sb[] = { 2, 2 };
  ae_meta_init (meta);
  ae_meta_set_int (meta, "k", 7);
  ae_meta_set_str (meta, "s", "hi");
  set_tensor (&t[0], "a", 1, sa, small_a);
  set_tensor (&t[1], "b", 2, sb, small_b);
}

/* The same image built by hand from docs/model-format.md, byte by byte,
 * independently of the writer. */
static void
small_image_by_hand (unsigned char img[SM_LEN])
{
  memset (img, 0, SM_LEN);
  memcpy (img, "AEMF", 4);
  store_le (img + 4, 1, 4);               /* version */
  store_le (img + 8, 0, 4);               /* flags */
  store_le (img + 12, 64, 4);             /* header size */
  store_le (img + 16, SM_LEN, 8);         /* file length */
  store_le (img + 24, SM_META, 8);        /* metadata offset */
  store_le (img + 32, SM_TABLE - SM_META, 8);
  store_le (img + 40, SM_TABLE, 8);       /* tensor table offset */
  store_le (img + 48, SM_TABLE_END - SM_TABLE, 8);
  store_le (img + 56, 2, 4);              /* metadata entries */
  store_le (img + 60, 2, 4);              /* tensors */
  unsigned char *m = img + SM_META;
  store_le (m, 1, 2), m[2] = 'k', m[3] = 1, store_le (m + 4, 7, 8);
  m = img + SM_META_S;
  store_le (m, 1, 2), m[2] = 's', m[3] = 3, store_le (m + 4, 2, 4), m[8] = 'h', m[9] = 'i';
  unsigned char *a = img + SM_A;
  a[0] = 1, a[1] = 'a', a[2] = 1, a[3] = 1, store_le (a + 4, 3, 8);
  store_le (a + 12, SM_A_DATA, 8), store_le (a + 20, 12, 8);
  unsigned char *b = img + SM_B;
  b[0] = 1, b[1] = 'b', b[2] = 1, b[3] = 2, store_le (b + 4, 2, 8), store_le (b + 12, 2, 8);
  store_le (b + 20, SM_B_DATA, 8), store_le (b + 28, 16, 8);
  for (int i = 0; i < 3; i++) {
    uint32_t u;
    memcpy (&u, &small_a[i], 4);
    store_le (img + SM_A_DATA + 4 * i, u, 4);
  }
  for (int i = 0; i < 4; i++) {
    uint32_t u;
    memcpy (&u, &small_b[i], 4);
    store_le (img + SM_B_DATA + 4 * i, u, 4);
  }
  fix_crc (img, SM_LEN);
}

/* ---- Error helpers and metadata ---------------------------------------------------- */

static void
test_errors (void)
{
  ae_error err;
  CHECK (ae_fail (NULL, AE_E_IO, "x %d", 1) == AE_E_IO, "ae_fail with no ae_error returns the status");
  CHECK (ae_fail (&err, AE_E_SHAPE, "bad %s %d", "size", 7) == AE_E_SHAPE
         && err.status == AE_E_SHAPE && strcmp (err.message, "bad size 7") == 0,
         "ae_fail formats the message: \"%s\"", err.message);
  char big[600];
  memset (big, 'z', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  ae_fail (&err, AE_E_ARG, "%s", big);
  CHECK (strlen (err.message) == sizeof err.message - 1, "a long message is cut, not overflowed");
  int distinct = 1;
  for (int i = AE_OK; i <= AE_E_CANCELLED; i++)
    for (int j = AE_OK; j < i; j++)
      distinct &= strcmp (ae_status_name ((ae_status) i), ae_status_name ((ae_status) j)) != 0;
  CHECK (distinct && strcmp (ae_status_name ((ae_status) 99), "unknown error") == 0
         && strcmp (ae_status_name ((ae_status) -1), "unknown error") == 0,
         "status names distinct (\"%s\", \"%s\"), out-of-range ones unknown",
         ae_status_name (AE_OK), ae_status_name (AE_E_FORMAT));
}

static void
test_meta_keys (void)
{
  ae_meta m;
  ae_meta_init (&m);
  char k255[256], k256[257];
  memset (k255, 'a', 255), k255[255] = '\0';
  memset (k256, 'a', 256), k256[256] = '\0';
  static const char *const bad[] = { "", "has space", "tab\there", "del\x7f", "caf\xc3\xa9",
                                     "new\nline" };
  int all_refused = ae_meta_set_int (&m, NULL, 1) == AE_E_ARG
                    && ae_meta_set_int (&m, k256, 1) == AE_E_ARG;
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    all_refused &= ae_meta_set_int (&m, bad[i], 1) == AE_E_ARG
                   && ae_meta_set_str (&m, bad[i], "v") == AE_E_ARG;
  CHECK (all_refused && m.n == 0, "invalid keys refused (empty, spaces, controls, non-ASCII, 256 chars)");
  CHECK (ae_meta_set_int (&m, k255, 1) == AE_OK && ae_meta_set_int (&m, "a.b-c_d:e/9", 2) == AE_OK,
         "255-character and punctuated keys accepted");

  static const char *const bad_utf8[] = { "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                                          "\xe2\x82", "\xff", "\x80", "ok\xc3" };
  all_refused = ae_meta_set_str (&m, "s", NULL) == AE_E_ARG;
  for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++)
    all_refused &= ae_meta_set_str (&m, "s", bad_utf8[i]) == AE_E_ARG;
  CHECK (all_refused && !ae_meta_find (&m, "s"),
         "NULL and invalid UTF-8 strings refused (overlong, surrogate, > U+10FFFF, cut)");
  CHECK (ae_meta_set_str (&m, "s", "\xe2\x82\xac \xf0\x9d\x84\x9e \xf4\x8f\xbf\xbf") == AE_OK,
         "valid multibyte UTF-8 accepted");
  ae_meta_free (&m);
  ae_meta_free (&m); /* freeing twice is harmless: free leaves it empty */
  CHECK (m.n == 0 && m.v == NULL, "ae_meta_free leaves an empty list");
}

static void
test_meta_values (void)
{
  ae_meta m;
  ae_meta_init (&m);
  char src[] = "original";
  ae_meta_set_int (&m, "a", 1);
  ae_meta_set_str (&m, "b", src);
  ae_meta_set_float (&m, "c", 2.5);
  src[0] = 'X';
  const ae_meta_entry *b = ae_meta_find (&m, "b");
  CHECK (b && b->type == AE_META_STR && strcmp (b->s, "original") == 0 && b->s != src,
         "strings are copied");
  ae_meta_set_float (&m, "b", -1.5);
  ae_meta_set_str (&m, "a", "now a string");
  ae_meta_set_int (&m, "c", 42);
  CHECK (m.n == 3 && !strcmp (m.v[0].key, "a") && m.v[0].type == AE_META_STR
         && !strcmp (m.v[0].s, "now a string") && !strcmp (m.v[1].key, "b")
         && m.v[1].type == AE_META_FLOAT && m.v[1].f == -1.5 && m.v[1].s == NULL
         && m.v[2].type == AE_META_INT && m.v[2].i == 42,
         "set replaces in place; the type may change; old strings released");
  char key[32];
  int ok = 1;
  for (int i = 0; i < 40; i++) {
    snprintf (key, sizeof key, "k.%d", i);
    ok &= ae_meta_set_int (&m, key, i) == AE_OK;
  }
  for (int i = 0; i < 40; i++) {
    snprintf (key, sizeof key, "k.%d", i);
    ok &= !strcmp (m.v[3 + i].key, key) && m.v[3 + i].i == i;
  }
  CHECK (ok && m.n == 43, "insertion order kept across growth (43 entries)");
  CHECK (!ae_meta_find (&m, "missing") && !ae_meta_find (&m, NULL), "find: absent and NULL keys");

  ae_meta copy, empty_copy, empty;
  ae_meta_init (&empty);
  CHECK (ae_meta_copy (&copy, &m) == AE_OK && same_meta (&copy, &m) && copy.v[0].s != m.v[0].s
         && copy.v[0].key != m.v[0].key, "ae_meta_copy copies deeply");
  ae_meta_free (&m);
  CHECK (copy.n == 43 && !strcmp (copy.v[0].s, "now a string") && ae_meta_set_int (&copy, "new", 1)
         == AE_OK && copy.n == 44, "the copy outlives its source and still grows");
  CHECK (ae_meta_copy (&empty_copy, &empty) == AE_OK && empty_copy.n == 0, "copy of an empty list");
  ae_meta_free (&copy);
  ae_meta_free (&empty_copy);
}

static void
test_crc (void)
{
  const char *s = "123456789", *fox = "The quick brown fox jumps over the lazy dog";
  CHECK (aem_crc32 (0, s, 9) == 0xCBF43926u, "CRC-32 check value of \"123456789\"");
  CHECK (aem_crc32 (0, fox, strlen (fox)) == 0x414FA339u && aem_crc32 (0, "", 0) == 0,
         "CRC-32 of the fox sentence and of nothing");
  CHECK (aem_crc32 (aem_crc32 (0, fox, 10), fox + 10, strlen (fox) - 10)
         == aem_crc32 (0, fox, strlen (fox)), "CRC-32 can be computed in pieces");
}

/* ---- Writing and reading ----------------------------------------------------------- */

static void
test_golden (const char *dir)
{
  char path[512];
  snprintf (path, sizeof path, "%s/small.aem", dir);
  ae_meta meta;
  aem_tensor t[2];
  ae_error err;
  small_model (&meta, t);
  ae_status st = aem_write (path, &meta, t, 2, &err);
  size_t len = 0;
  unsigned char *img = st == AE_OK ? read_whole (path, &len) : NULL;
  unsigned char want[SM_LEN];
  small_image_by_hand (want);
  CHECK (img && len == SM_LEN && memcmp (img, want, SM_LEN) == 0,
         "writer output equals the image built by hand from the spec (%zu bytes)", len);
  parsed r = parse_copy (want, SM_LEN);
  CHECK (r.status == AE_OK && same_meta (&r.meta, &meta) && same_tensors (r.t, r.n, t, 2),
         "hand-built image parses to the same model");
  parsed_free (&r);
  free (img);
  ae_meta_free (&meta);
  unlink (path);
}

static void
test_round_trip (const char *dir)
{
  fixture fx;
  ae_error err;
  char path[512], path2[512];
  fixture_init (&fx);
  snprintf (path, sizeof path, "%s/model.aem", dir);
  snprintf (path2, sizeof path2, "%s/again.aem", dir);
  CHECK (aem_write (path, &fx.meta, fx.t, 5, &err) == AE_OK, "write a model with %zu metadata "
         "entries and 5 tensors (rank 1-4)", fx.meta.n);
  size_t len = 0;
  unsigned char *img = read_whole (path, &len);
  CHECK (img && len > 68 && !memcmp (img, "AEMF", 4) && load_le (img + 4, 4) == 1
         && load_le (img + 16, 8) == len && load_le (img + len - 4, 4) == aem_crc32 (0, img, len - 4),
         "file starts AEMF, version 1, length %zu, CRC in the last 4 bytes", len);
  if (!img)
    return;
  parsed r = parse_copy (img, len);
  CHECK (r.status == AE_OK, "parse the written file: %s", r.status ? r.err.message : "ok");
  CHECK (r.status == AE_OK && same_meta (&r.meta, &fx.meta),
         "metadata identical: order, types, INT64_MIN/MAX, -0, -inf, NaN payload, UTF-8");
  CHECK (r.status == AE_OK && same_tensors (r.t, r.n, fx.t, 5),
         "tensors identical: names, shapes, float bits");
  int aligned = 1;
  for (size_t i = 0; r.status == AE_OK && i < r.n; i++)
    aligned &= ((uintptr_t) r.t[i].data % sizeof (float)) == 0;
  CHECK (aligned, "loaded tensor buffers are float-aligned");

  /* Canonical: writing what was read reproduces the file byte for byte. */
  size_t len2 = 0;
  unsigned char *img2 = NULL;
  if (r.status == AE_OK && aem_write (path2, &r.meta, r.t, r.n, &err) == AE_OK)
    img2 = read_whole (path2, &len2);
  CHECK (img2 && len2 == len && memcmp (img, img2, len) == 0, "parse -> write is byte-identical");
  free (img2);
  parsed_free (&r);

  ae_meta empty;
  ae_meta_init (&empty);
  img2 = aem_write (path2, &empty, NULL, 0, &err) == AE_OK ? read_whole (path2, &len2) : NULL;
  r = parse_copy (img2 ? img2 : img, img2 ? len2 : 0);
  CHECK (img2 && len2 == 68 && r.status == AE_OK && r.n == 0 && r.t == NULL && r.meta.n == 0,
         "an empty model is a 68-byte file that parses");
  parsed_free (&r);
  free (img2);
  free (img);
  unlink (path2);
  unlink (path);
  ae_meta_free (&fx.meta);
}

static void
test_write_refusals (const char *dir)
{
  char path[512];
  snprintf (path, sizeof path, "%s/refused.aem", dir);
  ae_meta meta;
  aem_tensor t[2];
  ae_error err;
  small_model (&meta, t);
  CHECK (aem_write (NULL, &meta, t, 2, &err) == AE_E_ARG && aem_write (path, NULL, t, 2, &err) == AE_E_ARG
         && aem_write (path, &meta, NULL, 2, &err) == AE_E_ARG, "missing arguments refused");

  static const char *const cases[] = {
    "empty name", "name with a space", "64-byte name, no NUL", "rank 0", "rank 5",
    "zero dimension", "negative dimension", "overflowing shape", "no data", "duplicate name",
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    ae_meta_free (&meta);
    small_model (&meta, t);
    switch (c) {
    case 0: t[1].name[0] = '\0'; break;
    case 1: strcpy (t[1].name, "b c"); break;
    case 2: memset (t[1].name, 'n', sizeof t[1].name); break;
    case 3: t[1].ndim = 0; break;
    case 4: t[1].ndim = 5; break;
    case 5: t[1].shape[1] = 0; break;
    case 6: t[1].shape[0] = -3; break;
    case 7: t[1].shape[0] = t[1].shape[1] = (int64_t) 1 << 32; break;
    case 8: t[1].data = NULL; break;
    case 9: strcpy (t[1].name, "a"); break;
    }
    ae_status st = aem_write (path, &meta, t, 2, &err);
    CHECK (st == AE_E_ARG && access (path, F_OK) != 0, "write refuses %s: \"%s\"", cases[c],
           err.message);
  }

  /* 2^28 floats: each tensor fits, the file would not. */
  static const int64_t huge[] = { (int64_t) 1 << 28 };
  aem_tensor big;
  set_tensor (&big, "big", 1, huge, small_a);
  CHECK (aem_write (path, &meta, &big, 1, &err) == AE_E_ARG && access (path, F_OK) != 0,
         "write refuses a model over 1 GiB before touching its data: \"%s\"", err.message);

  ae_meta many;
  ae_meta_init (&many);
  char key[32];
  for (int i = 0; i < 4097; i++) {
    snprintf (key, sizeof key, "k.%d", i);
    ae_meta_set_int (&many, key, i);
  }
  CHECK (aem_write (path, &many, t, 0, &err) == AE_E_ARG, "write refuses 4097 metadata entries: \"%s\"",
         err.message);
  ae_meta_free (&many);

  meta.v[0].type = (ae_meta_type) 9; /* a list built by hand, not by ae_meta_set_* */
  CHECK (aem_write (path, &meta, t, 2, &err) == AE_E_ARG && access (path, F_OK) != 0,
         "write refuses an unknown metadata type: \"%s\"", err.message);
  meta.v[0].type = AE_META_INT;
  ae_meta_free (&meta);
}

static void
test_atomic_write (const char *dir)
{
  char sub[512], path[600], bad[700];
  snprintf (sub, sizeof sub, "%s/atomic", dir);
  mkdir (sub, 0700);
  snprintf (path, sizeof path, "%s/model.aem", sub);
  fixture fx;
  ae_meta small_meta;
  aem_tensor small_t[2];
  ae_error err;
  fixture_init (&fx);
  small_model (&small_meta, small_t);
  mode_t old_mask = umask (022);

  ae_status st = aem_write (path, &small_meta, small_t, 2, &err);
  struct stat sb;
  CHECK (st == AE_OK && stat (path, &sb) == 0 && (sb.st_mode & 0777) == 0644,
         "new file gets 0666 minus the umask (0644), like any other new file");
  st = aem_write (path, &fx.meta, fx.t, 5, &err);
  size_t len = 0;
  unsigned char *img = read_whole (path, &len);
  parsed r = parse_copy (img ? img : (const unsigned char *) "", len);
  CHECK (st == AE_OK && r.status == AE_OK && r.n == 5, "overwrite replaces the old model");
  parsed_free (&r);
  CHECK (count_entries (sub, "") == 1 && count_entries (sub, ".tmp") == 0,
         "no temporary files left after writes");

  snprintf (bad, sizeof bad, "%s/no-such-dir/m.aem", sub);
  st = aem_write (bad, &fx.meta, fx.t, 5, &err);
  CHECK (st == AE_E_IO && err.status == AE_E_IO && strstr (err.message, strerror (ENOENT)),
         "missing directory: AE_E_IO \"%s\"", err.message);
  snprintf (bad, sizeof bad, "%s/sub", path);
  st = aem_write (bad, &fx.meta, fx.t, 5, &err);
  CHECK (st == AE_E_IO && strstr (err.message, strerror (ENOTDIR)),
         "a file as directory: AE_E_IO \"%s\"", err.message);

  snprintf (bad, sizeof bad, "%s/ro", sub);
  mkdir (bad, 0500);
  char in_ro[800];
  snprintf (in_ro, sizeof in_ro, "%s/m.aem", bad);
  if (geteuid () != 0) {
    st = aem_write (in_ro, &fx.meta, fx.t, 5, &err);
    CHECK (st == AE_E_IO && strstr (err.message, strerror (EACCES)) && count_entries (bad, "") == 0,
           "read-only directory: AE_E_IO \"%s\", nothing created", err.message);
  } else {
    /* root writes anywhere it may chmod; /proc refuses even root. */
    st = aem_write ("/proc/ae-test-format.aem", &fx.meta, fx.t, 5, &err);
    CHECK (st == AE_E_IO && access ("/proc/ae-test-format.aem", F_OK) != 0,
           "unwritable directory (/proc, running as root): AE_E_IO \"%s\"", err.message);
  }
  rmdir (bad);

  snprintf (bad, sizeof bad, "%s/a-directory", sub);
  mkdir (bad, 0700);
  st = aem_write (bad, &fx.meta, fx.t, 5, &err);
  CHECK (st == AE_E_IO && stat (bad, &sb) == 0 && S_ISDIR (sb.st_mode)
         && count_entries (sub, ".tmp") == 0,
         "a directory as target: AE_E_IO \"%s\", temp removed", err.message);
  rmdir (bad);

  /* A write that fails half way (file size limit: EFBIG) must leave the
   * old model untouched and no temporary file behind. */
  struct rlimit saved, small = { 100, 0 };
  getrlimit (RLIMIT_FSIZE, &saved);
  small.rlim_max = saved.rlim_max;
  void (*old_handler) (int) = signal (SIGXFSZ, SIG_IGN);
  setrlimit (RLIMIT_FSIZE, &small);
  st = aem_write (path, &small_meta, small_t, 2, &err);
  char msg[256];
  snprintf (msg, sizeof msg, "%s", err.message);
  setrlimit (RLIMIT_FSIZE, &saved);
  signal (SIGXFSZ, old_handler);
  size_t len2 = 0;
  unsigned char *img2 = read_whole (path, &len2);
  CHECK (st == AE_E_IO && strstr (msg, strerror (EFBIG)) && img2 && len2 == len
         && memcmp (img, img2, len) == 0 && count_entries (sub, ".tmp") == 0,
         "failed write (EFBIG) keeps the old file whole, no temp: \"%s\"", msg);
  free (img2);
  free (img);
  umask (old_mask);
  ae_meta_free (&small_meta);
  ae_meta_free (&fx.meta);
}

static void
test_read_file (const char *dir)
{
  char path[512];
  void *buf = NULL;
  size_t len = 7;
  ae_error err;
  snprintf (path, sizeof path, "%s/missing.aem", dir);
  ae_status st = aem_read_file (path, &buf, &len, &err);
  CHECK (st == AE_E_IO && !buf && len == 0 && strstr (err.message, path)
         && strstr (err.message, strerror (ENOENT)), "missing file: \"%s\"", err.message);
  st = aem_read_file (dir, &buf, &len, &err);
  CHECK (st == AE_E_IO && !buf && strstr (err.message, strerror (EISDIR)),
         "directory: \"%s\"", err.message);

  snprintf (path, sizeof path, "%s/empty.aem", dir);
  int fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  close (fd);
  st = aem_read_file (path, &buf, &len, &err);
  CHECK (st == AE_OK && len == 0, "empty file reads as 0 bytes");
  free (buf);

  snprintf (path, sizeof path, "%s/sparse.aem", dir);
  fd = open (path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
  int sized = fd >= 0 && ftruncate (fd, (off_t) GIB + 1) == 0;
  close (fd);
  st = aem_read_file (path, &buf, &len, &err);
  CHECK (sized && st == AE_E_FORMAT && !buf && len == 0,
         "file over 1 GiB refused without reading it: \"%s\"", err.message);
  unlink (path);

  /* stat reports size 0 for /proc files: the reader must grow its buffer. */
  st = aem_read_file ("/proc/self/maps", &buf, &len, &err);
  CHECK (st == AE_OK && len > 0 && memchr (buf, '\n', len), "reads files of unknown size "
         "(/proc/self/maps: %zu bytes)", len);
  free (buf);
}

/* ---- Rejection: truncation, hostile headers, random corruption --------------------- */

static void
test_truncations (const unsigned char *img, size_t len)
{
  size_t bad = 0;
  char first[256] = "", mid[256] = "";
  for (size_t n = 0; n < len; n++) {
    parsed r = parse_copy (img, n);
    if (!rejected_cleanly (&r)) {
      bad++;
      parsed_free (&r);
    }
    if (n == 3)
      snprintf (first, sizeof first, "%s", r.err.message);
    if (n == len / 2)
      snprintf (mid, sizeof mid, "%s", r.err.message);
  }
  CHECK (bad == 0, "all %zu truncations rejected cleanly (\"%s\", \"%s\")", len, first, mid);
  unsigned char *longer = malloc (len + 1);
  memcpy (longer, img, len);
  longer[len] = 0;
  expect_reject ("one byte appended", longer, len + 1, "more than its header declares");
  free (longer);
}

static void
test_hostile_header (const unsigned char *s)
{
  unsigned char *p = dup_bytes (s, SM_LEN);
  p[SM_A_DATA] ^= 1;
  expect_reject ("changed data, stale CRC", p, SM_LEN, "CRC mismatch");
  free (p);
  expect_reject ("empty buffer", s, 0, "truncated: 0 bytes");
  expect_reject ("foreign file", (const unsigned char *) "GIF89a-not-a-model", 18, "magic");
  expect_patch_rejected ("bad magic", s, SM_LEN, 3, 'X', 1, "magic");
  expect_patch_rejected ("version 2", s, SM_LEN, 4, 2, 4, "version 2");
  expect_patch_rejected ("flags set", s, SM_LEN, 8, 1, 4, "flags");
  expect_patch_rejected ("header size 128", s, SM_LEN, 12, 128, 4, "header size");
  expect_patch_rejected ("declared length + 1", s, SM_LEN, 16, SM_LEN + 1, 8,
                         "truncated: 276 of 277 bytes");
  expect_patch_rejected ("declared length 2^64-1", s, SM_LEN, 16, UINT64_MAX, 8, "truncated");
  expect_patch_rejected ("declared length - 1", s, SM_LEN, 16, SM_LEN - 1, 8, "more than");
  expect_patch_rejected ("metadata offset 0", s, SM_LEN, 24, 0, 8, "not right after the header");
  expect_patch_rejected ("metadata offset 2^64-1", s, SM_LEN, 24, UINT64_MAX, 8, "not right after");
  expect_patch_rejected ("metadata length 2^64-1", s, SM_LEN, 32, UINT64_MAX, 8, "past end of file");
  expect_patch_rejected ("metadata length 1 past the end", s, SM_LEN, 32, SM_LEN - 4 - 64 + 1, 8,
                         "past end of file");
  expect_patch_rejected ("metadata length 21", s, SM_LEN, 32, 21, 8, "not right after the metadata");
  expect_patch_rejected ("table offset 2^64-8", s, SM_LEN, 40, UINT64_MAX - 7, 8, "not right after");
  expect_patch_rejected ("table length wrapping past 2^64", s, SM_LEN, 48,
                         UINT64_MAX - SM_TABLE + 2, 8, "past end of file");
  expect_patch_rejected ("metadata count 2^32-1", s, SM_LEN, 56, UINT32_MAX, 4, "limit");
  expect_patch_rejected ("tensor count 2^32-1", s, SM_LEN, 60, UINT32_MAX, 4, "limit");
  expect_patch_rejected ("tensor count 3 (2 present)", s, SM_LEN, 60, 3, 4, "cannot fit");
  expect_patch_rejected ("metadata count 3 (2 present)", s, SM_LEN, 56, 3, 4, "cannot fit");
  expect_patch_rejected ("metadata count 1 (2 present)", s, SM_LEN, 56, 1, 4, "stray bytes");
  expect_patch_rejected ("tensor count 1 (2 present)", s, SM_LEN, 60, 1, 4, "stray bytes");
  expect_patch_rejected ("tensor count 0 (2 present)", s, SM_LEN, 60, 0, 4, "stray bytes");
  unsigned char *q = patched (s, SM_LEN, 48, SM_TABLE_END - SM_TABLE + 1, 8);
  expect_reject ("table length + 1 (a stray byte)", q, SM_LEN, "stray bytes");
  free (q);
}

static void
test_hostile_metadata (const unsigned char *s)
{
  expect_patch_rejected ("key length 0", s, SM_LEN, SM_META, 0, 2, "bad key length");
  expect_patch_rejected ("key length 256", s, SM_LEN, SM_META, 256, 2, "bad key length");
  expect_patch_rejected ("key length 65535", s, SM_LEN, SM_META, 65535, 2, "bad key length");
  expect_patch_rejected ("key with a space", s, SM_LEN, SM_META + 2, ' ', 1, "printable");
  expect_patch_rejected ("key with DEL", s, SM_LEN, SM_META + 2, 0x7f, 1, "printable");
  expect_patch_rejected ("key with a high byte", s, SM_LEN, SM_META + 2, 0xc3, 1, "printable");
  expect_patch_rejected ("type 0", s, SM_LEN, SM_META + 3, 0, 1, "unknown type 0");
  expect_patch_rejected ("type 4", s, SM_LEN, SM_META + 3, 4, 1, "unknown type 4");
  expect_patch_rejected ("int changed to string", s, SM_LEN, SM_META + 3, 3, 1,
                         "metadata 'k': string");
  expect_patch_rejected ("string length 2^32-1", s, SM_LEN, SM_META_S + 4, UINT32_MAX, 4,
                         "past its section");
  expect_patch_rejected ("string length 3 (2 present)", s, SM_LEN, SM_META_S + 4, 3, 4,
                         "past its section");
  expect_patch_rejected ("string length 1", s, SM_LEN, SM_META_S + 4, 1, 4, "stray bytes");
  expect_patch_rejected ("string with NUL", s, SM_LEN, SM_META_S + 9, 0, 1, "NUL");
  expect_patch_rejected ("string overlong UTF-8", s, SM_LEN, SM_META_S + 8, 0x80c0, 2, "UTF-8");
  expect_patch_rejected ("string cut UTF-8", s, SM_LEN, SM_META_S + 9, 0xe2, 1, "UTF-8");
  expect_patch_rejected ("duplicate key", s, SM_LEN, SM_META_S + 2, 'k', 1,
                         "duplicate metadata key 'k'");
}

static void
test_hostile_tensors (const unsigned char *s)
{
  expect_patch_rejected ("name length 0", s, SM_LEN, SM_A, 0, 1, "bad name length");
  expect_patch_rejected ("name length 64", s, SM_LEN, SM_A, 64, 1, "bad name length");
  expect_patch_rejected ("name length 255", s, SM_LEN, SM_A, 255, 1, "bad name length");
  expect_patch_rejected ("name with a space", s, SM_LEN, SM_A + 1, ' ', 1, "printable");
  expect_patch_rejected ("dtype 2", s, SM_LEN, SM_A + 2, 2, 1, "data type 2");
  expect_patch_rejected ("rank 0", s, SM_LEN, SM_A + 3, 0, 1, "rank 0");
  expect_patch_rejected ("rank 5", s, SM_LEN, SM_A + 3, 5, 1, "rank 5");
  expect_patch_rejected ("rank 2 for a 1-D entry", s, SM_LEN, SM_A + 3, 2, 1, "'a'");
  expect_patch_rejected ("dimension 0", s, SM_LEN, SM_A_DIM, 0, 8, "not positive");
  expect_patch_rejected ("dimension -1", s, SM_LEN, SM_A_DIM, UINT64_MAX, 8, "-1, not positive");
  expect_patch_rejected ("dimension 2^40", s, SM_LEN, SM_A_DIM, (uint64_t) 1 << 40, 8, "too large");
  /* 2^32 x 2^32 floats: 2^66 bytes, 0 modulo 2^64. */
  unsigned char *p = patched (s, SM_LEN, SM_B_DIM0, (uint64_t) 1 << 32, 8);
  store_le (p + SM_B_DIM1, (uint64_t) 1 << 32, 8);
  store_le (p + SM_B_BYTES, 0, 8);
  fix_crc (p, SM_LEN);
  expect_reject ("shape whose byte count wraps to 0", p, SM_LEN, "too large");
  free (p);
  expect_patch_rejected ("byte length != 4 x numel", s, SM_LEN, SM_A_BYTES, 16, 8,
                         "16 data bytes for 3 float32 values");
  expect_patch_rejected ("dimension 4 (3 stored)", s, SM_LEN, SM_A_DIM, 4, 8, "12 data bytes for 4");
  expect_patch_rejected ("misaligned data", s, SM_LEN, SM_A_OFF, SM_A_DATA + 4, 8, "aligned");
  expect_patch_rejected ("data offset 0 (header)", s, SM_LEN, SM_A_OFF, 0, 8, "overlaps the header");
  expect_patch_rejected ("data offset 128 (in the table)", s, SM_LEN, SM_A_OFF, 128, 8,
                         "overlaps the header or tables");
  expect_patch_rejected ("data overlapping the previous tensor", s, SM_LEN, SM_B_OFF, SM_A_DATA, 8,
                         "overlaps the previous tensor");
  expect_patch_rejected ("data offset 2^64-64", s, SM_LEN, SM_B_OFF, UINT64_MAX - 63, 8,
                         "tensor 'b' extends past end of file");
  expect_patch_rejected ("data offset past the end", s, SM_LEN, SM_B_OFF, 320, 8,
                         "extends past end of file");
  expect_patch_rejected ("gap before the data", s, SM_LEN, SM_A_OFF, SM_B_DATA, 8, "gap");
  expect_patch_rejected ("nonzero padding", s, SM_LEN, SM_A_DATA + 12, 0x55, 1, "nonzero padding");
  expect_patch_rejected ("duplicate tensor name", s, SM_LEN, SM_B + 1, 'a', 1, "duplicate tensor 'a'");

  /* 64 extra bytes after the last tensor, length and CRC made consistent. */
  size_t n = SM_LEN + 64;
  unsigned char *longer = calloc (1, n);
  memcpy (longer, s, SM_LEN - 4);
  store_le (longer + 16, n, 8);
  fix_crc (longer, n);
  expect_reject ("stray data after the last tensor", longer, n, "stray bytes after the last");
  free (longer);
}

/* A header declaring more metadata entries than the format allows, each
 * section otherwise consistent. */
static void
test_entry_limit (const char *dir)
{
  char path[512], key[32];
  snprintf (path, sizeof path, "%s/many.aem", dir);
  ae_meta many;
  ae_error err;
  ae_meta_init (&many);
  for (int i = 0; i < 4096; i++) {
    snprintf (key, sizeof key, "key.%04d", i);
    ae_meta_set_int (&many, key, i);
  }
  ae_status st = aem_write (path, &many, NULL, 0, &err);
  size_t len = 0;
  unsigned char *img = st == AE_OK ? read_whole (path, &len) : NULL;
  parsed r = img ? parse_copy (img, len) : (parsed) { .status = AE_E_IO };
  CHECK (r.status == AE_OK && r.meta.n == 4096, "4096 metadata entries (the limit) round-trip");
  parsed_free (&r);
  if (img) {
    /* 4097 entries would need another 8+ bytes; the count alone is enough to refuse. */
    expect_patch_rejected ("metadata count 4097", img, len, 56, 4097, 4, "(limit 4096 each)");
  }
  free (img);
  ae_meta_free (&many);
  unlink (path);
}

/* Everything a parse returned must be well formed and readable. */
static int
sane (const parsed *r)
{
  double sum = 0;
  for (size_t i = 0; i < r->meta.n; i++) {
    const ae_meta_entry *e = &r->meta.v[i];
    if (!e->key || !*e->key || strlen (e->key) > 255 || (e->type == AE_META_STR && !e->s))
      return 0;
  }
  for (size_t i = 0; i < r->n; i++) {
    const aem_tensor *t = &r->t[i];
    if (!t->name[0] || t->ndim < 1 || t->ndim > AEM_MAX_DIMS || !t->data)
      return 0;
    for (int d = 0; d < t->ndim; d++)
      if (t->shape[d] <= 0)
        return 0;
    for (size_t j = 0; j < aem_tensor_numel (t); j++)
      sum += t->data[j] != t->data[j] ? 0 : 1; /* touches every value */
  }
  return sum >= 0;
}

/* Does writing the parsed result reproduce `img`? (The layout is canonical.) */
static int
rewrites_identically (const parsed *r, const char *path, const unsigned char *img, size_t len)
{
  ae_error err;
  if (aem_write (path, &r->meta, r->t, r->n, &err) != AE_OK)
    return 0;
  size_t len2 = 0;
  unsigned char *img2 = read_whole (path, &len2);
  int same = img2 && len2 == len && memcmp (img2, img, len) == 0;
  free (img2);
  return same;
}

enum { STALE_CRC, ANYWHERE, HEADER_ONLY, FIELD_VALUES, BIT_FLIP, SPLICE, N_MODES };

/* Overwrites a 1/2/4/8-byte field with a value chosen to sit on a boundary. */
static void
write_interesting (rng *g, unsigned char *p, size_t body)
{
  const uint64_t values[] = { 0, 1, 2, 3, 4, 7, 8, 63, 64, 65, 127, 128, 255, 256, 0x7fff,
                              0xffff, 0x7fffffff, 0x80000000u, 0xffffffffu, (uint64_t) 1 << 32,
                              INT64_MAX, (uint64_t) INT64_MAX + 1, UINT64_MAX, body, body + 4,
                              body - 64, body / 2 };
  static const int widths[] = { 1, 2, 4, 8 };
  int w = widths[rng_below (g, 4)];
  uint64_t v = values[rng_below (g, sizeof values / sizeof values[0])];
  if (rng_below (g, 4) == 0)
    v += rng_below (g, 3) - 1;
  size_t at = rng_below (g, body - (size_t) w + 1);
  store_le (p + at, v, w);
}

/* A corrupted copy of img, exactly sized (for ASan), CRC fixed unless
 * STALE_CRC. SPLICE deletes or inserts a span and fixes the declared length
 * too, so everything after it shifts under valid header checks. */
static unsigned char *
corrupt (rng *g, int mode, const unsigned char *img, size_t len, size_t *out_len)
{
  size_t body = len - 4, n = len;
  unsigned char *p;
  if (mode == SPLICE) {
    size_t at = 64 + rng_below (g, body - 64), span = 1 + rng_below (g, 16);
    int insert = (int) rng_below (g, 2) || at + span > body;
    n = insert ? len + span : len - span;
    p = malloc (n);
    memcpy (p, img, at);
    if (insert) {
      for (size_t k = 0; k < span; k++)
        p[at + k] = (unsigned char) (rng_below (g, 2) ? 0 : rng_next (g));
      memcpy (p + at + span, img + at, len - at);
    } else {
      memcpy (p + at, img + at + span, len - at - span);
    }
    store_le (p + 16, n, 8);
  } else {
    p = dup_bytes (img, len);
    int changes = 1 + (int) rng_below (g, 4);
    for (int c = 0; c < changes; c++) {
      if (mode == FIELD_VALUES)
        write_interesting (g, p, body);
      else if (mode == BIT_FLIP)
        p[rng_below (g, body)] ^= (unsigned char) (1u << rng_below (g, 8));
      else
        p[rng_below (g, mode == HEADER_ONLY ? 64 : body)] = (unsigned char) rng_next (g);
    }
  }
  if (mode != STALE_CRC)
    fix_crc (p, n);
  *out_len = n;
  return p;
}

static void
test_random_corruption (const unsigned char *img, size_t len, const char *dir, int rounds)
{
  static const char *const names[N_MODES] = { "stale CRC", "random bytes", "header bytes",
                                              "boundary values", "bit flips", "splices" };
  char path[512];
  snprintf (path, sizeof path, "%s/rewrite.aem", dir);
  int accepted[N_MODES] = { 0 }, rejected[N_MODES] = { 0 }, unclean = 0, insane = 0;
  int rewrites = 0, rewrite_mismatch = 0;
  rng g = { 12345 };
  for (int i = 0; i < rounds; i++) {
    int mode = i % N_MODES;
    size_t n;
    unsigned char *p = corrupt (&g, mode, img, len, &n);
    if (n == len && memcmp (p, img, len) == 0) {
      free (p); /* the change happened to restore the original */
      continue;
    }
    parsed r = parse_copy (p, n);
    if (r.status == AE_OK) {
      accepted[mode]++;
      insane += !sane (&r);
      if (rewrites < 300) {
        rewrites++;
        rewrite_mismatch += !rewrites_identically (&r, path, p, n);
      }
      parsed_free (&r);
    } else {
      rejected[mode]++;
      unclean += !rejected_cleanly (&r);
    }
    free (p);
  }
  for (int m = 0; m < N_MODES; m++)
    printf ("# %-16s %5d rejected, %5d accepted\n", names[m], rejected[m], accepted[m]);
  CHECK (unclean == 0, "%d corruptions: every rejection clean (AE_E_FORMAT, outputs empty)", rounds);
  CHECK (accepted[STALE_CRC] == 0, "changes with a stale CRC: all %d rejected", rejected[STALE_CRC]);
  CHECK (accepted[HEADER_ONLY] == 0, "header changes with a valid CRC: all %d rejected",
         rejected[HEADER_ONLY]);
  CHECK (rejected[FIELD_VALUES] > 0 && rejected[SPLICE] > 0 && accepted[ANYWHERE] > 0,
         "structural checks exercised (boundary values %d, splices %d rejected); value-only "
         "changes load (%d)", rejected[FIELD_VALUES], rejected[SPLICE], accepted[ANYWHERE]);
  CHECK (insane == 0, "everything accepted is well formed");
  CHECK (rewrites > 0 && rewrite_mismatch == 0, "accepted files are canonical: %d rewritten "
         "byte-identically", rewrites - rewrite_mismatch);
  unlink (path);
}

static void
test_rejections (const char *dir)
{
  fixture fx;
  ae_error err;
  char path[512];
  snprintf (path, sizeof path, "%s/fixture.aem", dir);
  fixture_init (&fx);
  size_t len = 0;
  unsigned char *img = aem_write (path, &fx.meta, fx.t, 5, &err) == AE_OK ? read_whole (path, &len)
                                                                       : NULL;
  ae_meta_free (&fx.meta);
  CHECK (img != NULL, "fixture written (%zu bytes)", len);
  if (!img)
    return;
  unsigned char small[SM_LEN];
  small_image_by_hand (small);
  test_truncations (img, len);
  test_hostile_header (small);
  test_hostile_metadata (small);
  test_hostile_tensors (small);
  test_entry_limit (dir);
  const char *env = getenv ("AE_TEST_FORMAT_ROUNDS");
  test_random_corruption (img, len, dir, env ? atoi (env) : 20000);
  parsed r = parse_copy (img, len);
  CHECK (r.status == AE_OK, "the original still parses after all that");
  parsed_free (&r);
  free (img);
  unlink (path);
}

int
main (void)
{
  char dir[] = "/tmp/ae-test-format-XXXXXX";
  if (!mkdtemp (dir)) {
    perror ("mkdtemp");
    return 2;
  }
  CHECK (aem_parse (NULL, 10, &(ae_meta) { 0 }, &(aem_tensor *) { NULL }, &(size_t) { 0 }, NULL)
         == AE_E_ARG, "aem_parse of NULL data: AE_E_ARG");
  test_errors ();
  test_meta_keys ();
  test_meta_values ();
  test_crc ();
  test_golden (dir);
  test_round_trip (dir);
  test_write_refusals (dir);
  test_atomic_write (dir);
  test_read_file (dir);
  test_rejections (dir);
  remove_tree (dir);
  return CHECK_DONE ();
}
