"""clean --faces and train --faces: build a face dataset from photos, without losing any photo."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from happysad import cli, clean, folders, split

data = pytest.importorskip("skimage.data")


def _patch(img: np.ndarray, box) -> Image.Image:
    x, y, w, h = box
    return Image.fromarray(img).crop((x - 40, y - 40, x + w + 40, y + h + 40))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """happy/: the astronaut's face in 4 scenes, one with two faces; sad/: the cameraman's face in 4
    scenes; each class also has one photo without a face."""
    root = tmp_path_factory.mktemp("photos") / "data"
    rng = np.random.default_rng(0)
    faces_of = {"happy": _patch(data.astronaut(), (175, 75, 100, 100)),
                "sad": _patch(data.camera(), (187, 123, 81, 81)).convert("RGB")}
    for label, face in faces_of.items():
        (root / label).mkdir(parents=True)
        for i in range(4):
            scene = Image.fromarray(rng.integers(60, 200, (360, 480, 3), dtype=np.uint8)).resize((640, 480))
            scene.paste(face.resize((180 - 20 * i,) * 2), (40 + 60 * i, 60 + 30 * i))
            if i == 0:  # a second person
                scene.paste(face.resize((120, 120)), (460, 300))
            scene.save(root / label / f"{label}{i}.jpg", quality=92)
    Image.fromarray(data.coffee()).save(root / "happy" / "coffee.jpg")
    Image.fromarray(data.rocket()).save(root / "sad" / "rocket.jpg")
    return root


def test_clean_faces_quarantines_faceless_photos_and_writes_crops(photos, tmp_path, capsys):
    before = sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*.jpg"))
    q, out = tmp_path / "q", tmp_path / "faces"
    assert cli.main(["clean", str(photos), "--faces", "--quarantine", str(q), "--faces-out", str(out),
                     "--dry-run", "--json"]) == 0
    dry = json.loads(capsys.readouterr().out)
    assert sorted(r["path"] for r in dry["rejected"]) == ["happy/coffee.jpg", "sad/rocket.jpg"]
    assert {r["reason"] for r in dry["rejected"]} == {"no_face"}
    assert not out.exists() and not q.exists()  # a dry run writes nothing

    assert cli.main(["clean", str(photos), "--faces", "--quarantine", str(q), "--faces-out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "no_face" in text and "10 face crop(s) from 8 photo(s)" in text
    crops = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert len(crops) == 10 and all(Image.open(out / c).size == (128, 128) for c in crops)
    assert "happy/happy0_face0.png" in crops and "happy/happy0_face1.png" in crops
    with open(out / "faces.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["source"] for r in rows if r["path"].startswith("happy/happy0_")} == {"happy/happy0.jpg"}
    # nothing lost: the faceless photos are in quarantine and come back with restore
    assert not (photos / "happy" / "coffee.jpg").exists() and len(clean.read_quarantine(q)) == 2
    assert cli.main(["clean", str(photos), "--restore", "--quarantine", str(q)]) == 0
    assert sorted(p.relative_to(photos).as_posix() for p in photos.rglob("*.jpg")) == before
    # both faces of one photo always land in the same split
    groups = folders.source_groups(out)
    assert groups["happy/happy0_face0.png"] == groups["happy/happy0_face1.png"]
    for seed in range(5):
        rows, _ = split.split_folder(out, ratios=(0.5, 0.25, 0.25), seed=seed)
        where = {r.path: r.split for r in rows}
        assert where["happy/happy0_face0.png"] == where["happy/happy0_face1.png"]


def test_train_faces_crops_into_the_run_and_predict_detects(photos, tmp_path):
    from happysad import train
    from happysad.predict import Predictor

    res = train.train(photos, epochs=1, img_size=32, batch_size=4, project=str(tmp_path), name="f",
                      ratios=(0.6, 0.4), verbose=False, augment=False)
    assert "faces" not in json.loads((res.run_dir / "meta.json").read_text())
    res = train.train(photos, epochs=1, img_size=32, batch_size=4, project=str(tmp_path), name="f",
                      ratios=(0.6, 0.4), verbose=False, augment=False, faces=True)
    run = res.run_dir
    assert len(list((run / "faces").rglob("*.png"))) == 10  # coffee and rocket left out, not moved
    assert (photos / "happy" / "coffee.jpg").exists()
    meta = json.loads((run / "meta.json").read_text())
    assert meta["faces"]["detector"] == "short+full" and meta["train"]["faces"] is True
    rows = split.read_manifest(run / "split.csv")
    where = {r.path: r.split for r in rows}
    assert where["happy/happy0_face0.png"] == where["happy/happy0_face1.png"]
    r = Predictor(run).predict([str(photos / "happy" / "happy0.jpg")])[0]
    assert r["face_found"] is True and len(r["faces"]) == 2
