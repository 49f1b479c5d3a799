/* Error reporting: a status code plus a one-line message. */
#include "ae_internal.h"

#include <stdio.h>

ae_status
ae_fail (ae_error *err, ae_status status, const char *fmt, ...)
{
  if (err) {
    va_list ap;
    va_start (ap, fmt);
    vsnprintf (err->message, sizeof err->message, fmt, ap);
    va_end (ap);
    err->status = status;
  }
  return status;
}

const char *
ae_status_name (ae_status status)
{
  static const char *const names[] = { "ok", "invalid argument", "out of memory", "i/o error",
                                       "corrupt model file", "shape mismatch",
                                       "numerical failure", "cancelled" };
  return (unsigned) status < sizeof names / sizeof names[0] ? names[status] : "unknown error";
}
