"""Photo models: a face branch and a scene branch fused by a learned combiner (happysad.photo,
happysad.train_photo). Trained here on composed photos, with and without a real face (scikit-image's
astronaut), so that the plumbing is checked on data the project makes: which branch decides, what is
saved, that loading reproduces the trainer's predictions exactly, and that bad files fail in one line."""

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from happysad import bundle, cli, faces, photo
from happysad import train_photo as tp
from happysad.errors import HappysadError
from happysad.evaluate import evaluate
from happysad.predict import PhotoPredictor, Predictor

skdata = pytest.importorskip("skimage.data")


# ----------------------------------------------------------------------------- the linear pieces

def test_fit_softmax_is_deterministic_and_separates():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    a = photo.Linear.fit(x, y, 2, l2=0.1, iters=500)
    b = photo.Linear.fit(x, y, 2, l2=0.1, iters=500)
    assert np.array_equal(a.coef, b.coef) and np.array_equal(a.bias, b.bias)
    assert (a.probs(x).argmax(1) == y).mean() > 0.95
    assert np.allclose(a.probs(x).sum(1), 1.0)


def test_linear_round_trips_through_json_and_rejects_bad_weights():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(60, 4)), rng.integers(0, 3, 60)
    m = photo.Linear.fit(x, y, 3, names=list("abcd"))
    back = photo.Linear.from_json(json.loads(json.dumps(m.to_json())))
    assert np.array_equal(back.probs(x), m.probs(x))
    bad = m.to_json()
    bad["coef"] = bad["coef"][:2]
    with pytest.raises(HappysadError, match="inconsistent shapes"):
        photo.Linear.from_json(bad, "fusion.json")
    with pytest.raises(HappysadError, match="missing or bad"):
        photo.Linear.from_json({"features": ["a"]}, "fusion.json")


@pytest.mark.parametrize("arch", sorted(tp.SCENE_TUNING))
def test_the_scene_branch_tunes_the_last_two_blocks_from_the_activations_look_keeps(arch):
    """For each scene backbone, the top that fine-tuning trains (from SCENE_TUNING's cut) continues the
    whole network exactly: the pooled features from the cached activations equal the full network's."""
    import keras

    from happysad.backbones import efficientnet_lite

    keras.utils.set_random_seed(0)
    net = efficientnet_lite(arch, (96, 96, 3))
    first, cut = tp.SCENE_TUNING[arch]
    assert net.get_layer(cut).name == f"block{first - 1}_add" and not any(
        layer.name.startswith(f"block{first + 2}_") for layer in net.layers)  # exactly two blocks after the cut
    x = np.random.default_rng(0).integers(0, 256, (2, 96, 96, 3)).astype(np.float32)
    mid = keras.Model(net.inputs, net.get_layer(cut).output).predict_on_batch(x)
    top = tp.scene_top(net, 2)
    body = keras.Model(top.inputs, top.get_layer("features").output)
    np.testing.assert_allclose(body.predict_on_batch(mid), net.predict_on_batch(x), rtol=1e-4, atol=1e-4)


def test_backbone_weights_pick_the_variant_they_fit_and_anything_else_is_one_line(tmp_path):
    from happysad import backbones
    from happysad.backbones import efficientnet_lite

    for arch in tp.SCENE_TUNING:
        efficientnet_lite(arch).save_weights(tmp_path / f"{arch}.weights.h5")
        net = tp.backbone_from(None, tmp_path / f"{arch}.weights.h5")
        assert net.name == arch and tp.scene_side(net) == (backbones.LITE_SIZE[arch],) * 2
    os.mkfifo(tmp_path / "fifo.weights.h5")
    for odd in ("fifo.weights.h5", "missing.weights.h5", "."):  # refused before anything is opened
        with pytest.raises(HappysadError, match="no such file"):
            tp.backbone_from(None, tmp_path / odd)
    (tmp_path / "x.weights.h5").write_bytes(b"not hdf5")
    with pytest.raises(HappysadError, match=r"^--backbone-weights \S+x.weights.h5: not the weights of") as e:
        tp.backbone_from(None, tmp_path / "x.weights.h5")
    assert "\n" not in str(e.value)


