/* aedenoise: learned denoising of the luma with an autoencoder. */
#ifndef GST_AE_DENOISE_H
#define GST_AE_DENOISE_H

#include <gst/gst.h>
#include <gst/video/gstvideofilter.h>

G_BEGIN_DECLS

#define GST_TYPE_AE_DENOISE (gst_ae_denoise_get_type ())
G_DECLARE_FINAL_TYPE (GstAeDenoise, gst_ae_denoise, GST, AE_DENOISE, GstVideoFilter)

GST_ELEMENT_REGISTER_DECLARE (aedenoise);

G_END_DECLS

#endif /* GST_AE_DENOISE_H */
