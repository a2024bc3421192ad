"""Train a classifier from a folder of class folders into a run folder ``runs/train/NAME/``:

    weights/best.keras  weights/last.keras  meta.json  split.csv  results.csv
    curves.png  confusion_matrix.png  metrics.json (on the test split)

The story, step by step: list the classes -> split once into a manifest (or reuse one) -> tf.data
pipelines -> build the architecture -> fit with callbacks (CSV log, atomic best checkpoint, early
stopping for ``default``) -> save -> evaluate the best weights on the held-out test split -> plot.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import sys
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Sequence

import numpy as np

from . import augment, backbones, bundle, data, faces, files, folders, model as models, optim, places, recipes
from . import report, split as splitting
from .errors import HappysadError, UsageError
from .evaluate import evaluate_files
from .predict import TTA_MODES, Predictor

RUNS_DIR = "runs/train"

# Per-architecture recipe defaults; an explicit TrainConfig value always wins.
RECIPES = {
    # The seed: fixed epochs, plain adam, no augmentation, no early stopping.
    "seed": dict(learning_rate=1e-3, early_stopping=False, augment=False, class_weight=False,
                 label_smoothing=0.0, reduce_lr=False, patience=5, augment_warmup=0),
    # Augmentation starts after a warm-up (a fifth of the epochs): on small data a CNN first has to find
    # the signal in clean images; augmenting from the first step can delay that by many epochs.
    "default": dict(learning_rate=1e-3, early_stopping=True, augment=True, class_weight=True,
                    label_smoothing=0.05, reduce_lr=True, patience=8, augment_warmup=-1),
}
# Pretrained backbones: the default recipe with backbones.RECIPE over it (frozen head phase, then fine-tuning).
RECIPES.update({name: {**RECIPES["default"], **backbones.RECIPE} for name in backbones.BACKBONES})


@dataclass
class TrainConfig:
    arch: str = "auto"  # auto: chosen from the data (backbones.auto_arch)
    width: int | None = None  # default arch: first-block filters (None: 32, or the --init-from model's)
    img_size: int | None = None  # None: the architecture's preferred size
    grayscale: bool = False
    epochs: int = 20
    batch_size: int = 32
    seed: int = 0
    name: str | None = None
    classes: Sequence[str] | None = None
    split: str | None = None  # an existing manifest; None = split now
    val_data: str | None = None  # a separate validation folder: all of DATA trains, this one selects
    ratios: Sequence[float] = splitting.DEFAULT_RATIOS
    project: str = RUNS_DIR
    learning_rate: float | None = None
    early_stopping: bool | None = None
    patience: int | None = None
    augment: bool | None = None
    augment_warmup: int | None = None  # epochs without augmentation first; -1 = a fifth of --epochs
    flip: bool = True
    class_weight: bool | None = None
    label_smoothing: float | None = None
    reduce_lr: bool | None = None
    distributed: bool = False
    faces: bool = False  # train on the faces found in the photos (crops in RUN/faces); predict then detects too
    init_from: str | None = None  # fine-tune: start from this model's weights (all layers but the head)
    tensorboard: bool = False  # also write TensorBoard logs into RUN/tensorboard
    weights: str | None = None  # backbones: imagenet | none | PATH (None: the recipe's, imagenet)
    download_weights: bool = False  # let Keras download the ImageNet weights when they are not cached
    head_epochs: int | None = None  # backbones: epochs with the backbone frozen before fine-tuning
    fine_tune_lr_factor: float | None = None  # backbones: the fine-tuning learning rate over --lr
    # Optimisation and regularisation (see optim.py, augment.py, and the recipes in recipes/*.toml).
    optimizer: str = "adam"  # adam | adamw | sgd
    momentum: float = 0.9  # sgd only
    nesterov: bool = False  # sgd only
    weight_decay: float | None = None  # decoupled; None: the optimizer's own default
    schedule: str = "constant"  # constant (halved on plateaus when reduce_lr) | cosine (to 0 at the last epoch)
    warmup_epochs: float = 0  # cosine: linear learning-rate warm-up from 0 first (at most half the epochs)
    dropout: float | None = None  # default arch: dropout before the head (None: the architecture's 0.3)
    mixup: float = 0.0  # alpha of mixup's Beta(alpha, alpha) weights; 0 = off
    crop_pad: int = 0  # random crop: pad this many reflected pixels, crop back to size; 0 = off
    erasing: float = 0.0  # random erasing: probability per image
    tta: str = "none"  # test-time averaging recorded in meta.json for evaluate/predict: none | flip | tencrop
    verbose: bool = True
    extra_meta: dict = field(default_factory=dict)

    def __post_init__(self):
        self.ratios = tuple(self.ratios)  # a recipe file gives a list

    def resolved(self) -> "TrainConfig":
        """A copy with every None filled from the architecture's recipe."""
        if self.arch not in RECIPES:
            raise UsageError(f"unknown --arch {self.arch!r}; choose one of: {', '.join(RECIPES)}")
        cfg = TrainConfig(**{**asdict(self)})
        if cfg.schedule == "cosine":  # the schedule sets the rate; a plateau callback may not
            if cfg.reduce_lr:
                raise UsageError("--reduce-lr and --schedule cosine both set the learning rate; choose one")
            cfg.reduce_lr = False
        for k, v in RECIPES[self.arch].items():
            if getattr(cfg, k) is None:
                setattr(cfg, k, v)
        if cfg.augment_warmup == -1:
            cfg.augment_warmup = max(1, cfg.epochs // 5)
        if cfg.img_size is None:
            cfg.img_size = models.DEFAULT_IMG_SIZE[cfg.arch]
        if cfg.epochs < 1 or cfg.batch_size < 1:
            raise UsageError("--epochs and --batch-size must be at least 1")
        if cfg.tensorboard:
            report.require_tensorboard()
        cfg._check_recipe()
        return cfg

    def _check_recipe(self) -> None:
        """One line per setting out of range (recipe files are read without a parser to check them)."""
        choices = {"optimizer": optim.OPTIMIZERS, "schedule": optim.SCHEDULES, "tta": TTA_MODES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UsageError(f"{name} {getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        if self.warmup_epochs and self.schedule != "cosine":
            raise UsageError("warmup_epochs needs schedule cosine")
        if not 0 <= self.erasing <= 1 or min(self.mixup, self.crop_pad, self.warmup_epochs) < 0 \
                or not 0 <= self.momentum < 1:
            raise UsageError("erasing is a probability (0 to 1); mixup, crop_pad, warmup_epochs >= 0; "
                             "momentum 0 to below 1")
        if self.crop_pad >= self.img_size // 2:
            raise UsageError(f"crop_pad {self.crop_pad}: choose less than half the image side ({self.img_size})")
        if self.dropout is not None and (self.arch != "default" or not 0 <= self.dropout < 1):
            raise UsageError("dropout applies to arch default only, 0 to below 1")
        if self.schedule == "cosine" and backbones.is_backbone(self.arch):
            raise UsageError("schedule cosine is for archs trained in one phase (default, seed); a pretrained "
                             "backbone sets its own rate when fine-tuning begins")

    def settings(self) -> dict:
        """The fields a recipe file holds (all but run-time plumbing)."""
        return {k: v for k, v in asdict(self).items() if k in RECIPE_FIELDS}


RECIPE_FIELDS = [f.name for f in fields(TrainConfig) if f.name not in ("verbose", "extra_meta")]


def config_from_recipe(recipe: str | os.PathLike, **overrides) -> TrainConfig:
    """A TrainConfig from a packaged recipe (by name) or a recipe file; ``overrides`` win."""
    return TrainConfig(**{**recipes.read(recipe, RECIPE_FIELDS), **overrides})


def write_config(cfg: TrainConfig, path: str | os.PathLike) -> Path:
    """The resolved config as a recipe file (RUN/config.toml): ``--recipe`` it to train the same way."""
    header = "happysad training config: happysad train DATA --recipe THIS_FILE trains the same way again"
    return files.atomic_write_bytes(path, recipes.dumps(cfg.settings(), header).encode())


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict
    history: dict
    seconds: float


def new_run_dir(project: str | os.PathLike, name: str | None) -> Path:
    """runs/train/exp, exp2, ... (or NAME, NAME2, ...): never reuses an existing folder."""
    root = places.output_folder(project, "--project")
    base = name or "exp"
    for cand_name in itertools.islice(files.candidate_names(base, sep=""), 10_000):
        cand = root / cand_name
        try:
            cand.mkdir()  # claims the name: two runs started at once never share a folder
            return cand
        except FileExistsError:
            continue
    raise HappysadError(f"{root}: too many runs named {base}*")


def _log(msg: str, verbose: bool):
    if verbose:
        print(msg, file=sys.stderr, flush=True)


def _show_progress() -> bool:
    return sys.stderr.isatty() and os.environ.get("HAPPYSAD_NO_PROGRESS", "") in ("", "0")


def load_rows(data_dir: Path, cfg: TrainConfig, classes: list[str]) -> list[splitting.Row]:
    """The split manifest: read the given one (keeping the chosen classes) or make one now."""
    if cfg.split:
        rows = [r for r in splitting.read_manifest(cfg.split) if r.label in classes]
        missing = [r.path for r in rows if not (data_dir / r.path).is_file()]
        if missing:
            raise HappysadError(f"{cfg.split}: {len(missing)} file(s) listed are not in {data_dir} "
                                f"(first: {missing[0]}); was the manifest made for another folder?")
        return rows
    if cfg.val_data:
        return _rows_with_val_folder(data_dir, Path(cfg.val_data), classes, cfg.verbose)
    rows, skipped = splitting.split_folder(data_dir, None, cfg.ratios, cfg.seed, classes)
    if skipped:
        _log(f"skipped {len(skipped)} file(s) that are not images (first: {skipped[0]}); "
             "run `happysad clean` to quarantine them", cfg.verbose)
    return rows


def _rows_with_val_folder(data_dir: Path, val_dir: Path, classes: list[str], verbose: bool) -> list[splitting.Row]:
    """All of ``data_dir`` trains; ``val_dir`` (same class folders) selects the model and is reported.
    Validation files keep their absolute path in the manifest. Training copies of validation content
    are dropped, so the two never share an image."""
    folders.list_classes(val_dir, classes)
    train_items, _ = folders.list_items(data_dir, classes)
    val_items, _ = folders.list_items(val_dir, classes)
    val_keys = {k for _, _, k in val_items}
    rows = [splitting.Row(p, lab, "train", k) for p, lab, k in train_items if k not in val_keys]
    dropped = len(train_items) - len(rows)
    if dropped:
        _log(f"left out {dropped} training image(s) identical to a validation image", verbose)
    rows += [splitting.Row(str((val_dir / p).resolve()), lab, "val", k) for p, lab, k in val_items]
    return rows


def _callbacks(cfg: TrainConfig, run_dir: Path, n_train_batches: int, done: list[dict], chief: bool,
               augment_on=None, val_ds=None, classes=()):
    """CSV log, atomic best checkpoint, per-epoch line, LR plateau, early stopping, and BackupAndRestore
    (every epoch, for --resume). ``done`` holds the results.csv rows of epochs finished before a resume."""
    import keras

    from . import callbacks  # imports Keras

    progress = callbacks.Progress.from_rows(done)
    best = callbacks.AtomicBest(run_dir / "weights" / "best.keras", progress)
    cbs = [
        callbacks.LearningRate(),
        # The CSV row is written before the backup: a kill between the two makes the resume redo that
        # epoch and drop its row, so no epoch is ever lost or logged twice.
        keras.callbacks.CSVLogger(str(run_dir / "results.csv"), append=bool(done)),
        best,
        callbacks.EpochLine(cfg.epochs, n_train_batches, best, verbose=cfg.verbose and chief,
                            bar=_show_progress() and chief),
        keras.callbacks.BackupAndRestore(str(run_dir / "backup"), double_checkpoint=True),
    ]
    if cfg.tensorboard and chief and val_ds is not None:  # before the plateau: it logs the epoch's own rate
        cbs += report.tensorboard_callbacks(run_dir / "tensorboard", val_ds, classes)
    if backbones.is_backbone(cfg.arch) and backbones.pretrained(cfg.weights):
        cbs.append(backbones.phase_callback(cfg.arch, cfg.head_epochs, cfg.learning_rate * cfg.fine_tune_lr_factor,
                                            log=lambda m: _log(m, cfg.verbose and chief)))
    if augment_on is not None and cfg.augment:
        cbs.append(callbacks.AugmentWarmup(augment_on, cfg.augment_warmup))
    if cfg.reduce_lr:
        cbs.append(callbacks.Plateau(progress, monitor="val_loss", factor=0.5, patience=max(2, cfg.patience // 2),
                                     min_lr=1e-5))
    if cfg.early_stopping:
        cbs.append(callbacks.Stop(progress, monitor="val_loss", patience=cfg.patience, restore_best_weights=True))
    return cbs


def _cluster_role() -> tuple[bool, str]:
    """(is chief, task name) from TF_CONFIG; a single process is its own chief."""
    tf_config = json.loads(os.environ.get("TF_CONFIG") or "{}")
    task = tf_config.get("task") or {}
    kind, index = task.get("type"), int(task.get("index", 0))
    if kind is None:
        return True, "local"
    has_chief = "chief" in (tf_config.get("cluster") or {})
    return kind == "chief" or (kind == "worker" and index == 0 and not has_chief), f"{kind}{index}"


def make_strategy(distributed: bool):
    """MultiWorkerMirroredStrategy when TF_CONFIG describes a cluster, else MirroredStrategy over the
    local GPUs (or the CPU); None when not distributed."""
    if not distributed:
        return None
    import tensorflow as tf

    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.MirroredStrategy()


def train(data_dir: str | os.PathLike, config: TrainConfig | None = None, **overrides) -> TrainResult:
    """Train on ``data_dir`` (a folder of class folders) into a new run folder. Keyword overrides set
    TrainConfig fields."""
    settings = {**asdict(config or TrainConfig()), **overrides}
    places.output_folder(settings["project"], "--project", make=False)  # before the data is read
    if settings["arch"] == "auto":
        settings["arch"] = _auto_arch(Path(data_dir), settings)
    cfg = TrainConfig(**settings).resolved()
    models.check_arch(cfg.arch, cfg.width)
    if backbones.is_backbone(cfg.arch) and not cfg.init_from:
        backbones.check_weights(cfg.arch, cfg.weights, cfg.download_weights)
        if cfg.weights not in ("imagenet", "none"):
            backbones.verify_file(cfg.arch, cfg.weights)
    elif settings.get("weights") is not None:
        backbones.check_weights(cfg.arch, settings["weights"])  # refuses: not a backbone
    data_dir = Path(data_dir)
    t_start = time.perf_counter()
    # A distributed strategy must exist before TensorFlow runs any op.
    strategy = make_strategy(cfg.distributed)
    chief, task = _cluster_role()
    classes = folders.list_classes(data_dir, cfg.classes)
    asked = cfg  # the config as given (before --faces points val_data at the crops), for config.toml
    run_dir = None
    if cfg.faces:  # the crops live in the run folder, so it comes first
        if cfg.split:
            raise UsageError("--faces makes its own split of the face crops; leave out --split")
        run_dir = _new_run(cfg, chief, task)
        data_dir, cfg = _face_data(data_dir, run_dir, cfg, classes)
    if cfg.init_from and cfg.width is None:  # a wider model (e.g. a built-in one) is fine-tuned at its width
        cfg.width = _source_options(cfg.init_from).get("width")
    rows = load_rows(data_dir, cfg, classes)
    _check_split(rows, data_dir)
    if run_dir is None:
        run_dir = _new_run(cfg, chief, task)
    (run_dir / "weights").mkdir()
    splitting.write_manifest(rows, run_dir / "split.csv")
    counts = splitting.counts(rows)
    meta = bundle.make_meta(
        classes=classes, img_size=(cfg.img_size, cfg.img_size),
        color_mode="grayscale" if cfg.grayscale else "rgb", arch=cfg.arch,
        train={**{k: v for k, v in asdict(cfg).items() if k not in ("extra_meta", "verbose", "classes")},
               "ratios": list(cfg.ratios), "data": str(data_dir.resolve()), "split_manifest": "split.csv",
               "counts": counts},
        **({"faces": faces.settings()} if cfg.faces else {}),
        **({"arch_options": {"width": cfg.width}} if cfg.width else {}),
        **({"tta": tta_settings(cfg)} if cfg.tta != "none" else {}),
        **cfg.extra_meta,
    )
    files.write_json(run_dir / "meta.json", meta)
    write_config(TrainConfig(**{**asdict(asked), "width": cfg.width}), run_dir / "config.toml")
    _log(f"run folder: {run_dir}", cfg.verbose and chief)
    return _fit(run_dir, cfg, data_dir, classes, rows, meta, [], strategy, chief, t_start)


def _auto_arch(data_dir: Path, settings: dict) -> str:
    """--arch auto: a pretrained backbone for a folder of colour photos, else the small CNN (always for the
    options that only the small CNN takes); with --init-from, that model's architecture."""
    if settings.get("init_from"):  # fine-tuning keeps the architecture of the model it starts from
        return str(bundle.read_meta(bundle.resolve(settings["init_from"])[1]).get("arch", "default"))
    if settings.get("grayscale") or settings.get("faces") or settings.get("width"):
        return "default"
    items, _ = folders.list_items(data_dir, folders.list_classes(data_dir, settings.get("classes")))
    arch, why = backbones.auto_arch([data_dir / rel for rel, *_ in items])
    if arch != "default" and settings.get("weights") is None:
        settings["weights"] = "imagenet"
    _log(f"--arch auto: {why} -> {arch}" + (" (ImageNet weights shipped with happysad)" if arch != "default"
                                              else ""), settings.get("verbose", True))
    return arch


def tta_settings(cfg: TrainConfig) -> dict:
    """meta.json's ``tta``: the averaging evaluate and predict use by default, and for ten-crop the
    shift in pixels (the random crop's, else the shift the augmenter trained the model on)."""
    if cfg.tta != "tencrop":
        return {"mode": cfg.tta}
    return {"mode": cfg.tta, "pad": cfg.crop_pad or augment.default_pad(cfg.img_size)}


def _source_options(ref: str) -> dict:
    """The architecture options (meta.json ``arch_options``, e.g. width) of an --init-from model."""
    return dict(bundle.read_meta(bundle.resolve(ref)[1]).get("arch_options") or {})


def _init_weights(net, cfg: TrainConfig, verbose: bool) -> None:
    """Copy weights from ``cfg.init_from`` (a run folder, .keras file or built-in model of the same
    architecture and input) layer by layer, wherever the shapes agree: everything but a head with a
    different number of classes. Features learnt on a bigger task (7 emotions) then start a smaller one."""
    src = bundle.load(cfg.init_from)
    want = (cfg.img_size, cfg.img_size, "grayscale" if cfg.grayscale else "rgb")
    have = (*src.image_size, src.color_mode)
    if src.meta.get("arch") != cfg.arch or have != want:
        raise UsageError(f"--init-from {cfg.init_from}: arch {src.meta.get('arch')} with input {have} does not "
                         f"match this run's arch {cfg.arch} with input {want}")
    copied, skipped = models.copy_matching_weights(net, src.model)
    if copied == 0:
        raise UsageError(f"--init-from {cfg.init_from}: no layer matches this architecture")
    _log(f"init from {cfg.init_from}: {copied} layer(s) copied, {skipped} left new (the head)", verbose)


def _backbone_weights(net, cfg: TrainConfig, meta: dict, run_dir: Path, chief: bool, load: bool = True) -> None:
    """Fill a backbone's weights (--weights; not with --init-from) and record them and the model's own
    preprocessing in meta.json."""
    used = (backbones.load_weights(net, cfg.arch, cfg.weights, cfg.download_weights,
                                   log=lambda m: _log(m, cfg.verbose and chief))
            if load else f"from {cfg.init_from}")
    pre = backbones.preprocessing(net)
    meta["input"]["scaling"] = f"inside the model ({cfg.arch}'s own: {pre['text']})"
    meta["preprocessing"] = pre
    meta["arch_options"] = {**(meta.get("arch_options") or {}), "weights": used, "tune_from": backbones.BACKBONES[cfg.arch].tune_from}
    if chief:
        files.write_json(run_dir / "meta.json", meta)


def _new_run(cfg: TrainConfig, chief: bool, task: int) -> Path:
    if chief:
        return new_run_dir(cfg.project, cfg.name)
    return Path(tempfile.mkdtemp(  # other workers write only to a private scratch folder
        prefix=f"happysad-{task}-"))


def _face_data(data_dir: Path, run_dir: Path, cfg: TrainConfig, classes: list[str]) -> tuple[Path, TrainConfig]:
    """Crop every face out of the photos (and out of --val-data) into RUN/faces (and RUN/faces-val);
    photos without a face are left out and counted. Returns the folder to train on and the config."""
    ds = faces.build_face_dataset(data_dir, run_dir / "faces", classes=classes)
    _log(f"faces: {ds.faces} face(s) from {ds.images} photo(s) -> {ds.folder}; {len(ds.no_face)} photo(s) "
         "without a face left out", cfg.verbose)
    if ds.faces == 0:
        raise HappysadError(f"{data_dir}: no face found in any photo; train without --faces")
    if cfg.val_data:
        val = faces.build_face_dataset(cfg.val_data, run_dir / "faces-val", classes=classes)
        _log(f"faces (validation): {val.faces} face(s) from {val.images} photo(s)", cfg.verbose)
        cfg = TrainConfig(**{**asdict(cfg), "val_data": str(val.folder)})
    return ds.folder, cfg


def resume(run_dir: str | os.PathLike, verbose: bool = True) -> TrainResult:
    """Continue a killed run from its last finished epoch: same split, weights, optimizer state and
    learning rate (Keras BackupAndRestore), and the same callback state (from results.csv)."""
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    meta_path = run_dir / "meta.json"
    if not meta_path.is_file() or not (run_dir / "split.csv").is_file():
        raise HappysadError(f"{run_dir}: not a run folder (needs meta.json and split.csv)")
    meta = json.loads(meta_path.read_text())
    backup = run_dir / "backup"
    if not backup.is_dir() and (run_dir / "metrics.json").is_file():
        raise HappysadError(f"{run_dir}: this run finished already; nothing to resume")
    known = {f.name for f in fields(TrainConfig)}
    saved = {k: v for k, v in meta["train"].items() if k in known}
    cfg = TrainConfig(**{**saved, "classes": meta["classes"], "verbose": verbose}).resolved()
    strategy = make_strategy(cfg.distributed)
    chief, _ = _cluster_role()
    data_dir = Path(meta["train"]["data"])
    rows = splitting.read_manifest(run_dir / "split.csv")
    _check_split(rows, data_dir)
    done_epochs = 0
    state = backup / "training_metadata.json"
    if state.is_file():
        done_epochs = int(json.loads(state.read_text()).get("epoch", 0))
    done = []
    if (run_dir / "results.csv").is_file():
        done = [r for r in report.read_results(run_dir / "results.csv") if int(r["epoch"]) < done_epochs]
    _rewrite_results(run_dir / "results.csv", done_epochs)
    _log(f"resuming {run_dir} after epoch {done_epochs}/{cfg.epochs}", verbose and chief)
    return _fit(run_dir, cfg, data_dir, list(meta["classes"]), rows, meta, done, strategy, chief, t_start)


def _rewrite_results(path: Path, keep_epochs: int) -> None:
    """Keep only the header and the rows of epochs that the backup says are finished."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    if not lines:
        return
    width = lines[0].count(",")
    kept = [lines[0]] + [ln for ln in lines[1:] if ln.endswith("\n") and ln.count(",") == width
                         and int(ln.split(",")[0]) < keep_epochs]  # drops a row torn by the kill
    files.atomic_write_bytes(path, "".join(kept).encode() if keep_epochs else b"")


def _check_split(rows, data_dir: Path) -> None:
    n_train = sum(r.split == "train" for r in rows)
    n_val = sum(r.split == "val" for r in rows)
    if not n_train or not n_val:
        raise UsageError(f"{data_dir}: the split has {n_train} train and {n_val} validation images; both "
                         "are needed (add images or change --ratios)")


def _class_weight(train_rows, classes: list[str]) -> dict[int, float]:
    """Weights inverse to each class's share of the training rows (--class-weight)."""
    n = np.array([sum(1 for r in train_rows if r.label == c) for c in classes], dtype=float)
    w = n.sum() / (len(classes) * np.maximum(n, 1))
    return {i: float(x) for i, x in enumerate(w)}


def _fit(run_dir: Path, cfg: TrainConfig, data_dir: Path, classes: list[str], rows, meta: dict,
         done: list[dict], strategy, chief: bool, t_start: float) -> TrainResult:
    import keras

    by_split = {s: [r for r in rows if r.split == s] for s in splitting.SPLITS}
    counts = splitting.counts(rows)
    color_mode = "grayscale" if cfg.grayscale else "rgb"
    size = (cfg.img_size, cfg.img_size)
    _log("classes: " + ", ".join(f"{c} ({sum(counts[c].values())})" for c in classes) +
         f" | train {len(by_split['train'])}, val {len(by_split['val'])}, test {len(by_split['test'])}",
         cfg.verbose and chief)

    keras.utils.set_random_seed(cfg.seed)
    index = {c: i for i, c in enumerate(classes)}
    log = data.DecodeLog()

    def dataset(split_rows, train_mode):
        aug = (data.augmenter(cfg.seed, flip=cfg.flip, crop_pad=cfg.crop_pad, erasing=cfg.erasing)
               if (train_mode and cfg.augment) else None)
        return data.make_dataset([str(data_dir / r.path) for r in split_rows],
                                 [index[r.label] for r in split_rows], size, color_mode, cfg.batch_size,
                                 len(classes), shuffle=train_mode, augment=aug, seed=cfg.seed, log=log,
                                 augment_on=augment_on if aug is not None else None,
                                 mixup=cfg.mixup if train_mode else 0.0)

    import tensorflow as tf

    augment_on = tf.Variable(cfg.augment_warmup == 0, trainable=False, name="augment_on")
    train_ds, val_ds = dataset(by_split["train"], True), dataset(by_split["val"], False)
    n_batches = math.ceil(len(by_split["train"]) / cfg.batch_size)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        net = models.build(cfg.arch, (cfg.img_size, cfg.img_size, 1 if cfg.grayscale else 3), len(classes),
                           width=cfg.width, dropout=cfg.dropout)
        if cfg.init_from:
            _init_weights(net, cfg, cfg.verbose and chief)
        if backbones.is_backbone(cfg.arch) and not done:  # (a resume restores the weights from its backup)
            _backbone_weights(net, cfg, meta, run_dir, chief, load=not cfg.init_from)
        lr = optim.schedule(cfg, n_batches)
        net.compile(optimizer=optim.optimizer(cfg, lr), loss=optim.loss(len(classes), cfg.label_smoothing),
                    metrics=["accuracy"])
        if backbones.is_backbone(cfg.arch):
            backbones.prepare_optimizer(net, cfg.arch, cfg.weights)

    if strategy is not None and strategy.num_replicas_in_sync > 1:
        from . import multiworker  # imports TensorFlow

        multiworker.prebuild(net, train_ds, strategy)

    class_weight = _class_weight(by_split["train"], classes) if cfg.class_weight else None
    n_batches = math.ceil(len(by_split["train"]) / cfg.batch_size)
    with warnings.catch_warnings():
        # The pipeline is shuffled by tf.data and its length is unknown until the first epoch ends
        # (undecodable files are dropped); Keras warns about both, harmlessly.
        warnings.filterwarnings("ignore", message=".*shuffle=True.*")
        warnings.filterwarnings("ignore", message=".*ran out of data.*")
        history = net.fit(train_ds, validation_data=val_ds, epochs=cfg.epochs, verbose=0, shuffle=False,
                          class_weight=class_weight, callbacks=_callbacks(cfg, run_dir, n_batches, done, chief, augment_on,
                                                                val_ds, classes))
    if log.failed:
        first = next(iter(log.failed.items()))
        _log(f"warning: {len(log.failed)} file(s) could not be decoded and were left out "
             f"(first: {first[1]}); run `happysad clean`", cfg.verbose and chief)
    bundle.save_keras(net, run_dir / "weights" / "last.keras")
    if not (run_dir / "weights" / "best.keras").exists():
        bundle.save_keras(net, run_dir / "weights" / "best.keras")
    train_seconds = time.perf_counter() - t_start
    all_rows = report.read_results(run_dir / "results.csv") if (run_dir / "results.csv").stat().st_size else []
    hist = {k: [r[k] for r in all_rows if k in r] for k in (all_rows[0] if all_rows else {}) if k != "epoch"}
    if not chief:
        return TrainResult(run_dir, {}, hist, train_seconds)

    # Held-out evaluation with the best weights, through the same code path users call.
    eval_rows = by_split["test"] or by_split["val"]
    eval_split = "test" if by_split["test"] else "val"
    # the split holds images as the model sees them (face crops already, with --faces)
    predictor = Predictor(bundle.load(run_dir), batch_size=max(cfg.batch_size, 64), faces=False)
    predictions: list[dict] = []
    metrics = evaluate_files(predictor, [str(data_dir / r.path) for r in eval_rows], [r.label for r in eval_rows],
                             results_out=predictions)
    epochs_run = len(all_rows)
    epochs_here = len(history.history.get("loss", []))  # this process only (less after a resume)
    metrics.update(split=eval_split, weights="weights/best.keras", epochs_run=epochs_run,
                   train_seconds=round(train_seconds, 1),
                   images_per_second=round(len(by_split["train"]) * epochs_here / max(train_seconds, 1e-9), 1))
    files.write_json(run_dir / "metrics.json", metrics)
    meta["metrics"] = {k: metrics[k] for k in ("split", "accuracy", "n", "macro_f1", "roc_auc") if k in metrics}
    files.write_json(run_dir / "meta.json", meta)
    report.plot_curves(run_dir / "results.csv", run_dir / "curves.png", title=f"{run_dir.name} ({cfg.arch})")
    report.plot_confusion(metrics["confusion"], classes, run_dir / "confusion_matrix.png",
                          title=f"{run_dir.name} {eval_split}")
    page = report.write_run_report(run_dir, predictions)
    _log(f"report: {page}", cfg.verbose)
    _log(f"{eval_split} accuracy {metrics['accuracy']:.4f} on {metrics['n']} images "
         f"({epochs_run} epochs, {train_seconds:.0f}s)", cfg.verbose)
    return TrainResult(run_dir, metrics, hist, train_seconds)