def test_fusion_features_without_a_face_are_zero_on_the_face_side():
    names = photo.feature_names(["happy", "sad"])
    no_face = photo.fusion_features(np.array([0.7, 0.3]), None, 0, 0, 300, 0.0)
    with_face = photo.fusion_features(np.array([0.7, 0.3]), np.array([0.1, 0.9]), 2, 150, 300, 0.9)
    assert len(no_face) == len(with_face) == len(names)
    face_side = [i for i, n in enumerate(names) if photo.branch_of(n) == "face"]
    assert not no_face[face_side].any()
    got = dict(zip(names, with_face))
    assert got["face_found"] == 1 and got["face_size"] == 0.5 and got["face_score"] == pytest.approx(0.9)
    assert got["face_logp_sad"] == pytest.approx(np.log(0.9))


def test_emotion_features_follow_the_face_features_and_are_zero_without_a_face():
    emotions = ["angry", "happy", "neutral"]
    names = photo.feature_names(["happy", "sad"], emotions)
    assert names[:len(photo.feature_names(["happy", "sad"]))] == photo.feature_names(["happy", "sad"])
    assert names[-3:] == ["emotion_logp_angry", "emotion_logp_happy", "emotion_logp_neutral"]
    assert all(photo.branch_of(n) == "face" for n in names[-3:])  # they speak for the faces
    no_face = photo.fusion_features(np.array([0.7, 0.3]), None, 0, 0, 300, 0.0, None, 3)
    with_face = photo.fusion_features(np.array([0.7, 0.3]), np.array([0.1, 0.9]), 1, 150, 300, 0.9,
                                      np.array([0.2, 0.1, 0.7]), 3)
    assert len(no_face) == len(with_face) == len(names)
    assert not no_face[-3:].any()
    assert dict(zip(names, with_face))["emotion_logp_neutral"] == pytest.approx(np.log(0.7))


def test_decided_by_names_the_branch_that_pushed_the_label():
    names = photo.feature_names(["happy", "sad"])
    k = len(names)

    def fusion(scene_w, face_w):
        coef = np.zeros((k, 2))
        for j, c in enumerate(("happy", "sad")):  # each branch's log-probability of a class votes for it
            coef[names.index(f"scene_logp_{c}"), j] = scene_w
            coef[names.index(f"face_logp_{c}"), j] = face_w
        return photo.Linear(names, np.zeros(k), np.ones(k), coef, np.zeros(2))

    # the scene is sure of "sad", the face only a little
    x = photo.fusion_features(np.array([0.05, 0.95]), np.array([0.4, 0.6]), 1, 50, 100, 0.9)
    assert photo.decided_by(fusion(3.0, 1.0), x, 1) == "scene"
    assert photo.decided_by(fusion(0.1, 5.0), x, 1) == "face"


def test_cross_validation_reports_each_large_group_out_of_fold():
    """Per source (a --groups group of at least PER_GROUP_MIN photos): the photo model's out-of-fold
    accuracy on it, from the same predictions as the overall figure; smaller groups get none."""
    rng = np.random.default_rng(1)
    groups = np.array(["a"] * 30 + ["b"] * 25 + ["c"] * 20 + ["d"] * 5)
    n = len(groups)
    labels = np.arange(n) % 2
    scene = np.where(labels[:, None] == np.arange(2), 0.7, 0.3)
    scene[rng.random(n) < 0.2] = [[0.5, 0.5]]
    f = tp.Facts([f"p{i}.jpg" for i in range(n)], labels, groups, np.full((n, 2), 100), np.zeros((n, 4)),
                 np.zeros((n, 4)), np.zeros(n, int), np.zeros((n, tp.MAX_FACES, 5)), np.zeros((0, 4)), np.zeros(0, int))
    cv = tp.oof_scores(f, 2, scene, [None] * n, 3)
    assert set(cv["per_group"]) == {"a", "b", "c"}
    hit = cv["_oof"].argmax(1) == labels
    for g in ("a", "b", "c"):
        assert cv["per_group"][g] == {"n": int((groups == g).sum()), "accuracy": round(float(hit[groups == g].mean()), 4)}


# ----------------------------------------------------------------------------- a photo model trained here

