"""Readers for published evaluation data as released: ScreenSpot, ScreenSpot-v2 and ScreenSpot-Pro annotation files
(:mod:`.screenspot`) and AndroidControl's GZIP TFRecord episodes (:mod:`.androidcontrol`, read by :mod:`.tfrecord`
without TensorFlow)."""
