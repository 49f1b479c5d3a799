/* Internal declarations shared by libae's modules; not installed. */
#ifndef AE_INTERNAL_H
#define AE_INTERNAL_H

#include "ae.h"

#include <stdarg.h>
#include <stdint.h>

#if defined(__GNUC__)
#define AE_PRINTF(f, a) __attribute__ ((format (printf, f, a)))
#else
#define AE_PRINTF(f, a)
#endif

/* Fills err (if non-NULL) and returns status, so callers can write
 * `return ae_fail (err, AE_E_ARG, "...")`. */
ae_status ae_fail (ae_error *err, ae_status status, const char *fmt, ...) AE_PRINTF (3, 4);

/* ---- Metadata --------------------------------------------------------------- */

typedef struct ae_meta_entry {
  char *key;
  ae_meta_type type;
  int64_t i;
  double f;
  char *s;
} ae_meta_entry;

typedef struct ae_meta {
  ae_meta_entry *v;
  size_t n, cap;
} ae_meta;

void ae_meta_init (ae_meta *meta);
void ae_meta_free (ae_meta *meta);
ae_status ae_meta_set_int (ae_meta *meta, const char *key, int64_t value);
ae_status ae_meta_set_float (ae_meta *meta, const char *key, double value);
ae_status ae_meta_set_str (ae_meta *meta, const char *key, const char *value);
const ae_meta_entry *ae_meta_find (const ae_meta *meta, const char *key);
ae_status ae_meta_copy (ae_meta *dst, const ae_meta *src);

/* ---- The .aem container (docs/model-format.md) ------------------------------ */

#define AEM_MAX_DIMS 4
#define AEM_MAX_NAME 63

typedef struct aem_tensor {
  char name[AEM_MAX_NAME + 1];
  int ndim;
  int64_t shape[AEM_MAX_DIMS];
  float *data; /* writer: borrowed; reader: owned (free with aem_tensors_free) */
} aem_tensor;

uint32_t aem_crc32 (uint32_t crc, const void *data, size_t len);
size_t aem_tensor_numel (const aem_tensor *t);

/* Writes atomically: a temporary file next to `path`, fsync, rename. On
 * failure nothing is left behind and an existing `path` is untouched. */
ae_status aem_write (const char *path, const ae_meta *meta, const aem_tensor *tensors,
                     size_t count, ae_error *err);

/* Parses a whole file image. Checks every length, offset, shape and the
 * CRC against `len`; never reads outside buf. On success meta and tensors
 * are filled (caller frees both); on failure nothing needs freeing. */
ae_status aem_parse (const void *buf, size_t len, ae_meta *meta, aem_tensor **tensors,
                     size_t *count, ae_error *err);
void aem_tensors_free (aem_tensor *tensors, size_t count);

/* Reads a whole file into memory (for aem_parse); caps the size at 1 GiB. */
ae_status aem_read_file (const char *path, void **buf, size_t *len, ae_error *err);

#endif /* AE_INTERNAL_H */
