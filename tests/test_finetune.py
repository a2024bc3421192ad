"""train --init-from: start a 2-class model from a 3-class model's features."""

import json

import numpy as np
import pytest

from happysad import bundle, cli, train
from happysad.errors import UsageError


def test_init_from_copies_every_layer_but_the_head(shapes3, tmp_path, monkeypatch, capsys):
    src = train.train(shapes3, arch="default", img_size=32, epochs=1, batch_size=16,
                      project=str(tmp_path), name="three", verbose=False)
    copied = {}
    real = train._init_weights

    def spy(net, cfg, verbose):  # look at the weights right after the copy, before any training step
        real(net, cfg, verbose)
        copied["net"] = [w.copy() for w in net.get_weights()]
    monkeypatch.setattr(train, "_init_weights", spy)
    res = train.train(shapes3, arch="default", img_size=32, epochs=1, batch_size=16, classes=["circle", "square"],
                      project=str(tmp_path), name="two", init_from=str(src.run_dir), verbose=True)
    assert "layer(s) copied, 1 left new (the head)" in capsys.readouterr().err
    donor = bundle.load(src.run_dir).model.get_weights()
    got = copied["net"]
    assert len(got) == len(donor)
    same = [a.shape == b.shape and np.array_equal(a, b) for a, b in zip(got, donor)]
    assert all(same[:-2]) and not any(same[-2:])  # all but the head's kernel and bias
    meta = json.loads((res.run_dir / "meta.json").read_text())
    assert meta["train"]["init_from"] == str(src.run_dir) and meta["classes"] == ["circle", "square"]


def test_init_from_refuses_another_input(shapes2, trained_run, tmp_path, capsys):
    _, run = trained_run  # 32 px rgb
    with pytest.raises(UsageError, match="does not match"):
        train.train(shapes2, arch="default", img_size=40, epochs=1, project=str(tmp_path), verbose=False,
                    init_from=str(run.run_dir))
    assert cli.main(["train", str(shapes2), "--img-size", "40", "--epochs", "1", "--project", str(tmp_path),
                     "--init-from", str(run.run_dir)]) == 2
    assert "--init-from" in capsys.readouterr().err


def test_init_from_takes_the_source_width(shapes3, tmp_path, capsys):
    """A wider source (the built-in models are width 64/96) is fine-tuned at its own width, recorded in
    meta.json arch_options so that a later --init-from or --resume builds the same shapes."""
    src = train.train(shapes3, arch="default", width=16, img_size=32, epochs=1, batch_size=16,
                      project=str(tmp_path), name="narrow", verbose=False)
    assert json.loads((src.run_dir / "meta.json").read_text())["arch_options"] == {"width": 16}
    assert bundle.load(src.run_dir).model.layers[2].filters == 16
    res = train.train(shapes3, arch="default", img_size=32, epochs=1, batch_size=16, classes=["circle", "square"],
                      project=str(tmp_path), name="two", init_from=str(src.run_dir), verbose=True)
    assert "layer(s) copied, 1 left new (the head)" in capsys.readouterr().err
    meta = json.loads((res.run_dir / "meta.json").read_text())
    assert meta["arch_options"] == {"width": 16} and meta["train"]["width"] == 16


def test_width_is_checked(shapes2, tmp_path, capsys):
    for extra, msg in ((["--arch", "seed", "--width", "16"], "--arch default or tiny"), (["--width", "4"], "8 to 256")):
        assert cli.main(["train", str(shapes2), "--epochs", "1", "--project", str(tmp_path / "runs"), *extra]) == 2
        assert msg in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # refused before any run folder was made
