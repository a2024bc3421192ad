"""Each default is declared once, in the module that owns it: the CLI reads it from there, so a parsed
command line without options is the library's own default, and --help shows that value."""

import pytest

from happysad import cli, clean, demo, split
from happysad.train import TrainConfig


@pytest.fixture(scope="module")
def parser():
    return cli.build_parser()


def test_clean_split_and_demo_defaults_come_from_their_modules(parser):
    c = parser.parse_args(["clean", "data"])
    assert (c.min_side, c.min_bytes, c.animated, c.near_dup_distance) == (
        clean.MIN_SIDE, clean.MIN_BYTES, clean.ANIMATED, clean.NEAR_DUP_DISTANCE)
    s = parser.parse_args(["split", "data", "--out", "s.csv"])
    assert tuple(s.ratios) == split.DEFAULT_RATIOS and s.seed == TrainConfig.seed
    d = parser.parse_args(["demo"])
    assert (d.workdir, d.epochs) == (demo.WORKDIR, demo.EPOCHS)


@pytest.mark.parametrize("command, shown", [
    ("train", [f"default {TrainConfig.epochs}", f"default {TrainConfig.batch_size}", TrainConfig.project]),
    ("clean", [f"default {clean.MIN_SIDE}", f"default {clean.NEAR_DUP_DISTANCE}", f"default {clean.ANIMATED}"]),
    ("split", ["default " + " ".join(f"{r:g}" for r in split.DEFAULT_RATIOS)]),
])
def test_help_shows_the_defaults_that_apply(command, shown, capsys):
    with pytest.raises(SystemExit):
        cli.main([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for s in shown:
        assert s in text
