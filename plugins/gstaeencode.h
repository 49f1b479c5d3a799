/* aeencode: one latent vector per video frame, as an NNStreamer tensor stream. */
#ifndef GST_AE_ENCODE_H
#define GST_AE_ENCODE_H

#include <gst/base/gstbasetransform.h>
#include <gst/gst.h>

G_BEGIN_DECLS

#define GST_TYPE_AE_ENCODE (gst_ae_encode_get_type ())
G_DECLARE_FINAL_TYPE (GstAeEncode, gst_ae_encode, GST, AE_ENCODE, GstBaseTransform)

GST_ELEMENT_REGISTER_DECLARE (aeencode);

G_END_DECLS

#endif /* GST_AE_ENCODE_H */
