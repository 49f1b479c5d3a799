/* libFuzzer harness for the .aem reader; not part of the default build.
 *
 *   clang -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -g -O1 \
 *     -fsanitize=fuzzer,address,undefined -Ilib \
 *     lib/error.c lib/meta.c lib/format.c tests/fuzz_load.c -o fuzz_load
 *   ./fuzz_load -max_len=4096 CORPUS_DIR   (seed it with a few .aem files)
 *
 * With -DAEM_FUZZ_MODEL, every .c file of lib/ instead of the three, the
 * OpenBLAS include directory and -lopenblas -llapacke -lm -pthread, it also
 * runs the model loader (ae_model_load_memory: architecture, tensors, the
 * latent Gaussian and the frame score settings) and checks the distance of
 * a zero latent under whatever loaded: finite, not negative; a model with
 * an elbo score (frames of at most 4096 values) must build its scorer and
 * map a grey frame; a mean map (map.mean) must divide a map of the build
 * size. Seed it with small models, e.g. from `ae-train --task
 * anomaly --arch pca --latent 2 --size 8x8 --score combined` and `--arch
 * vae --latent 2 --size 8x8 --score elbo` and `--pixel-norm`.
 *
 * A CRC mismatch stops almost every mutated input at the door, so by
 * default the harness rewrites the last four bytes with the right CRC and
 * lets the structural checks face the mutations; set AEM_FUZZ_RAW=1 to
 * fuzz the bytes exactly as given. */
#include "ae_internal.h"

#include <stdlib.h>
#include <string.h>

static void
touch_everything (const ae_meta *meta, const aem_tensor *t, size_t n)
{
  volatile unsigned sink = 0;
  for (size_t i = 0; i < meta->n; i++)
    sink += (unsigned) strlen (meta->v[i].key) + (meta->v[i].s ? (unsigned) strlen (meta->v[i].s) : 0);
  for (size_t i = 0; i < n; i++) {
    if (t[i].ndim < 1 || t[i].ndim > AEM_MAX_DIMS || !t[i].name[0])
      abort (); /* the reader returned something it should have refused */
    for (size_t j = 0; j < aem_tensor_numel (&t[i]); j++) {
      unsigned u;
      memcpy (&u, &t[i].data[j], sizeof u);
      sink += u;
    }
  }
  (void) sink;
}

#ifdef AEM_FUZZ_MODEL
#include <math.h>
/* The elbo scorer of a small model must build and map a frame (its value
 * may be anything a finite but hostile weight makes it). */
static void
elbo_score (const ae_model *m, const ae_frame_scoring *fs)
{
  int c, h, w;
  ae_model_input_shape (m, &c, &h, &w);
  if ((long) c * h * w > 4096)
    return;
  ae_elbo *e = ae_elbo_new_for (m, fs, NULL);
  float *x = malloc ((size_t) c * h * w * sizeof *x), *map = malloc ((size_t) h * w * sizeof *map);
  if (!e || !x || !map)
    abort (); /* the loader accepted settings the scorer refuses */
  for (long i = 0; i < (long) c * h * w; i++)
    x[i] = 0.5f;
  if (ae_elbo_map (e, AE_LOSS_MSE, 7, x, map) == -1.0)
    abort ();
  free (map);
  free (x);
  ae_elbo_free (e);
}

/* Whatever the model loader accepts must score: settings valid, a latent
 * distance finite and non-negative. */
static void
load_model (const unsigned char *buf, size_t size)
{
  ae_error err;
  ae_model *m = ae_model_load_memory (buf, size, &err);
  if (!m)
    return;
  ae_frame_scoring fs;
  if (ae_model_frame_scoring (m, &fs, &err) != AE_OK)
    abort ();
  int k = ae_model_latent_gaussian (m);
  if (k > 0) {
    float *z = calloc ((size_t) k, sizeof *z), *scratch = calloc ((size_t) k, sizeof *z);
    double d = ae_latent_mahalanobis (m, z, scratch);
    if (!(d >= 0.0) || !isfinite (d))
      abort ();
    free (z);
    free (scratch);
  }
  if (fs.kind == AE_SCORE_ELBO)
    elbo_score (m, &fs);
  int c, h, w;
  ae_model_input_shape (m, &c, &h, &w);
  if (ae_model_has_map_mean (m) && h * w <= 4096) {
    float *map = malloc ((size_t) h * w * sizeof *map);
    for (int i = 0; map && i < h * w; i++)
      map[i] = 1.0f;
    if (!map || ae_map_normalise (m, map, h, w) != AE_OK)
      abort (); /* the loader accepted a mean map that does not apply */
    free (map);
  }
  ae_model_free (m);
}
#endif

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  /* An exact-size copy, so AddressSanitizer sees a read one past the end. */
  unsigned char *buf = malloc (size ? size : 1);
  if (!buf)
    return 0;
  memcpy (buf, data, size);
  const char *raw = getenv ("AEM_FUZZ_RAW");
  if (size >= 4 && !(raw && *raw == '1')) {
    uint32_t crc = aem_crc32 (0, buf, size - 4);
    for (int k = 0; k < 4; k++)
      buf[size - 4 + (size_t) k] = (unsigned char) (crc >> (8 * k));
  }
  ae_meta meta;
  aem_tensor *t = NULL;
  size_t n = 0;
  ae_error err;
  if (aem_parse (buf, size, &meta, &t, &n, &err) == AE_OK) {
    touch_everything (&meta, t, n);
    aem_tensors_free (t, n);
    ae_meta_free (&meta);
  } else if (meta.n || meta.v || t || n) {
    abort (); /* a failed parse must leave its outputs empty */
  }
#ifdef AEM_FUZZ_MODEL
  load_model (buf, size);
#endif
  free (buf);
  return 0;
}
