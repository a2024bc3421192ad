"""A work-around for Keras 3 with ``tf.distribute.MultiWorkerMirroredStrategy`` (training on several
machines), until https://github.com/keras-team/keras/issues/20585 is fixed upstream.

``fit()`` builds the model by all-reducing the first per-replica batch, which that strategy cannot do,
and it all-reduces the per-step logs (scalars) along axis 0. It reaches into ``keras.src``, so it is
kept here, apart, and imported (with TensorFlow) only by a run with several workers.
"""

from __future__ import annotations

import tensorflow as tf
from keras.src.backend.tensorflow import trainer as tf_trainer


def prebuild(net, ds, strategy) -> None:
    """Build ``net`` from one local batch of ``ds`` inside the strategy scope, tell fit() it is built,
    and make Keras average the per-step logs with ``axis=None`` (once per process)."""
    x, y = next(iter(ds.take(1)))
    with strategy.scope():
        net._symbolic_build(data_batch=(x, y))
    net._maybe_symbolic_build = lambda iterator=None, data_batch=None: None
    if not getattr(tf_trainer.reduce_per_replica, "_happysad_patched", False):
        original = tf_trainer.reduce_per_replica

        def reduce_per_replica(values, strategy, reduction="auto"):
            if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and reduction in ("auto", "mean"):
                return tf.nest.map_structure(
                    lambda v: strategy.reduce("MEAN", v, axis=None)
                    if isinstance(v, tf.distribute.DistributedValues) else v, values)
            return original(values, strategy, reduction)

        reduce_per_replica._happysad_patched = True
        tf_trainer.reduce_per_replica = reduce_per_replica