def compose(face: Image.Image | None, rng: np.random.Generator, tint: tuple[int, int, int]) -> Image.Image:
    """A 320x240 photo: a tinted noisy background, with the face pasted somewhere when given."""
    base = np.clip(rng.normal(0, 30, (240, 320, 3)) + np.array(tint), 0, 255).astype(np.uint8)
    img = Image.fromarray(base)
    if face is not None:
        side = int(rng.integers(90, 140))
        f = face.resize((side, side))
        img.paste(f, (int(rng.integers(0, 320 - side)), int(rng.integers(0, 240 - side))))
    return img


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two classes: "happy" = the astronaut's face on warm backgrounds (and some warm photos without a
    face), "sad" = cool backgrounds without a face (and some with her face mirrored and greyed)."""
    rng = np.random.default_rng(0)
    astro = Image.fromarray(skdata.astronaut())
    face = astro.crop((135, 35, 315, 215))
    root = tmp_path_factory.mktemp("photos") / "data"
    for label, tint, with_face in (("happy", (200, 120, 60), [True] * 10 + [False] * 4),
                                   ("sad", (60, 90, 170), [False] * 10 + [True] * 4)):
        (root / label).mkdir(parents=True)
        for i, wf in enumerate(with_face):
            f = (face if label == "happy" else face.convert("L").convert("RGB")) if wf else None
            compose(f, rng, tint).save(root / label / f"{label}_{i:02d}.jpg", quality=92)
    return root


@pytest.fixture(scope="module")
def photo_model(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("pm") / "model"
    run = tp.train_photo([photos], out, folds=3, log=lambda m: None,
                         facts_cache=out.parent / "facts.npz")
    return run


def test_train_photo_writes_a_complete_photo_model(photo_model):
    out = photo_model.model_dir
    meta = json.loads((out / "meta.json").read_text())
    assert meta["kind"] == "photo" and meta["classes"] == ["happy", "sad"]
    assert meta["members"] == {"face": "face", "scene": "scene", "emotions": "emotions"}
    for member in ("face", "scene", "emotions"):
        assert (out / member / "model.keras").is_file() and (out / member / "meta.json").is_file()
    emotions = json.loads((out / "emotions" / "meta.json").read_text())["classes"]
    assert len(emotions) == 7 and "neutral" in emotions  # fer-emotion7, saved as it is
    fusion = json.loads((out / "fusion.json").read_text())
    assert fusion["features"] == photo.feature_names(["happy", "sad"], emotions)
    assert fusion["features"][-7:] == [f"emotion_logp_{e}" for e in emotions]
    assert json.loads((out / "face" / "meta.json").read_text())["faces"]  # the face member finds faces
    assert meta["cross_validation"]["n"] == 28 and meta["train"]["photos"] == 28
    cv = photo_model.cv
    assert set(cv) >= {"photo_model", "scene_branch", "face_else_scene", "folds"}
    assert 0.0 <= cv["photo_model"]["accuracy"] <= 1.0


def test_loading_reproduces_the_trainers_predictions(photo_model, photos):
    """The saved Keras members and fusion.json give what the trainer's own arithmetic gave."""
    facts = tp.load_facts(photo_model.model_dir.parent / "facts.npz")
    b = bundle.load(photo_model.model_dir)
    p = Predictor(b)
    assert isinstance(p, PhotoPredictor)
    results = p.predict(facts.paths)
    got = np.array([[r["probabilities"][c] for c in ("happy", "sad")] for r in results])
    fused, scene, _ = tp.predict_parts(photo_model.parts, facts)
    assert np.abs(got - fused).max() < 1e-4  # float32 members vs the trainer's float64 arithmetic
    assert np.abs(np.array([[r["branches"]["scene"][c] for c in ("happy", "sad")] for r in results]) - scene).max() < 1e-4
    again = np.array([[r["probabilities"][c] for c in ("happy", "sad")] for r in Predictor(b).predict(facts.paths)])
    assert np.array_equal(got, again)
    assert (got.argmax(1) == facts.labels).mean() >= 0.9
    found = [r["face_found"] for r in results]
    assert found == [bool(n) for n in facts.n_faces]


