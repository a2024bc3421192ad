"""Face detection, alignment and per-face prediction, on real face photos that ship inside scikit-image
(the astronaut, the cameraman) and group pictures composed from them."""

import hashlib
import json
import math

import numpy as np
import pytest
from PIL import Image

from happysad import cli, faces
from happysad.predict import Predictor, image_probabilities

data = pytest.importorskip("skimage.data")

ASTRONAUT_FACE = (175, 75, 100, 100)  # x, y, w, h of her face in skimage's 512x512 astronaut


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


@pytest.fixture(scope="module")
def detector():
    return faces.detector()


@pytest.fixture(scope="module")
def face_patch(astronaut, detector):
    """Her face with some context, to paste into composed pictures."""
    x, y, w, h = detector.detect(astronaut)[0].box
    return astronaut.crop((x - 40, y - 40, x + w + 40, y + h + 40))


def iou(a, b):
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    return ix * iy / (aw * ah + bw * bh - ix * iy)


def test_shipped_weights_are_the_documented_files():
    want = {
        "face_detection_short_range.tflite": "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633",
        "face_detection_full_range.tflite": "99bf9494d84f50acc6617d89873f71bf6635a841ea699c17cb3377f9507cfec3",
    }
    for kind in faces.MODELS:
        p = faces.model_file(kind)
        assert hashlib.sha256(p.read_bytes()).hexdigest() == want[p.name]


def test_one_face_found_where_it_is_and_deterministic(astronaut, detector):
    found = detector.detect(astronaut)
    assert len(found) == 1
    f = found[0]
    assert iou(f.box, ASTRONAUT_FACE) > 0.7 and f.score > 0.8
    assert abs(f.eye_angle) < 8  # she holds her head almost level
    # eyes above the nose above the mouth, all inside the box
    (ex1, ey1), (ex2, ey2), (nx, ny), (mx, my) = f.keypoints[:4]
    assert max(ey1, ey2) < ny < my
    x, y, w, h = f.box
    assert all(x <= px <= x + w and y <= py <= y + h for px, py in f.keypoints[:4])
    again = detector.detect(astronaut.copy())
    assert again[0].box == f.box and again[0].score == f.score


def test_group_picture_finds_each_face_small_ones_too(face_patch, detector):
    canvas = Image.new("RGB", (1200, 800), (90, 120, 90))
    placed = [(100, 100, 300), (600, 300, 120), (1000, 600, 70)]  # x, y, side of the pasted patch
    for x, y, s in placed:
        canvas.paste(face_patch.resize((s, s)), (x, y))
    found = detector.detect(canvas)
    assert len(found) == 3
    assert [f.area for f in found] == sorted((f.area for f in found), reverse=True)  # largest first
    for f, (x, y, s) in zip(found, placed):
        cx, cy = f.box[0] + f.box[2] / 2, f.box[1] + f.box[3] / 2
        assert x < cx < x + s and y < cy < y + s


def test_no_face_in_pictures_without_people(detector):
    for pic in (data.coffee(), data.rocket()):
        assert detector.detect(Image.fromarray(pic)) == []
    assert detector.detect(Image.new("RGB", (640, 480), "white")) == []


def test_rotated_face_is_aligned_back(astronaut, detector):
    upright = faces.crop(astronaut, detector.detect(astronaut)[0], (64, 64), "L")
    for angle in (-30, 25):
        turned = astronaut.rotate(angle, expand=True, fillcolor=(255, 255, 255))
        found = detector.detect(turned)
        assert len(found) == 1
        assert abs(found[0].eye_angle + angle) < 8  # PIL rotates counter-clockwise
        aligned = faces.crop(turned, found[0], (64, 64), "L")
        plain = faces.crop(turned, found[0], (64, 64), "L", align=False)
        corr = lambda a, b: np.corrcoef(np.asarray(a, float).ravel(), np.asarray(b, float).ravel())[0, 1]  # noqa: E731
        assert corr(aligned, upright) > 0.7 and corr(aligned, upright) > corr(plain, upright) + 0.15


