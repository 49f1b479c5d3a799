/* aedenoise: learned denoising of the luma with an autoencoder. */
#ifndef GST_AE_DENOISE_H
#define GST_AE_DENOISE_H

#include <gst/gst.h>
#include <gst/video/gstvideofilter.h>

G_BEGIN_DECLS

/* Which embedded model runs while `model` is unset. */
typedef enum {
  GST_AE_DENOISE_PRESET_FAST,
  GST_AE_DENOISE_PRESET_QUALITY,
} GstAeDenoisePreset;

#define GST_TYPE_AE_DENOISE_PRESET (gst_ae_denoise_preset_get_type ())
GType gst_ae_denoise_preset_get_type (void);

#define GST_TYPE_AE_DENOISE (gst_ae_denoise_get_type ())
G_DECLARE_FINAL_TYPE (GstAeDenoise, gst_ae_denoise, GST, AE_DENOISE, GstVideoFilter)

GST_ELEMENT_REGISTER_DECLARE (aedenoise);

G_END_DECLS

#endif /* GST_AE_DENOISE_H */
