/* Helpers shared by the element test programs (test_ae*.c). */
#ifndef AE_ELEMENT_TEST_H
#define AE_ELEMENT_TEST_H

#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>

/* PROGRAM [NAME...]: every test, or only the named ones. */
static inline gboolean
test_selected (int argc, char **argv, const char *name)
{
  for (int i = 1; i < argc; i++)
    if (strcmp (argv[i], name) == 0)
      return TRUE;
  return argc < 2;
}

/* Removes a scratch folder; the tests only write files directly in it. */
static inline void
test_remove_dir (const gchar *dir_path)
{
  GDir *dir = g_dir_open (dir_path, 0, NULL);
  const gchar *name;
  while (dir && (name = g_dir_read_name (dir))) {
    gchar *path = g_build_filename (dir_path, name, NULL);
    g_unlink (path);
    g_free (path);
  }
  if (dir)
    g_dir_close (dir);
  g_rmdir (dir_path);
}

#endif
