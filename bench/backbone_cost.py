"""What each --arch costs on this CPU: CPU seconds per training image in the fine-tuning phase (the dearer
of the two) and per predicted image, at each architecture's default input size.

    python bench/backbone_cost.py [--archs efficientnet_lite0,mobilenet_v3_small,...] [--images 64]

CPU seconds (process time, all threads) rather than wall time, so that a shared, loaded machine still gives
comparable figures; on an idle machine with C cores, wall time is about CPU time / C.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def cost(arch: str, n: int, batch: int = 32) -> dict:
    import keras

    from happysad import backbones, model as models

    side = models.DEFAULT_IMG_SIZE[arch]
    net = models.build(arch, (side, side, 3), 2)
    net.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy")
    if backbones.is_backbone(arch):
        backbones.prepare_optimizer(net, arch, "imagenet")
        backbones.set_phase(net, arch, "fine_tune")
    x = np.random.default_rng(0).uniform(0, 255, (n, side, side, 3)).astype(np.float32)
    y = (np.arange(n) % 2).astype(np.float32)
    net.fit(x[:batch], y[:batch], batch_size=batch, epochs=1, verbose=0)  # trace first
    net.predict(x[:batch], batch_size=batch, verbose=0)
    t, w = time.process_time(), time.perf_counter()
    net.fit(x, y, batch_size=batch, epochs=1, verbose=0)
    train_cpu, train_wall = time.process_time() - t, time.perf_counter() - w
    t = time.process_time()
    net.predict(x, batch_size=batch, verbose=0)
    pred_cpu = time.process_time() - t
    return {"arch": arch, "img_size": side, "params": int(net.count_params()),
            "train_cpu_ms_per_image": round(1000 * train_cpu / n, 1),
            "predict_cpu_ms_per_image": round(1000 * pred_cpu / n, 1),
            "train_wall_ms_per_image": round(1000 * train_wall / n, 1), "load_average": os.getloadavg()[0]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="default,efficientnet_lite0,mobilenet_v3_small,mobilenet_v3_large,efficientnet_v2_b0")
    p.add_argument("--images", type=int, default=64)
    a = p.parse_args(argv)
    for arch in a.archs.split(","):
        print(json.dumps(cost(arch, a.images)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