def test_results_say_which_branch_decided_and_what_each_said(photo_model, photos):
    p = Predictor(photo_model.model_dir)
    rs = p.predict([str(photos / "happy" / "happy_00.jpg"), str(photos / "sad" / "sad_00.jpg")])
    for r in rs:
        assert r["decided_by"] in ("face", "scene")
        assert set(r["branches"]) == {"face", "scene", "emotions"}
        assert sum(r["branches"]["scene"].values()) == pytest.approx(1.0, abs=1e-5)
    with_face, without = rs
    assert with_face["face_found"] and with_face["faces"] and with_face["branches"]["face"] is not None
    assert len(with_face["branches"]["emotions"]) == 7
    assert sum(with_face["branches"]["emotions"].values()) == pytest.approx(1.0, abs=1e-4)
    assert not without["face_found"] and without["branches"]["face"] is None
    assert without["branches"]["emotions"] is None
    assert without["decided_by"] == "scene"  # no face: nothing else can decide


def test_the_emotions_member_is_optional(photo_model, photos, tmp_path):
    """A photo model without an emotions member (``train-photo --emotion-model none``) loads and judges
    photos with a fusion of the other facts; a fusion that expects emotions without the member fails."""
    plain = tmp_path / "plain"
    shutil.copytree(photo_model.model_dir, plain)
    meta = json.loads((plain / "meta.json").read_text())
    del meta["members"]["emotions"]
    (plain / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(HappysadError, match="fusion features do not match"):
        bundle.load(plain)
    fusion = json.loads((plain / "fusion.json").read_text())
    fusion = {k: (v[:-7] if k in ("features", "mean", "scale", "coef") else v) for k, v in fusion.items()}
    (plain / "fusion.json").write_text(json.dumps(fusion))
    shutil.rmtree(plain / "emotions")
    r = Predictor(plain).predict([str(photos / "happy" / "happy_00.jpg")])[0]
    assert r["face_found"] and set(r["branches"]) == {"face", "scene"}


def test_look_cuts_each_face_once_when_both_face_members_see_it_alike(photos, monkeypatch):
    """fer-emotion7 and fer-happy-sad crop faces alike, so training cuts each face once for both, and the
    emotions member's image-level figures are the same as with a second cut."""
    from happysad.backbones import efficientnet_lite

    base, emo = bundle.load("fer-happy-sad"), bundle.load("fer-emotion7")
    paths = [str(photos / "happy" / f"happy_{i:02d}.jpg") for i in range(3)]
    cuts = []
    real = faces.face_inputs
    monkeypatch.setattr(faces, "face_inputs", lambda *a, **k: cuts.append(a[2]) or real(*a, **k))
    look = lambda: tp.look(paths, efficientnet_lite("efficientnet_lite0", (64, 64, 3)), tp.FaceNet(base.model),  # noqa: E731
                           (48, 48), base.pil_mode, tp.face_settings(base.meta), emotions=emo)[0]
    once = look()
    assert len(cuts) == 3
    emo.meta = {**emo.meta, "faces": {**emo.meta["faces"], "margin": emo.meta["faces"]["margin"] + 1e-9}}
    twice = look()  # settings that differ (by a hair) cut the faces again, separately
    assert len(cuts) == 9
    np.testing.assert_allclose(once["crop_emotions"], twice["crop_emotions"], atol=1e-5)


def test_training_judges_a_tiny_face_crop_whole_as_prediction_does(photos, tmp_path):
    """An image too small for the detector (no face found, at most faces.TINY_SIDE pixels each way) is a
    face crop at prediction time, so training looks at it the same way: the face member's input is the
    whole image, the face branch's figure for the photo is that crop's, and the face-crop rule lets it
    decide in the cross-validation, as PhotoPredictor lets it decide in predict."""
    from happysad.backbones import efficientnet_lite

    rng = np.random.default_rng(3)
    tiny = tmp_path / "tiny.png"
    Image.fromarray(rng.integers(90, 110, (faces.TINY_SIDE, 40), dtype=np.uint8)).save(tiny)
    paths = [str(tiny), str(photos / "sad" / "sad_00.jpg"), str(photos / "happy" / "happy_00.jpg")]
    base = bundle.load("fer-happy-sad")
    arrays, bad = tp.look(paths, efficientnet_lite("efficientnet_lite0", (64, 64, 3)), tp.FaceNet(base.model),
                          (48, 48), base.pil_mode, tp.face_settings(base.meta))
    assert not bad and arrays["n_faces"].tolist() == [0, 0, 1]
    assert arrays["crop_owner"].tolist() == [0, 2]  # the tiny image's whole-image crop, then the face
    f = tp.Facts(paths, np.array([1, 1, 0]), np.array(["a", "b", "c"]),
                 **{k: v for k, v in arrays.items() if k != "crop_emotions"})
    assert tp.face_crops(f).tolist() == [True, False, False]
    per_crop = np.array([[0.2, 0.8], [0.9, 0.1]])
    face = tp.per_photo(f, per_crop)
    assert face[0].tolist() == [0.2, 0.8] and face[1] is None and face[2].tolist() == [0.9, 0.1]
    fused = tp.with_face_crop_rule(f, np.full((3, 2), 0.5), face)
    assert fused[0].tolist() == [0.2, 0.8] and fused[1].tolist() == [0.5, 0.5]
    rows = tp.fusion_rows(f, np.full((3, 2), 0.5), face)  # no face found: the fusion sees none
    names = photo.feature_names(["happy", "sad"])
    assert rows[0, names.index("face_found")] == 0 and rows[0, names.index("face_logp_happy")] == 0


def test_no_faces_leaves_the_face_branch_out(photo_model, photos):
    r = Predictor(photo_model.model_dir, faces=False).predict([str(photos / "happy" / "happy_00.jpg")])[0]
    assert r["face_found"] is False and r["branches"]["face"] is None and r["decided_by"] == "scene"


def test_a_face_crop_too_small_for_the_detector_is_judged_whole_by_the_face_member(photo_model, tmp_path):
    """No face found in an image of at most faces.TINY_SIDE pixels each way (FER2013 and CK+48 crops are
    48x48): it is a face crop, so the face member judges it whole, as face models do; an image one pixel
    larger is a photo like any other, and without face detection the scene judges both."""
    rng = np.random.default_rng(3)
    tiny, small = tmp_path / "tiny.png", tmp_path / "small.png"
    side = faces.TINY_SIDE
    Image.fromarray(rng.integers(90, 110, (side, side - 12), dtype=np.uint8)).save(tiny)
    Image.fromarray(rng.integers(90, 110, (side + 1, side + 1), dtype=np.uint8)).save(small)
    r_tiny, r_small = Predictor(photo_model.model_dir).predict([str(tiny), str(small)])
    whole = Predictor(photo_model.model_dir / "face", faces=False).predict([str(tiny)])[0]
    assert not r_tiny["face_found"] and r_tiny["decided_by"] == "face"
    assert r_tiny["probabilities"] == pytest.approx(whole["probabilities"], abs=1e-5)
    assert r_tiny["branches"]["face"] == pytest.approx(whole["probabilities"], abs=1e-5)
    assert not r_small["face_found"] and r_small["decided_by"] == "scene" and r_small["branches"]["face"] is None
    off = Predictor(photo_model.model_dir, faces=False).predict([str(tiny)])[0]
    assert off["decided_by"] == "scene" and off["branches"]["face"] is None


def test_evaluate_reports_accuracy_with_and_without_a_face(photo_model, photos):
    m = evaluate(photos, photo_model.model_dir)
    assert m["faces"] is True and m["n"] == 28
    assert m["by_face"]["face_found"]["n"] + m["by_face"]["no_face"]["n"] == 28
    assert m["by_face"]["face_found"]["n"] == m["face_found"]
    assert sum(m["decided_by"].values()) == 28
    off = evaluate(photos, photo_model.model_dir, faces=False)  # the scene alone judges every photo
    assert "by_face" not in off and off["decided_by"] == {"face": 0, "scene": 28}


def test_cli_predict_json_and_train_photo_refuses_an_existing_folder(photo_model, photos, capsys):
    assert cli.main(["predict", str(photos / "happy" / "happy_01.jpg"), "--model", str(photo_model.model_dir),
                     "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["decided_by"] in ("face", "scene") and "branches" in r
    assert cli.main(["train-photo", str(photos), "--out", str(photo_model.model_dir)]) == 2
    assert "already exists" in capsys.readouterr().err


def test_explain_uses_the_branch_that_decided(photo_model, photos, tmp_path):
    from happysad.explain import explain

    paths = [str(photos / "happy" / "happy_00.jpg"), str(photos / "sad" / "sad_00.jpg")]
    exs = explain(paths, photo_model.model_dir, out=tmp_path)
    results = Predictor(photo_model.model_dir).predict(paths)
    for ex, r in zip(exs, results):
        assert ex.branch == r["decided_by"] and ex.label == r["label"]
        assert ex.heatmap is not None and (tmp_path / f"{ex.path.rsplit('/', 1)[-1][:-4]}.gradcam.png").is_file()


def test_a_damaged_photo_model_fails_in_one_line(photo_model, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(photo_model.model_dir, bad)
    (bad / "fusion.json").write_text('{"features": ["x"], "mean": [0], "scale": [1], "coef": [[1, 2]], "bias": [0, 0]}')
    with pytest.raises(HappysadError, match="fusion features do not match"):
        bundle.load(bad)
    meta = json.loads((bad / "meta.json").read_text())
    meta["members"]["face"] = "../../etc"
    (bad / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(HappysadError, match="sub-folder"):
        bundle.load(bad)


def test_onnx_export_writes_every_member_and_predicts_the_same(photo_model, photos, tmp_path):
    pytest.importorskip("onnxruntime")
    from happysad import export

    out = export.export(photo_model.model_dir, "onnx", tmp_path / "onnx")
    for member in ("face", "scene", "emotions"):
        assert (out / member / "model.onnx").is_file() and (out / member / "meta.json").is_file()
    assert (out / "fusion.json").is_file() and json.loads((out / "meta.json").read_text())["kind"] == "photo"
    paths = [str(p) for p in sorted((photos / "happy").iterdir())[:4]] + \
        [str(p) for p in sorted((photos / "sad").iterdir())[:4]]
    keras_r = Predictor(photo_model.model_dir).predict(paths)
    onnx_r = Predictor(out).predict(paths)
    for a, b in zip(keras_r, onnx_r):
        assert a["label"] == b["label"] and a["decided_by"] == b["decided_by"]
        assert a["probabilities"]["sad"] == pytest.approx(b["probabilities"]["sad"], abs=1e-3)
    with pytest.raises(HappysadError, match="folder"):
        export.export(photo_model.model_dir, "onnx", tmp_path / "one.onnx")


def test_fast_runtime_members_predict_what_the_keras_members_do(photo_model, photos, tmp_path):
    pytest.importorskip("onnxruntime")
    from happysad import export

    fast = tmp_path / "fast"
    shutil.copytree(photo_model.model_dir, fast)
    written = export.attach_fast_runtime(fast)
    assert sorted(p.parent.name for p in written) == ["emotions", "face", "scene"]
    assert not list(fast.rglob("model.json"))  # each member's meta.json describes both of its files
    b = bundle.load(fast, fast=True)
    assert {m: type(x.model).__name__ for m, x in b.members.items()} == dict.fromkeys(("face", "scene", "emotions"), "OnnxModel")
    assert all(type(x.model).__name__ != "OnnxModel" for x in bundle.load(fast).members.values())  # explain, export
    paths = [str(p) for p in sorted((photos / "happy").iterdir())[:3]] + [str(p) for p in sorted((photos / "sad").iterdir())[:3]]
    for a, r in zip(Predictor(photo_model.model_dir).predict(paths), Predictor(fast).predict(paths)):
        assert a["label"] == r["label"] and a["probabilities"]["sad"] == pytest.approx(r["probabilities"]["sad"], abs=1e-4)


def test_serve_answers_with_the_photo_model(photo_model, photos):
    from fastapi.testclient import TestClient

    from happysad import serve

    app = serve.create_app(photo_model.model_dir)
    with TestClient(app) as client:
        info = client.get("/api/model").json()
        assert info["kind"] == "photo" and info["classes"] == ["happy", "sad"]
        files = [("files", (p.name, p.read_bytes(), "image/jpeg"))
                 for p in (photos / "happy" / "happy_00.jpg", photos / "sad" / "sad_00.jpg")]
        r = client.post("/api/predict", files=files)
    assert r.status_code == 200
    results = r.json()["results"]
    direct = Predictor(photo_model.model_dir).predict([str(photos / "happy" / "happy_00.jpg"),
                                                        str(photos / "sad" / "sad_00.jpg")])
    for got, want in zip(results, direct):
        assert got["label"] == want["label"] and got["decided_by"] == want["decided_by"]
        assert got["probabilities"] == pytest.approx(want["probabilities"], abs=1e-6)
