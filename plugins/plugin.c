/* The autoencoder plugin: aedenoise, aeanomaly and aeencode. */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "gstaeanomaly.h"
#include "gstaedenoise.h"
#include "gstaeencode.h"

static gboolean
plugin_init (GstPlugin *plugin)
{
  gboolean ret = FALSE;
  ret |= GST_ELEMENT_REGISTER (aedenoise, plugin);
  ret |= GST_ELEMENT_REGISTER (aeanomaly, plugin);
  ret |= GST_ELEMENT_REGISTER (aeencode, plugin);
  return ret;
}

GST_PLUGIN_DEFINE (GST_VERSION_MAJOR, GST_VERSION_MINOR, autoencoder,
                   "Autoencoders on the CPU: learned denoising, anomaly detection and embeddings",
                   plugin_init, PACKAGE_VERSION, "LGPL", PACKAGE_NAME, PACKAGE_ORIGIN)
