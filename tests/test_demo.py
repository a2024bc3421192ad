import numpy as np
import pytest
from PIL import Image

from happysad import demo


def test_generator_is_deterministic_and_varied(tmp_path):
    a = demo.make_dataset(tmp_path / "a", n_per_class=5, seed=7)
    b = demo.make_dataset(tmp_path / "b", n_per_class=5, seed=7)
    fa = sorted(p.relative_to(a) for p in a.rglob("*.*"))
    assert fa == sorted(p.relative_to(b) for p in b.rglob("*.*")) and len(fa) == 10
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in fa)
    means = [np.asarray(Image.open(a / f)).mean() for f in fa]
    assert np.std(means) > 5  # backgrounds and skins vary


def test_demo_refuses_foreign_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    from happysad.errors import UsageError

    with pytest.raises(UsageError, match="not made by the demo"):
        demo.run_demo(tmp_path, n_per_class=5, epochs=1)
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_full_demo_reaches_095(tmp_path):
    """The `make demo` run itself: junk quarantined, accuracy >= 0.95 on the test split."""
    res = demo.run_demo(tmp_path / "demo", verbose=False)
    assert res["rejected"] == {"happy/empty_download.jpg": "empty", "sad/not_really.jpg": "not_image",
                               "sad/truncated.jpg": "corrupt", "sad/copy_of_a_sad_face.jpg": "duplicate"}
    assert res["test_accuracy"] >= 0.95, res
    assert res["unseen_accuracy"] >= 0.95, res
    assert len(res["predictions"]) == 4 and all("label" in p for p in res["predictions"])
