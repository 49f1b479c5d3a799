/* OpenBLAS's thread count is one process-wide setting read when the
 * library loads (OPENBLAS_NUM_THREADS, else the core count). These wrap it
 * so that callers need not include OpenBLAS's headers. */
#include "ae_internal.h"

#include <cblas.h>

void
ae_set_blas_threads (int n)
{
  openblas_set_num_threads (n > 0 ? n : openblas_get_num_procs ());
}

int
ae_blas_threads (void)
{
  return openblas_get_num_threads ();
}
