/* aeanomaly: per-frame anomaly scores, maps and regions from an autoencoder's
 * reconstruction error. */
#ifndef GST_AE_ANOMALY_H
#define GST_AE_ANOMALY_H

#include <gst/gst.h>
#include <gst/video/gstvideofilter.h>

G_BEGIN_DECLS

/* The GstCustomMeta name of the per-frame result (see docs/elements.md). */
#define GST_AE_ANOMALY_META_NAME "AeAnomalyMeta"
/* At most this many regions are reported per frame: the highest-scoring. */
#define GST_AE_ANOMALY_MAX_REGIONS 32

typedef enum {
  GST_AE_ANOMALY_OUTPUT_PASSTHROUGH,
  GST_AE_ANOMALY_OUTPUT_OVERLAY,
  GST_AE_ANOMALY_OUTPUT_HEATMAP,
} GstAeAnomalyOutput;

#define GST_TYPE_AE_ANOMALY_OUTPUT (gst_ae_anomaly_output_get_type ())
GType gst_ae_anomaly_output_get_type (void);

/* The anomaly map of a model learned online (ae-train --map). */
typedef enum {
  GST_AE_ANOMALY_LEARN_MAP_MSE,
  GST_AE_ANOMALY_LEARN_MAP_SSIM,
  GST_AE_ANOMALY_LEARN_MAP_MIX,
} GstAeAnomalyLearnMap;

#define GST_TYPE_AE_ANOMALY_LEARN_MAP (gst_ae_anomaly_learn_map_get_type ())
GType gst_ae_anomaly_learn_map_get_type (void);

/* The training loss of a model learned online (ae-train --loss). */
typedef enum {
  GST_AE_ANOMALY_LEARN_LOSS_MSE,
  GST_AE_ANOMALY_LEARN_LOSS_SSIM,
} GstAeAnomalyLearnLoss;

#define GST_TYPE_AE_ANOMALY_LEARN_LOSS (gst_ae_anomaly_learn_loss_get_type ())
GType gst_ae_anomaly_learn_loss_get_type (void);

#define GST_TYPE_AE_ANOMALY (gst_ae_anomaly_get_type ())
G_DECLARE_FINAL_TYPE (GstAeAnomaly, gst_ae_anomaly, GST, AE_ANOMALY, GstVideoFilter)

GST_ELEMENT_REGISTER_DECLARE (aeanomaly);

G_END_DECLS

#endif /* GST_AE_ANOMALY_H */
