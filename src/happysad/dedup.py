"""Near-duplicate pictures: a 64-bit perceptual hash (pHash) per picture, and groups of pictures whose
hashes differ in at most a few bits (a resized, re-encoded or slightly edited copy). ``clean`` keeps one
picture per group; ``split`` keeps a group in one split."""

from __future__ import annotations

from typing import Sequence

import imagehash
import numpy as np
from PIL import Image


def phash(image: Image.Image) -> int:
    """The picture's 64-bit pHash as an int."""
    return int(str(imagehash.phash(image)), 16)


def hamming(a: int | None, b: int | None) -> int:
    """Bits in which two hashes differ (a missing hash counts as 0)."""
    return bin((a or 0) ^ (b or 0)).count("1")


def near_duplicate_groups(hashes: Sequence[int], max_distance: int) -> list[int]:
    """Group index per item: items whose 64-bit perceptual hashes differ in at most ``max_distance``
    bits are joined (transitively, union-find)."""
    h = np.array([x & 0xFFFFFFFFFFFFFFFF for x in hashes], dtype=np.uint64)
    parent = list(range(len(h)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(h) - 1):
        close = np.nonzero(np.bitwise_count(h[i + 1:] ^ h[i]) <= max_distance)[0]
        for j in close:
            a, b = find(i), find(i + 1 + int(j))
            if a != b:
                parent[b] = a
    return [find(i) for i in range(len(h))]
