import shutil

import pytest

from happysad import folders, split
from happysad.errors import HappysadError, UsageError

from conftest import make_shapes


def test_stratified_seeded_and_byte_identical(tmp_path):
    data = make_shapes(tmp_path / "d", n_per_class=40)
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    rows, skipped = split.split_folder(data, a, seed=3)
    split.split_folder(data, b, seed=3)
    split.split_folder(data, c, seed=4)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    assert skipped == []
    counts = split.counts(rows)
    for label in ("circle", "square", "triangle"):
        assert counts[label] == {"train": 28, "val": 8, "test": 4}
    assert len({r.path for r in rows}) == len(rows) == 120
    assert split.read_manifest(a) == rows


def test_identical_files_share_a_split(tmp_path):
    data = make_shapes(tmp_path / "d", n_per_class=30, kinds=("circle", "square"))
    src = data / "circle" / "circle_000.png"
    for i in range(5):
        shutil.copy(src, data / "circle" / f"copy{i}.png")
    rows, _ = split.split_folder(data, None, seed=0)
    group = {r.split for r in rows if r.path.startswith("circle/copy") or r.path == "circle/circle_000.png"}
    assert len(group) == 1
    split.check_no_leak(rows)


def test_leaky_manifest_is_refused(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("path,label,split,group\na/1.png,a,train,g1\na/2.png,a,test,g1\n")
    with pytest.raises(HappysadError, match="two splits"):
        split.read_manifest(p)
    p.write_text("path,label,split,group\na/1.png,a,train,g1\na/1.png,a,test,g2\n")
    with pytest.raises(HappysadError, match="listed twice"):
        split.read_manifest(p)
    p.write_text("file,class\nx,y\n")
    with pytest.raises(HappysadError, match="not a split manifest"):
        split.read_manifest(p)


def test_classes_subset_and_errors(tmp_path):
    data = make_shapes(tmp_path / "d", n_per_class=10)
    rows, _ = split.split_folder(data, None, classes=["square", "circle"])
    assert {r.label for r in rows} == {"square", "circle"}
    with pytest.raises(UsageError, match="no class folder named hexagon"):
        folders.list_classes(data, ["circle", "hexagon"])
    with pytest.raises(UsageError, match="at least 2"):
        folders.list_classes(tmp_path / "d" / "circle")
    with pytest.raises(UsageError, match="ratios"):
        split.check_ratios([0.5, 0.6, 0.1])
    assert split.check_ratios([0.8, 0.2]) == (0.8, 0.2, 0.0)


def test_non_images_are_skipped(tmp_path):
    data = make_shapes(tmp_path / "d", n_per_class=10, kinds=("a", "b"))
    (data / "a" / "notes.jpg").write_text("hello")
    rows, skipped = split.split_folder(data, None)
    assert skipped == ["a/notes.jpg"]
    assert "a/notes.jpg" not in {r.path for r in rows}


def test_tiny_class_still_gets_val_and_test():
    items = [(f"a/{i}.png", "a", f"k{i}") for i in range(3)] + [(f"b/{i}.png", "b", f"j{i}") for i in range(50)]
    rows = split.assign(items, (0.7, 0.2, 0.1), seed=0)
    a = split.counts(rows)["a"]
    assert a == {"train": 1, "val": 1, "test": 1}


def test_near_duplicates_share_a_split(tmp_path):
    from PIL import Image

    data = make_shapes(tmp_path / "d", n_per_class=30, kinds=("a", "b"))
    src = Image.open(data / "a" / "a_000.png")
    for i in range(6):  # resized and re-encoded copies: different bytes, same picture
        src.resize((40 + 8 * i, 40 + 8 * i)).save(data / "a" / f"resized_{i}.jpg", quality=90 - 5 * i)
    rows, _ = split.split_folder(data, None, seed=0, near_dup_distance=4)
    family = {r.split for r in rows if r.path.startswith("a/resized_") or r.path == "a/a_000.png"}
    assert len(family) == 1
    rows0, _ = split.split_folder(data, None, seed=0)  # exact copies only: the family may straddle
    assert len({r.group for r in rows0 if r.path.startswith("a/resized_")}) == 6