def test_crops_shape_mode_and_margin(astronaut, detector):
    found = detector.detect(astronaut)
    x = faces.crops(astronaut, found, (48, 40), "L")
    assert x.shape == (1, 40, 48, 1) and x.dtype == np.uint8
    assert faces.crops(astronaut, [], (48, 48), "RGB").shape == (0, 48, 48, 3)
    # a wider margin shows more around the face: the face occupies less of the crop
    tight = faces.crop(astronaut, found[0], (96, 96), margin=0.0)
    wide = faces.crop(astronaut, found[0], (96, 96), margin=0.5)
    assert tight.size == wide.size == (96, 96)
    assert np.asarray(tight).std() != np.asarray(wide).std()
    # a face at the border: the part outside the photo is grey, not an error
    edge = faces.Face((0, 0, 60, 60), 0.9, np.array([[15, 20], [45, 20], [30, 35], [30, 48], [0, 25], [60, 25]], float))
    assert faces.crop(astronaut, edge, (48, 48)).getpixel((0, 0)) == (128, 128, 128)


def test_weighted_nms_merges_overlapping_detections():
    def pts(x0, y0, x1, y1):
        return np.array([[x0, y0], [x1, y1]] + [[0, 0]] * 6, float)
    p = np.stack([pts(0, 0, 10, 10), pts(1, 1, 11, 11), pts(50, 50, 60, 60)])
    kept = faces.weighted_nms(p, np.array([0.9, 0.3, 0.8]), iou=0.3)
    assert len(kept) == 2
    merged, score = kept[0]
    assert score == 0.9
    assert merged[0, 0] == pytest.approx((0 * 0.9 + 1 * 0.3) / 1.2)


def test_image_level_rule_is_area_weighted():
    probs = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert image_probabilities(probs, [100, 100]) == pytest.approx([0.55, 0.45])
    assert image_probabilities(probs, [900, 100])[0] > 0.8  # the big face decides
    assert image_probabilities(probs[:1], [5]) == pytest.approx(probs[0])


@pytest.fixture(scope="module")
def predictor():
    return Predictor("fer-happy-sad")


def test_face_models_detect_by_default_and_report_each_face(predictor, face_patch, tmp_path):
    assert predictor.faces  # meta.json of fer-happy-sad asks for faces
    group = Image.new("RGB", (900, 500), (200, 200, 210))
    group.paste(face_patch.resize((240, 240)), (60, 120))
    group.paste(face_patch.resize((120, 120)), (600, 200))
    photo, empty = tmp_path / "group.jpg", tmp_path / "empty.jpg"
    group.save(photo)
    Image.fromarray(data.coffee()).save(empty)
    r, e = predictor.predict([str(photo), str(empty)])
    assert r["face_found"] is True and len(r["faces"]) == 2
    for f in r["faces"]:
        assert set(f) == {"box", "score", "label", "probabilities"}
        assert f["label"] == "happy" and sum(f["probabilities"].values()) == pytest.approx(1, abs=1e-5)
    assert r["label"] == "happy"
    assert r["faces"][0]["box"][2] > r["faces"][1]["box"][2]  # largest first
    assert e["face_found"] is False and e["faces"] == []
    assert e["label"] in ("happy", "sad")  # the whole image still gets a label
    plain = Predictor(predictor.bundle, faces=False).predict([str(photo)])[0]
    assert "faces" not in plain and "face_found" not in plain


def test_face_crop_beats_whole_photo_for_a_small_face(predictor, face_patch):
    """Her smile is obvious in a crop; in a big scene it is a few pixels of the whole image."""
    scene = Image.fromarray(data.coffee()).resize((960, 640))
    scene.paste(face_patch.resize((150, 150)), (700, 60))
    with_faces = predictor.predict([scene])[0]
    whole = Predictor(predictor.bundle, faces=False).predict([scene])[0]
    assert with_faces["face_found"] and with_faces["label"] == "happy"
    assert with_faces["probabilities"]["happy"] > whole["probabilities"]["happy"]


