"""Training recipes as data, and the options they set: optimizer, schedule, label smoothing, mixup,
random crop, random erasing, ten-crop test-time averaging. Each is checked on its own, without training,
and one tiny run checks that `train --recipe` trains and writes its resolved config."""

import json
from pathlib import Path

import numpy as np
import pytest

from happysad import augment, optim, recipes, train
from happysad.cli import bare_tta, build_parser, main
from happysad.errors import UsageError
from happysad.predict import Predictor, tta_mode

from conftest import make_shapes


@pytest.mark.parametrize("name", recipes.names())
def test_packaged_recipe_round_trips_into_config_and_back(name, tmp_path):
    cfg = train.config_from_recipe(name).resolved()
    settings = recipes.read(name, train.RECIPE_FIELDS)
    assert settings and all(getattr(cfg, k) == (tuple(v) if k == "ratios" else v) for k, v in settings.items())
    train.write_config(cfg, tmp_path / "config.toml")
    again = train.config_from_recipe(tmp_path / "config.toml")
    assert again == cfg and again.resolved() == cfg


def test_packaged_recipes_are_the_built_in_models():
    assert {"fer-emotion7", "fer-happy-sad"} <= set(recipes.names())
    emotion7 = train.config_from_recipe("fer-emotion7")
    assert len(emotion7.classes) == 7 and emotion7.img_size == 48 and emotion7.grayscale
    assert train.config_from_recipe("fer-happy-sad").init_from == "fer-emotion7"


def test_options_given_override_the_recipe():
    cfg = train.config_from_recipe("fer-emotion7", epochs=1, mixup=0.0)
    assert cfg.epochs == 1 and cfg.mixup == 0.0 and cfg.optimizer == "sgd"


def test_bad_recipe_files_are_one_line_errors_naming_the_file(tmp_path):
    unknown = tmp_path / "unknown.toml"
    unknown.write_text('epochs = 3\nlearnig_rate = 0.1\n')
    with pytest.raises(UsageError, match=r"unknown\.toml: unknown setting\(s\) learnig_rate"):
        train.config_from_recipe(unknown)
    broken = tmp_path / "broken.toml"
    broken.write_text("epochs = \n")
    with pytest.raises(UsageError, match=r"broken\.toml: not a valid TOML recipe"):
        train.config_from_recipe(broken)
    with pytest.raises(UsageError, match="not a packaged recipe"):
        train.config_from_recipe("no-such-recipe")
    with pytest.raises(UsageError, match="optimizer 'rmsprop'"):
        train.TrainConfig(arch="default", optimizer="rmsprop").resolved()
    with pytest.raises(UsageError, match="warmup_epochs needs schedule cosine"):
        train.TrainConfig(arch="default", warmup_epochs=2).resolved()
    with pytest.raises(UsageError, match="choose one"):
        train.TrainConfig(arch="default", schedule="cosine", reduce_lr=True).resolved()


def test_cosine_schedule_warms_up_linearly_then_decays_to_zero():
    cfg = train.TrainConfig(arch="default", schedule="cosine", learning_rate=0.1, epochs=10,
                            warmup_epochs=2).resolved()
    lr = optim.schedule(cfg, steps_per_epoch=5)
    at = {step: float(lr(step)) for step in (0, 5, 10, 30, 50, 60)}
    assert at[0] == 0 and at[5] == pytest.approx(0.05) and at[10] == pytest.approx(0.1)  # 10 warm-up steps
    assert at[30] == pytest.approx(0.05)  # half way through the 40 decay steps
    assert at[50] == pytest.approx(0) and at[60] == pytest.approx(0)
    assert cfg.reduce_lr is False  # the schedule owns the rate
    assert optim.schedule(train.TrainConfig(arch="default").resolved(), 5) == 1e-3  # constant: the rate itself
    short = optim.schedule(train.TrainConfig(schedule="cosine", learning_rate=0.1, epochs=1, warmup_epochs=3), 10)
    assert float(short(5)) == pytest.approx(0.1) and float(short(10)) == pytest.approx(0)  # a 1-epoch run of a long recipe


def test_sgd_with_nesterov_momentum_and_weight_decay():
    cfg = train.config_from_recipe("fer-emotion7").resolved()
    opt = optim.optimizer(cfg, 0.05)
    assert type(opt).__name__ == "SGD" and opt.nesterov and opt.momentum == 0.9
    assert opt.weight_decay == pytest.approx(5e-4)
    assert type(optim.optimizer(train.TrainConfig(arch="default").resolved(), 1e-3)).__name__ == "Adam"


