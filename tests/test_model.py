import numpy as np
import pytest

from happysad import model
from happysad.errors import UsageError


def test_seed_is_the_tutorials_nine_layers():
    m = model.build("seed", (256, 256, 3), 2)
    kinds = [type(l).__name__ for l in m.layers[2:]]  # after Input and Rescaling
    assert kinds == ["Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D",
                     "Flatten", "Dense", "Dense"]
    convs = [l for l in m.layers if type(l).__name__ == "Conv2D"]
    assert [c.filters for c in convs] == [16, 32, 16]
    assert all(c.kernel_size == (3, 3) and c.activation.__name__ == "relu" for c in convs)
    dense = [l for l in m.layers if type(l).__name__ == "Dense"]
    assert dense[0].units == 256 and dense[1].units == 1 and dense[1].activation.__name__ == "sigmoid"
    assert m.count_params() == 3_696_625  # the seed notebook's model.summary() total


def test_heads_and_sizes():
    m3 = model.build("seed", (48, 48, 1), 3)
    assert m3.output_shape == (None, 3) and m3.layers[-1].activation.__name__ == "softmax"
    for side in (32, 48, 96, 128, 256):
        m = model.build("default", (side, side, 3), 2)
        out = m.predict_on_batch(np.zeros((2, side, side, 3), np.float32))
        assert out.shape == (2, 1) and np.all((out >= 0) & (out <= 1))
        assert m.count_params() < 2_000_000


def test_bad_arguments():
    with pytest.raises(UsageError, match="unknown --arch"):
        model.build("resnet9000", (48, 48, 3), 2)
    with pytest.raises(UsageError):
        model.build("default", (48, 48, 3), 1)
    with pytest.raises(UsageError):
        model.build("seed", (16, 16, 3), 2)
