"""The HTML report of a clean: a summary per class and reason, then every rejected file with a
thumbnail (or its first bytes when it is not an image) and the reason."""

from __future__ import annotations

import base64
import html
import io
import os
from pathlib import Path

from . import images
from .files import atomic_write_bytes


def _thumb_data_uri(path: Path, side: int = 128) -> str | None:
    """A small inline JPEG of an image file, or None when it is not a decodable image."""
    try:
        img, _ = images.decode(path, "RGB", allowed_formats=None)
    except Exception:
        return None
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def write_clean_html(report, out: str | os.PathLike) -> Path:
    """A self-contained HTML page: summary per class and reason, then every rejected file with a
    thumbnail (or the first bytes when it is not an image) and the reason."""
    esc = html.escape
    reasons = sorted({r for v in report.by_class.values() for r in v if r != "kept"})
    head = "".join(f"<th>{esc(r)}</th>" for r in ["class", "kept", *reasons])
    body = "".join("<tr><td>" + esc(c) + "</td>" + "".join(f"<td>{v.get(r, 0)}</td>" for r in ["kept", *reasons])
                   + "</tr>" for c, v in report.by_class.items())
    cards = []
    for e in report.rejected:
        where = report.quarantine / e["quarantined"] if e.get("quarantined") else report.data / e["path"]
        uri = _thumb_data_uri(where)
        if uri:
            pic = f'<img src="{uri}" alt="">'
        else:
            try:
                with open(where, "rb") as f:
                    raw = f.read(120)
            except OSError:
                raw = b""
            pic = f'<pre>{esc(raw.decode("utf-8", "replace")) or "(empty)"}</pre>'
        cards.append(f'<figure class="{esc(e["reason"])}">{pic}<figcaption><b>{esc(e["reason"])}</b><br>'
                     f'{esc(e["path"])}<br><small>{esc(e["detail"])}</small></figcaption></figure>')
    state = "dry run: nothing was moved" if report.dry_run else f"moved to {report.quarantine}"
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>happysad clean report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.25rem .6rem;text-align:right}} td:first-child,th:first-child{{text-align:left}}
.grid{{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:.8rem;margin-top:1rem}}
figure{{margin:0;border:1px solid #ddd;border-radius:6px;padding:.5rem;background:#fafafa;overflow:hidden}}
figure img{{max-width:100%;max-height:128px;display:block;margin:auto}}
pre{{font-size:.7rem;white-space:pre-wrap;word-break:break-all;max-height:128px;overflow:hidden;background:#fff;margin:0}}
figcaption{{font-size:.8rem;word-break:break-all;margin-top:.4rem}}
</style></head><body>
<h1>happysad clean: {esc(str(report.data))}</h1>
<p>kept <b>{report.kept}</b>, rejected <b>{len(report.rejected)}</b> ({esc(state)})</p>
<table><tr>{head}</tr>{body}</table>
<div class="grid">{''.join(cards)}</div>
</body></html>
"""
    return atomic_write_bytes(out, page.encode("utf-8"))