def test_cli_predict_faces_json_and_annotated_copies(face_patch, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    face_patch.save(a / "same.png")
    Image.fromarray(data.rocket()).save(b / "same.png")
    out = tmp_path / "annotated"
    assert cli.main(["predict", str(a), str(b), "--json", "--save-annotated", str(out)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [r["face_found"] for r in lines] == [True, False]
    written = sorted(p.name for p in out.iterdir())
    assert written == ["same-2.jpg", "same.jpg"]  # same names from two folders never overwrite
    assert Image.open(out / "same.jpg").size == face_patch.size
    # a face model: with --no-faces the whole image, without a note; no face found is said so
    assert cli.main(["predict", str(a / "same.png"), "--no-faces", "--model", "fer-happy-sad"]) == 0
    assert "[" not in capsys.readouterr().out  # no "[1 face]" note
    assert cli.main(["predict", str(b / "same.png"), "--model", "fer-happy-sad"]) == 0
    assert "no face found" in capsys.readouterr().out


def test_evaluate_faces_reports_found_share(face_patch, tmp_path):
    from happysad import evaluate

    for cls in ("happy", "sad"):
        (tmp_path / cls).mkdir()
    for i, s in enumerate((160, 220)):
        face_patch.resize((s, s)).save(tmp_path / "happy" / f"h{i}.jpg")
    Image.fromarray(data.coffee()).save(tmp_path / "sad" / "nothing.jpg")
    m = evaluate.evaluate(tmp_path, "fer-happy-sad", faces=True)
    assert m["faces"] is True and m["face_found"] == 2 and m["face_found_share"] == pytest.approx(2 / 3, abs=1e-3)
    assert m["n"] == 3 and m["per_class"]["happy"]["recall"] == 1.0
    assert m["by_face"]["face_found"] == {"accuracy": 1.0, "n": 2} and m["by_face"]["no_face"]["n"] == 1
    assert evaluate.evaluate(tmp_path, "fer-happy-sad")["face_found"] == 2  # a face model finds faces by default
    plain = evaluate.evaluate(tmp_path, "fer-happy-sad", faces=False)
    assert "face_found_share" not in plain


def test_cameraman_is_found_too(detector):
    found = detector.detect(Image.fromarray(data.camera()))
    assert len(found) == 1 and math.isclose(found[0].box[2], found[0].box[3], rel_tol=0.2)


def test_serve_returns_every_face(face_patch):
    from fastapi.testclient import TestClient

    from happysad import serve

    group = Image.new("RGB", (800, 500), (230, 230, 230))
    group.paste(face_patch.resize((200, 200)), (50, 100))
    group.paste(face_patch.resize((110, 110)), (550, 250))
    import io

    buf = io.BytesIO()
    group.save(buf, "JPEG")
    with TestClient(serve.create_app("fer-happy-sad")) as client:
        assert client.get("/api/model").json()["faces"] is True
        res = client.post("/api/predict", files=[("files", ("group.jpg", buf.getvalue(), "image/jpeg"))])
    assert res.status_code == 200
    r = res.json()["results"][0]
    assert r["face_found"] is True and len(r["faces"]) == 2
    assert r["box"] == r["faces"][0]["box"] and (r["width"], r["height"]) == (800, 500)
    assert r["label"] == "happy"


def test_explain_looks_at_the_face_predict_classifies(face_patch, tmp_path, capsys):
    scene = Image.fromarray(data.coffee()).resize((960, 640))
    scene.paste(face_patch.resize((150, 150)), (700, 60))
    path = tmp_path / "scene.jpg"
    scene.save(path)
    assert cli.main(["explain", str(path), "--out", str(tmp_path / "ex"), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    left, top, right, bottom = r["box"]
    assert 700 <= left < right <= 850 and 60 <= top < bottom <= 210
    assert r["label"] == "happy"
    w, h = Image.open(r["overlay"]).size
    assert w == h >= 192  # the aligned face crop, not the whole scene
    assert cli.main(["explain", str(path), "--out", str(tmp_path / "ex2"), "--json", "--no-faces"]) == 0
    assert json.loads(capsys.readouterr().out)["box"] is None


def test_odd_shapes_stay_cheap(detector):
    """Panoramas, slivers and huge photos: a bounded number of detector runs, no error."""
    for w, h in ((4000, 40), (40, 4000), (1, 1), (6000, 4500), (3000, 500)):
        regions = sum(len(detector._regions(net, w, h)) for net in detector.nets)
        assert regions <= 2 + 7 * 7, (w, h, regions)
    assert detector.detect(Image.new("RGB", (2000, 30), "gray")) == []
