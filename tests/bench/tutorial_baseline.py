"""The tutorial's RoI pooling, kept as a benchmark baseline: nested tf.map_fn over images and
RoIs, a Python loop over cells, integer steps (regions smaller than the grid give empty cells)."""
import tensorflow as tf


def tutorial_roi_pool(feature_map, rois, pooled_height, pooled_width):
    """feature_map (B, H, W, C), rois (B, N, 4) relative -> (B, N, ph, pw, C)."""

    def pool_image(args):
        fmap, image_rois = args
        return tf.map_fn(lambda roi: pool_roi(fmap, roi), image_rois, fn_output_signature=tf.float32)

    def pool_roi(fmap, roi):
        h = tf.cast(tf.shape(fmap)[0], tf.float32)
        w = tf.cast(tf.shape(fmap)[1], tf.float32)
        h_start = tf.cast(h * roi[1], tf.int32)
        w_start = tf.cast(w * roi[0], tf.int32)
        h_end = tf.cast(h * roi[3], tf.int32)
        w_end = tf.cast(w * roi[2], tf.int32)
        region = fmap[h_start:h_end, w_start:w_end, :]
        rh, rw = h_end - h_start, w_end - w_start
        h_step = tf.maximum(rh // pooled_height, 1)
        w_step = tf.maximum(rw // pooled_width, 1)
        cells = []
        for i in range(pooled_height):
            row = []
            for j in range(pooled_width):
                y0, x0 = i * h_step, j * w_step
                y1 = tf.where(i + 1 < pooled_height, (i + 1) * h_step, rh)
                x1 = tf.where(j + 1 < pooled_width, (j + 1) * w_step, rw)
                cell = region[y0:y1, x0:x1, :]
                row.append(tf.reduce_max(cell, axis=[0, 1]))
            cells.append(tf.stack(row))
        return tf.stack(cells)

    return tf.map_fn(pool_image, (feature_map, rois), fn_output_signature=tf.float32)