def test_label_smoothing_softens_the_targets():
    probs = np.array([[0.7, 0.2, 0.1]], "float32")
    onehot = np.array([[1.0, 0.0, 0.0]], "float32")
    smoothed = onehot * 0.9 + 0.1 / 3
    got = float(optim.loss(3, 0.1)(onehot, probs))
    assert got == pytest.approx(float(-(smoothed * np.log(probs)).sum()), rel=1e-5)
    assert got > float(optim.loss(3, 0.0)(onehot, probs))


def test_mixup_mixes_images_and_labels_with_the_same_weights():
    n = 16
    x = np.arange(n, dtype="float32")[:, None, None, None] * np.ones((n, 4, 4, 1), "float32")
    y = np.eye(n, dtype="float32")
    xm, ym = (np.asarray(a) for a in augment.mixup(1.0, seed=0)(x, y))
    assert xm.shape == x.shape and ym.shape == y.shape
    np.testing.assert_allclose(ym.sum(axis=1), 1, atol=1e-6)
    assert (ym.max(axis=1) < 0.999).any()  # some pairs really are mixed
    # image i shows (its label weights) . (the image values): the same mix for pixels and targets
    np.testing.assert_allclose(xm[:, 0, 0, 0], ym @ np.arange(n), atol=1e-4)
    # two classes: one 0/1 target per image stays one (mixed) target per image
    yb = (np.arange(n) % 2).astype("float32")
    _, ybm = augment.mixup(1.0, seed=0)(x, yb)
    assert np.asarray(ybm).shape == (n,) and ((np.asarray(ybm) > 0) & (np.asarray(ybm) < 1)).any()


def test_training_pipeline_mixes_once_augmentation_is_switched_on(tmp_path):
    import tensorflow as tf
    from PIL import Image

    from happysad import data

    paths = []
    for i in range(8):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(np.full((16, 16), i * 30, np.uint8)).save(paths[-1])
    on = tf.Variable(False)
    ds = data.make_dataset(paths, [0, 1, 2, 0, 1, 2, 0, 1], (16, 16), "grayscale", 8, 3, shuffle=True, mixup=1.0,
                           augment=data.augmenter(0, crop_pad=2, erasing=0.5), augment_on=on)
    _, y = next(iter(ds))
    assert (y.numpy().max(axis=1) == 1).all()  # augmentation warm-up: one-hot targets
    on.assign(True)
    x, y = next(iter(ds))
    assert x.shape == (8, 16, 16, 1) and (y.numpy().max(axis=1) < 0.999).any()
    np.testing.assert_allclose(y.numpy().sum(axis=1), 1, atol=1e-6)


def test_random_crop_shifts_each_image_within_the_pad_and_keeps_its_shape():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 12, 12, 1)).astype("float32")
    layer = augment.random_pad_crop(3, seed=0)
    out = np.asarray(layer(x, training=True))
    assert out.shape == x.shape
    padded = np.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)), mode="reflect")
    offsets = []
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(7) for dx in range(7)
                if np.array_equal(out[i], padded[i, dy:dy + 12, dx:dx + 12])]
        assert hits, "every output is a window of the padded image"
        offsets.append(hits[0])
    assert len(set(offsets)) > 1 and not np.array_equal(out, x)  # each image at its own offset
    np.testing.assert_array_equal(np.asarray(layer(x, training=False)), x)


def test_random_erasing_changes_images_but_keeps_their_shape():
    x = np.full((8, 24, 24, 1), 128.0, "float32")
    out = np.asarray(augment.random_erasing(1.0, seed=0)(x, training=True))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 255
    changed = (out != x).reshape(8, -1).mean(axis=1)
    assert (changed > 0).all() and (changed < 0.5).all()  # a patch of each image, not all of it
    np.testing.assert_array_equal(np.asarray(augment.random_erasing(0.0, seed=0)(x, training=True)), x)


