"""Training recipes as data: TOML files whose keys are ``train.TrainConfig`` fields.

The recipes of the built-in models are packaged here (``fer-emotion7.toml``, ``fer-happy-sad.toml``);
``happysad train DATA --recipe NAME|FILE`` starts from one and options given on the command line
override it. Every run writes its full resolved config to ``RUN/config.toml``, which is a recipe too:
``--recipe runs/train/exp/config.toml`` trains the same way again.

Why TOML: the standard library reads it (``tomllib``; the ``tomli`` backport on Python 3.10), types
are strict (``5e-4`` is a float, which YAML 1.1 readers take for a string) and comments may say why a
value was chosen. TOML has no null: a field left out keeps its default (every field whose default is
None is optional).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable

import tomli_w

from ..errors import UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

FOLDER = Path(__file__).parent
SUFFIX = ".toml"


def names() -> list[str]:
    """The packaged recipes, by name."""
    return sorted(p.stem for p in FOLDER.glob(f"*{SUFFIX}"))


def find(ref: str | os.PathLike) -> Path:
    """A packaged recipe's name, or the path of a recipe file."""
    if str(ref) in names():
        return FOLDER / f"{ref}{SUFFIX}"
    path = Path(ref)
    if path.is_file():
        return path
    raise UsageError(f"recipe {ref}: no such file, and not a packaged recipe (those are: {', '.join(names())})")


def read(ref: str | os.PathLike, known: Iterable[str]) -> dict:
    """The settings of a recipe, checked against the ``known`` field names."""
    path = find(ref)
    try:
        settings = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: not a valid TOML recipe ({e})") from None
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise UsageError(f"{path}: unknown setting(s) {', '.join(unknown)}; a recipe sets training options "
                         f"such as epochs, learning_rate, optimizer (see happysad.train.TrainConfig)")
    return settings


def read_assignment(text: str, known: Iterable[str]) -> tuple[str, object]:
    """``KEY=VALUE`` as a recipe file line would give it (``epochs=3``, ``tta="tencrop"``; a bare word
    is taken as a string) -> (key, value)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or key not in set(known):
        raise UsageError(f"{text}: expected KEY=VALUE with KEY a training setting such as epochs")
    try:
        return key, tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return key, value.strip()


def dumps(settings: dict, header: str = "") -> str:
    """TOML text of ``settings``; None values are left out (absent means default), tuples become lists."""
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in settings.items() if v is not None}
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return comment + tomli_w.dumps(plain)
