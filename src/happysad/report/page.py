"""The report page of a training run or an evaluation: one self-contained HTML file (figures and
thumbnails inlined as data URIs, no scripts, no CDN) that reads on a phone.

Sections: the data (classes and counts, what ``clean`` quarantined, image sizes), training (curves with
the learning rate, the epoch kept and why), test metrics (per-class table, confusion matrix, ROC and
precision-recall, reliability with ECE, thresholds for two classes), faces (when they were looked for),
and a gallery: the most confident mistakes first, then the least confident right answers, each with
its Grad-CAM overlay (``explain``). Metric values are printed from the metrics dict that ``evaluate``
made (a run's ``metrics.json``), so the page and the file never disagree.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from .. import clean, explain, faces as face_tools, images, split as splitting
from ..bundle import load
from ..errors import HappysadError
from ..evaluate import evaluate_files
from ..files import atomic_write_bytes
from ..predict import Predictor
from . import curve_keys, figures, plot_confusion, read_results, scores

PAGE = "report.html"
PREDICTIONS = "predictions.jsonl"  # one predict result per evaluated image, with its true label
GALLERY_WRONG = 12
GALLERY_UNSURE = 6
THUMB = 180  # px, longest side of gallery pictures
ANNOTATE_SIDE = 360  # px: small photos are enlarged to about this before their face boxes are drawn
SIZE_SAMPLE = 2000  # image sizes are read from at most this many files (headers only)

esc = html.escape

CSS = """
*{box-sizing:border-box} body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fff;line-height:1.4}
main{max-width:1100px;margin:auto;padding:.8rem} h1{font-size:1.35rem;word-break:break-word} h2{margin-top:2rem;
border-bottom:2px solid #eee} nav a{margin-right:.8rem;white-space:nowrap} img{max-width:100%;height:auto}
.wrap{overflow-x:auto;max-width:100%} table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:right} td:first-child,th:first-child{text-align:left}
.kpi{display:flex;flex-wrap:wrap;gap:.6rem} .kpi div{background:#f4f7f7;border-radius:6px;padding:.4rem .8rem}
.kpi b{display:block;font-size:1.3rem} .note{color:#555;font-size:.9rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(165px,1fr));gap:.7rem}
.card{margin:0;border:1px solid #ddd;border-radius:6px;padding:.4rem;background:#fafafa;overflow:hidden}
.card.wrong{border-color:#d33} .pics{display:flex;gap:.3rem} .pics img{width:50%;object-fit:contain;
max-height:180px;background:#fff} .card figcaption{font-size:.8rem;overflow-wrap:anywhere;margin-top:.3rem}
.figs{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:.5rem;margin:.5rem 0}
.figs img{width:100%;max-width:520px} @media (max-width:500px){td,th{padding:.15rem .3rem} table{font-size:.85rem}}
"""


# ---- small pieces ----------------------------------------------------------------------------------------

def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode()


def thumbnail(img, side: int = THUMB) -> str:
    """A small inline JPEG of a PIL image."""
    img = img.convert("RGB")
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=82)
    return data_uri(buf.getvalue(), "image/jpeg")


def _img(uri: str, alt: str, cls: str = "fig") -> str:
    return f'<img class="{cls}" src="{uri}" alt="{esc(alt)}">'


def _figs(pngs: Sequence[bytes], alts: str) -> str:
    """Figures side by side that wrap one under the other on a narrow screen (``alts``: "a|b|...")."""
    return '<div class="figs">' + "".join(_img(data_uri(b), a) for b, a in zip(pngs, alts.split("|"))) + "</div>"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Cells are HTML already (numbers, or escaped text)."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" if not c.startswith("<td") else c for c in r) + "</tr>"
                   for r in rows)
    return f'<div class="wrap"><table><tr>{head}</tr>{body}</table></div>'


def _metric(key: str, value, digits: int = 4) -> str:
    """A table cell for a value from the metrics dict, tagged with its key (the tests read it back)."""
    text = "-" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))
    return f'<td data-metric="{esc(key)}">{text}</td>'


def _score(key: str, value: float | None) -> str:
    """A cell for a value computed here: 4 decimals shown, the full value in data-value."""
    if value is None:
        return "<td>-</td>"
    return f'<td data-score="{esc(key)}" data-value="{value!r}">{value:.4f}</td>'


def image_sizes(paths: Sequence[str | os.PathLike], limit: int = SIZE_SAMPLE) -> dict:
    """Width x height of up to ``limit`` files spread over ``paths`` (headers only): the commonest sizes,
    the smallest and largest sides."""
    paths = list(paths)
    step = max(1, len(paths) // limit)
    sizes = []
    for p in paths[::step][:limit]:
        try:
            with Image.open(p) as im:
                sizes.append(im.size)
        except Exception:  # an unreadable file is reported by evaluation itself, not here
            continue
    common = Counter(sizes).most_common(5)
    return {"read": len(sizes), "of": len(paths), "common": [(w, h, n) for (w, h), n in common],
            "min_side": min((min(s) for s in sizes), default=None),
            "max_side": max((max(s) for s in sizes), default=None)}


def _sizes_html(info: dict) -> str:
    if not info["read"]:
        return "<p>image sizes: no file could be read</p>"
    common = ", ".join(f"{w}&times;{h} ({n})" for w, h, n in info["common"])
    sample = "" if info["read"] == info["of"] else f" (from {info['read']} of {info['of']} files)"
    return (f"<p>image sizes{sample}: commonest {common}; shortest side {info['min_side']} px, "
            f"longest side {info['max_side']} px</p>")


# ---- predictions ------------------------------------------------------------------------------------------

def write_predictions(path: str | os.PathLike, results: Sequence[dict]) -> Path:
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in results)
    return atomic_write_bytes(path, text.encode("utf-8"))


def read_predictions(path: str | os.PathLike) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _arrays(results: Sequence[dict], classes: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    y = np.array([classes.index(r["true"]) for r in results], dtype=int)
    probs = np.array([[r["probabilities"][c] for c in classes] for r in results], dtype=float)
    return y, probs.reshape(len(results), len(classes))


def gallery_picks(results: Sequence[dict], n_wrong: int = GALLERY_WRONG,
                  n_unsure: int = GALLERY_UNSURE) -> tuple[list[dict], list[dict]]:
    """(the most confident mistakes, most confident first; the least confident right answers, least first)."""
    conf = lambda r: r["probabilities"][r["label"]]  # noqa: E731
    wrong = sorted((r for r in results if r["label"] != r["true"]), key=conf, reverse=True)
    right = sorted((r for r in results if r["label"] == r["true"]), key=conf)
    return wrong[:n_wrong], right[:n_unsure]


# ---- sections ---------------------------------------------------------------------------------------------

def _metrics_section(metrics: dict, results: Sequence[dict], classes: list[str]) -> str:
    y, probs = _arrays(results, classes)
    curves = scores.one_vs_rest(y, probs, classes) if len(results) else []
    by_class = {c["class"]: c for c in curves}
    rel = scores.reliability(y, probs)
    kpi = [("accuracy", "accuracy"), ("macro F1", "macro_f1"), ("images", "n")]
    if "roc_auc" in metrics:
        kpi.append(("ROC AUC", "roc_auc"))
    boxes = "".join(f'<div>{name}<b data-metric="{key}">{metrics[key]:.4f}</b></div>' if isinstance(metrics[key], float)
                    else f'<div>{name}<b data-metric="{key}">{metrics[key]}</b></div>' for name, key in kpi)
    if rel["ece"] is not None:
        boxes += f'<div>ECE<b data-score="ece" data-value="{rel["ece"]!r}">{rel["ece"]:.4f}</b></div>'
    rows = []
    for c in classes:
        v = metrics["per_class"][c]
        oc = by_class.get(c)
        rows.append([esc(c), _metric(f"per_class.{c}.precision", v["precision"]),
                     _metric(f"per_class.{c}.recall", v["recall"]), _metric(f"per_class.{c}.f1", v["f1"]),
                     _metric(f"per_class.{c}.support", v["support"]),
                     _score(f"auc.{c}", oc["auc"]) if oc else "<td></td>",
                     _score(f"ap.{c}", oc["ap"]) if oc else "<td></td>"])
    rows.append(["<b>macro</b>", "", "", _metric("macro_f1", metrics["macro_f1"]), str(metrics["n"]), "", ""])
    scored = ("one-vs-rest for each class" if len(classes) > 2
              else f"positive class: <b>{esc(classes[1])}</b> (the score is its probability)")
    cm = metrics["confusion"]
    cm_rows = [[esc(classes[i])] + [_metric(f"confusion.{i}.{j}", cm[i][j]) for j in range(len(classes))]
               for i in range(len(classes))]
    out = [f'<div class="kpi">{boxes}</div>',
           _table(["class", "precision", "recall", "F1", "support", "ROC AUC", "AP"], rows),
           f'<p class="note">ROC AUC and average precision (AP): {scored}.</p>',
           "<h3>Confusion matrix</h3>",
           _table(["true \\ predicted", *map(esc, classes)], cm_rows),
           _figs([plot_confusion(cm, classes, None)], "confusion matrix, counts and row-normalised")]
    if curves:
        out += ["<h3>ROC and precision-recall</h3>",
                _figs([figures.roc(curves), figures.precision_recall(curves)], "ROC curve|precision-recall curve")]
    if rel["ece"] is not None:
        out += ["<h3>Calibration</h3>", _figs([figures.reliability(rel)], "reliability diagram"),
                '<p class="note">Expected calibration error (ECE): the gap between confidence and accuracy, '
                "averaged over 10 confidence bins weighted by their size. 0 is perfectly calibrated.</p>"]
    if len(classes) == 2 and len(results):
        out.append(_threshold_section(y == 1, probs[:, 1], classes[1]))
    return "\n".join(out)


def _threshold_section(y: np.ndarray, score: np.ndarray, positive: str) -> str:
    best = scores.best_f1_threshold(y, score)
    rows = [[f"{t['threshold']:.2f}", f"{t['precision']:.3f}", f"{t['recall']:.3f}", f"{t['f1']:.3f}",
             f"{t['accuracy']:.3f}"] for t in scores.threshold_table(y, score)]
    text = ""
    if best is not None:
        text = (f'<p>Best F1 for {esc(positive)}: <b data-score="best_threshold" data-value="{best["threshold"]!r}">'
                f'p &ge; {best["threshold"]:.3f}</b> gives F1 {best["f1"]:.3f} (precision {best["precision"]:.3f}, '
                f'recall {best["recall"]:.3f}, accuracy {best["accuracy"]:.3f}); the model says {esc(positive)} '
                "at p &ge; 0.5.</p>")
    return (f"<h3>Thresholds</h3><p class=\"note\">Call an image {esc(positive)} when its probability is at least "
            f"the threshold:</p>" + _table(["threshold", "precision", "recall", "F1", "accuracy"], rows) + text)


def _faces_section(metrics: dict) -> str:
    if not metrics.get("faces") and "decided_by" not in metrics:
        return ""
    out = ["<h2 id='faces'>Faces</h2>"]
    if metrics.get("faces"):
        acc = lambda b: "-" if b["accuracy"] is None else f"{b['accuracy']:.4f}"  # noqa: E731
        by = metrics["by_face"]
        out.append(f"<p>A face was found in <b data-metric=\"face_found\">{metrics['face_found']}</b> of "
                   f"{metrics['n']} images ({metrics['face_found_share']:.1%}).</p>")
        out.append(_table(["", "images", "accuracy"], [
            ["face found", str(by["face_found"]["n"]), _metric("by_face.face_found.accuracy", by["face_found"]["accuracy"])],
            ["no face", str(by["no_face"]["n"]), _metric("by_face.no_face.accuracy", by["no_face"]["accuracy"])]]))
    if "decided_by" in metrics:
        out.append("<p>decided by: " + ", ".join(f"the {esc(k)} in {v} image(s)"
                                                 for k, v in metrics["decided_by"].items()) + "</p>")
    return "\n".join(out)


def _gallery_section(results: Sequence[dict], classes: list[str], bundle, faces: bool | None,
                     n_wrong: int, n_unsure: int) -> str:
    wrong, unsure = gallery_picks(results, n_wrong, n_unsure)
    picks = wrong + unsure
    cams = _gradcams([r["path"] for r in picks], bundle, faces)
    cards = [_card(r, cams.get(i), "wrong" if i < len(wrong) else "right") for i, r in enumerate(picks)]
    n_mistakes = sum(r["label"] != r["true"] for r in results)
    note = cams.get("note", "")
    first = (f"The {len(wrong)} most confident of {n_mistakes} mistake(s), most confident first" if wrong
             else "No mistakes")
    return (f"<h2 id='gallery'>Gallery</h2><p>{first}; then the {len(unsure)} least confident right answer(s). Each card: "
            "the image as given (with the faces found, if any), and where the model looked (Grad-CAM: red pushed "
            f"it towards its answer).{esc(note)}</p>"
            f'<h3>Most confident mistakes</h3><div class="grid" id="mistakes">{"".join(cards[:len(wrong)])}</div>'
            f'{"" if wrong else "<p>none: every image was classified right</p>"}'
            f'<h3>Least confident right answers</h3><div class="grid" id="unsure">{"".join(cards[len(wrong):])}</div>')


def _gradcams(paths: list[str], bundle, faces: bool | None) -> dict:
    """Grad-CAM explanations by position; a note instead when the model cannot be explained."""
    if bundle is None or not paths:
        return {"note": "" if bundle is not None else " (no model at hand: no Grad-CAM)"}
    try:
        found = explain.explain(paths, bundle, errors="keep", faces=faces)
    except HappysadError as e:  # e.g. an exported model: no gradients
        return {"note": f" (no Grad-CAM: {e})"}
    return dict(enumerate(found))


def _card(r: dict, ex, kind: str) -> str:
    name = Path(r["path"]).name
    p_pred, p_true = r["probabilities"][r["label"]], r["probabilities"][r["true"]]
    pics = []
    try:
        img, _ = images.decode(r["path"], "RGB", allowed_formats=None)
        if r.get("faces"):  # the photo with the boxes of the faces found, drawn big enough to read
            k = max(1, -(-ANNOTATE_SIDE // min(img.size)))
            img = face_tools.annotate(img.resize((img.width * k, img.height * k)),
                                      {**r, "faces": [{**f, "box": [v * k for v in f["box"]]} for f in r["faces"]]})
        pics.append(_img(thumbnail(img), f"{name}", "pic"))
    except (HappysadError, OSError) as e:  # a file moved or deleted since it was evaluated
        pics.append(f"<small>{esc(getattr(e, 'detail', None) or str(e))}</small>")
    what = ""
    if ex is not None and ex.error is None and ex.overlay is not None:
        part = f"{ex.branch} branch" if ex.branch else ("face crop" if ex.box else "whole image")
        what = f"Grad-CAM: {part}"
        pics.append(_img(thumbnail(ex.overlay), what, "cam"))
    extra = f"<br>decided by the {esc(r['decided_by'])}" if r.get("decided_by") else ""
    if "face_found" in r and not r.get("faces"):
        extra += "<br>no face found"
    return (f'<figure class="card {kind}"><div class="pics">{"".join(pics)}</div><figcaption>'
            f'true <b>{esc(r["true"])}</b>, predicted <b>{esc(r["label"])}</b> {p_pred:.3f}'
            f'<br>p({esc(r["true"])}) {p_true:.3f}{extra}<br><small>{esc(name)}{" &middot; " + esc(what) if what else ""}'
            "</small></figcaption></figure>")


# ---- the page ---------------------------------------------------------------------------------------------

def render(title: str, metrics: dict, results: Sequence[dict], *, data_html: str = "", training_html: str = "",
           bundle=None, faces: bool | None = None, n_wrong: int = GALLERY_WRONG,
           n_unsure: int = GALLERY_UNSURE, subtitle: str = "") -> str:
    classes = list(metrics["classes"])
    errors = metrics.get("errors") or []
    err_html = ""
    if errors:
        first = "".join(f"<li>{esc(e['path'])}: {esc(e['error'])}</li>" for e in errors[:10])
        err_html = (f"<p>{len(errors)} file(s) could not be read and are left out "
                    f"(first {min(10, len(errors))}):</p><ul>{first}</ul>")
    nav = "".join(f'<a href="#{k}">{v}</a>' for k, v in (("data", "data"), ("training", "training"),
                  ("metrics", "metrics"), ("faces", "faces"), ("gallery", "gallery"))
                  if (k != "training" or training_html) and (k != "faces" or _faces_section(metrics)))
    body = [f"<h1>{esc(title)}</h1>", f'<p class="note">{subtitle}</p>' if subtitle else "", f"<nav>{nav}</nav>",
            f"<h2 id='data'>Data</h2>{data_html}{err_html}",
            f"<h2 id='training'>Training</h2>{training_html}" if training_html else "",
            f"<h2 id='metrics'>Metrics ({esc(str(metrics.get('split', 'evaluated images')))})</h2>",
            _metrics_section(metrics, results, classes), _faces_section(metrics),
            _gallery_section(results, classes, bundle, faces, n_wrong, n_unsure)]
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f'<body><main>{"".join(body)}</main></body></html>\n')


def _save(out: str | os.PathLike, page: str) -> Path:
    return atomic_write_bytes(out, page.encode("utf-8"))


def inline(path: str | os.PathLike, height: int = 700):
    """A report page shown in a notebook cell (an iframe holding the page itself, so it works wherever
    the notebook is opened)."""
    from IPython.display import HTML

    text = Path(path).read_text(encoding="utf-8")
    return HTML(f'<iframe srcdoc="{esc(text)}" style="width:100%;height:{int(height)}px;border:1px solid #ccc">'
                "</iframe>")


# ---- an evaluation ----------------------------------------------------------------------------------------

def write_eval_report(out: str | os.PathLike, metrics: dict, results: Sequence[dict], bundle=None, **kw) -> Path:
    """The page for ``evaluate``'s metrics and its per-image ``results`` (``evaluate(results_out=...)``).
    ``bundle``: the model evaluated, for the Grad-CAM of the gallery; faces are looked for in the
    gallery's images when the evaluation looked for them."""
    classes = list(metrics["classes"])
    counts = Counter(r["true"] for r in results)
    rows = [[esc(c), str(counts.get(c, 0))] for c in classes]
    data_html = (f"<p>folder <code>{esc(str(metrics.get('data', '')))}</code></p>"
                 + _table(["class", "images evaluated"], rows)
                 + _sizes_html(image_sizes([r["path"] for r in results])))
    name = bundle.name if bundle is not None else "model"
    title = f"happysad evaluate: {name} on {Path(str(metrics.get('data', ''))).name or 'images'}"
    return _save(out, render(title, metrics, results, data_html=data_html, bundle=bundle,
                             faces=bool(metrics.get("faces")), **kw))


# ---- a training run ---------------------------------------------------------------------------------------

def _quarantine_html(data_dir: Path) -> str:
    qdir = clean.default_quarantine(data_dir)
    if not (qdir / clean.MANIFEST).is_file():
        return f'<p class="note">quarantine: none found at {esc(str(qdir))} (run <code>happysad clean</code>)</p>'
    entries = clean.read_quarantine(qdir)
    reasons = Counter(e.get("reason", "?") for e in entries)
    listed = ", ".join(f"{esc(k)} {v}" for k, v in sorted(reasons.items()))
    return f"<p>quarantined by <code>clean</code>: {len(entries)} file(s) in {esc(str(qdir))} ({listed})</p>"


def _run_data_html(run_dir: Path, meta: dict) -> str:
    data_dir = Path(meta.get("train", {}).get("data", ""))
    rows = splitting.read_manifest(run_dir / "split.csv") if (run_dir / "split.csv").is_file() else []
    counts = splitting.counts(rows) if rows else {}
    table = [[esc(c)] + [str(v[s]) for s in splitting.SPLITS] + [str(sum(v.values()))] for c, v in counts.items()]
    totals = [str(sum(v[s] for v in counts.values())) for s in splitting.SPLITS]
    table.append(["<b>all</b>", *totals, str(len(rows))])
    return (f"<p>folder <code>{esc(str(data_dir))}</code></p>"
            + _table(["class", *splitting.SPLITS, "total"], table) + _quarantine_html(data_dir)
            + _sizes_html(image_sizes([data_dir / r.path for r in rows])))


def _run_training_html(run_dir: Path, meta: dict, metrics: dict) -> str:
    rows = read_results(run_dir / "results.csv") if (run_dir / "results.csv").is_file() and \
        (run_dir / "results.csv").stat().st_size else []
    if not rows:
        return "<p>no training log (results.csv) in the run folder</p>"
    train = meta.get("train", {})
    kept = scores.kept_epoch(rows)
    out = [_figs(figures.training_panels(rows), "|".join(curve_keys(rows)))]
    if kept:
        acc = f", validation accuracy {kept['val_accuracy']:.4f}" if kept.get("val_accuracy") is not None else ""
        out.append(f"<p>Kept: <b data-score=\"kept_epoch\" data-value=\"{kept['epoch']}\">epoch {kept['epoch']}</b> "
                   f"of {kept['of']}, the one with the lowest validation loss ({kept['val_loss']:.4f}{acc}); "
                   f"<code>{esc(metrics.get('weights', 'weights/best.keras'))}</code> holds it and was tested.")
        planned = train.get("epochs")
        if train.get("early_stopping") and planned and kept["of"] < planned:
            out.append(f" Training stopped early after {kept['of']} of {planned} epochs: the validation loss had "
                       f"not improved for {train.get('patience')} epochs.")
        out.append("</p>")
    lrs = [r["learning_rate"] for r in rows if "learning_rate" in r]
    if lrs:
        out.append(f"<p>learning rate: {lrs[0]:.2g} at the start, {lrs[-1]:.2g} in the last epoch"
                   + (" (halved when the validation loss stalled)" if train.get("reduce_lr") and lrs[-1] < lrs[0] else "")
                   + "</p>")
    facts = [f"{k} {esc(str(train[k]))}" for k in ("arch", "img_size", "batch_size", "seed", "augment")
             if k in train]
    secs = f"; {metrics['train_seconds']} s" if "train_seconds" in metrics else ""
    out.append(f'<p class="note">{", ".join(facts)}{secs}</p>')
    return "".join(out)


def _run_results(run_dir: Path, meta: dict) -> list[dict]:
    """The evaluated split's predictions: from predictions.jsonl, or predicted again with the best
    weights (runs made before the file existed), then saved."""
    path = run_dir / PREDICTIONS
    if path.is_file():
        return read_predictions(path)
    rows = splitting.read_manifest(run_dir / "split.csv")
    split_name = "test" if any(r.split == "test" for r in rows) else "val"
    data_dir = Path(meta["train"]["data"])
    chosen = [r for r in rows if r.split == split_name]
    results: list[dict] = []
    evaluate_files(Predictor(load(run_dir), faces=False), [str(data_dir / r.path) for r in chosen],
                   [r.label for r in chosen], results_out=results)
    write_predictions(path, results)
    return results


def write_run_report(run_dir: str | os.PathLike, results: Sequence[dict] | None = None,
                     out: str | os.PathLike | None = None, **kw) -> Path:
    """``RUN/report.html`` from what the run folder holds (meta.json, split.csv, results.csv,
    metrics.json, the best weights). ``results``: the evaluated split's predictions, saved to
    ``RUN/predictions.jsonl``; without them that file is read (or made)."""
    run_dir = Path(run_dir)
    try:
        meta = json.loads((run_dir / "meta.json").read_text())
        metrics = json.loads((run_dir / "metrics.json").read_text())
    except (OSError, ValueError) as e:
        raise HappysadError(f"{run_dir}: not a finished run folder (needs meta.json and metrics.json: {e}); "
                            "train it, or finish it with train --resume") from None
    if results is not None:
        write_predictions(run_dir / PREDICTIONS, results)
    else:
        results = _run_results(run_dir, meta)
    page = render(f"happysad run {run_dir.name}", metrics, results,
                  subtitle=f"{esc(str(run_dir.resolve()))} &middot; classes {esc(', '.join(meta['classes']))}",
                  data_html=_run_data_html(run_dir, meta), training_html=_run_training_html(run_dir, meta, metrics),
                  bundle=load(run_dir), faces=False, **kw)
    return _save(out or run_dir / PAGE, page)