def test_ten_crops_are_the_centre_and_four_corner_shifts_each_mirrored():
    x = np.random.default_rng(0).integers(0, 256, (3, 10, 10, 1)).astype("float32")
    views = augment.ten_crops(x, 2)
    assert views.shape == (10, 3, 10, 10, 1)
    np.testing.assert_array_equal(views[0], x)  # the centre crop is the image itself
    np.testing.assert_array_equal(views[5:], views[:5, :, :, ::-1])
    np.testing.assert_array_equal(views[1][:, 2:, 2:], x[:, :-2, :-2])  # top-left corner: shifted by 2, 2
    assert len({v.tobytes() for v in views}) == 10


def test_tencrop_tta_averages_the_ten_views(trained_run):
    _, res = trained_run
    x = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 3)).astype("float32")
    plain = Predictor(res.run_dir, tta="none")
    ten = Predictor(res.run_dir, tta="tencrop")
    expected = np.mean([plain.predict_arrays(v) for v in augment.ten_crops(x, ten.tta_pad)], axis=0)
    got = ten.predict_arrays(x)
    assert got.shape == (5, 2)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1, atol=1e-5)
    assert ten.tta_pad == augment.default_pad(32)  # no crop recorded: the augmenter's shift


def test_tta_follows_meta_json_unless_asked():
    assert tta_mode(None, {"tta": {"mode": "tencrop", "pad": 4}}) == "tencrop"
    assert tta_mode(None, {}) == "none"
    assert tta_mode(True, {"tta": {"mode": "tencrop"}}) == "flip"
    assert tta_mode("none", {"tta": {"mode": "flip"}}) == "none"


def test_train_with_a_recipe_writes_its_resolved_config(tmp_path, capsys, monkeypatch):
    """Every new option on at once, for one tiny epoch; options given override the recipe."""
    monkeypatch.chdir(tmp_path)
    data = make_shapes(tmp_path / "data", n_per_class=16, kinds=("circle", "square"), size=32)
    code = main(["train", str(data), "--recipe", "fer-emotion7", "--classes", "circle,square", "--epochs", "2",
                 "--width", "8", "--batch-size", "8", "--img-size", "32", "--warmup-epochs", "1", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    run = Path(json.loads(out)["run"])
    cfg = train.config_from_recipe(run / "config.toml")
    assert (cfg.epochs, cfg.width, cfg.batch_size, cfg.img_size, cfg.warmup_epochs) == (2, 8, 8, 32, 1)  # given
    assert cfg.classes == ["circle", "square"] and cfg.grayscale  # given, and the recipe's
    assert (cfg.optimizer, cfg.nesterov, cfg.mixup, cfg.crop_pad, cfg.erasing) == ("sgd", True, 0.2, 4, 0.5)
    assert cfg.patience == 8 and cfg.reduce_lr is False  # resolved: arch default, and what cosine implies
    meta = json.loads((run / "meta.json").read_text())
    assert meta["tta"] == {"mode": "tencrop", "pad": 4} and meta["train"]["mixup"] == 0.2
    assert json.loads((run / "metrics.json").read_text())["tta"] == "tencrop"  # held-out figures as meta.json asks
    assert (run / "weights" / "best.keras").is_file()


@pytest.mark.slow
def test_fer_emotion7_recipe_trains_on_fer2013_and_writes_its_config(tmp_path, capsys):
    """The command docs/models.md gives, cut to one epoch (tens of minutes on 2 cores)."""
    from conftest import needs_shared

    fer = needs_shared("fer2013/train")
    code = main(["train", str(fer), "--recipe", "fer-emotion7", "--epochs", "1", "--project", str(tmp_path), "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    run = Path(json.loads(out)["run"])
    assert train.config_from_recipe(run / "config.toml") == train.config_from_recipe("fer-emotion7", epochs=1,
                                                                                   project=str(tmp_path)).resolved()


def test_bare_tta_before_a_path_still_means_flip():
    assert bare_tta(["predict", "--tta", "a.jpg"]) == ["predict", "--tta=flip", "a.jpg"]
    assert bare_tta(["predict", "a.jpg", "--tta"]) == ["predict", "a.jpg", "--tta=flip"]
    assert bare_tta(["predict", "--tta", "tencrop", "a.jpg"]) == ["predict", "--tta", "tencrop", "a.jpg"]
    assert bare_tta(["predict", "--", "--tta"]) == ["predict", "--", "--tta"]  # after --, a file name
    args = build_parser().parse_args(bare_tta(["predict", "--tta", "a.jpg"]))
    assert args.tta == "flip" and args.paths == ["a.jpg"]
