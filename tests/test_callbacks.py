"""callbacks.py, one callback at a time and without fit(): the hooks are called as Keras calls them."""

import math

import keras
import pytest

from happysad.callbacks import AtomicBest, AugmentWarmup, EpochLine, LearningRate, Plateau, Progress, Stop

# results.csv of a run killed after epoch 3 (0-based): best val_loss at epoch 1, two epochs without gain
ROWS = [{"epoch": 0, "val_loss": 0.9}, {"epoch": 1, "val_loss": 0.5}, {"epoch": 2, "val_loss": 0.7},
        {"epoch": 3, "val_loss": 0.8}]


@pytest.fixture
def model():
    net = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    net.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    return net


def attach(cb, model):
    cb.set_model(model)
    cb.on_train_begin()
    return cb


def test_progress_reads_where_a_killed_run_stood():
    p = Progress.from_rows(ROWS)
    assert (p.best, p.best_epoch, p.last_epoch, p.waited) == (0.5, 1, 3, 2) and p.started
    fresh = Progress.from_rows([])
    assert fresh.best == math.inf and not fresh.started


def test_atomic_best_saves_only_what_beats_the_best_so_far(model, tmp_path):
    path = tmp_path / "weights" / "best.keras"
    best = attach(AtomicBest(path, Progress.from_rows(ROWS)), model)
    best.on_epoch_end(4, {"val_loss": 0.6})  # better than epoch 4's neighbours, not than the resumed best
    assert not path.exists() and best.best_epoch == 1
    best.on_epoch_end(5, {"val_loss": 0.4})
    assert path.is_file() and (best.best, best.best_epoch) == (0.4, 5)
    assert keras.models.load_model(path, compile=False).count_params() == model.count_params()


def test_early_stopping_resumes_its_wait_instead_of_starting_over(model):
    resumed = attach(Stop(Progress.from_rows(ROWS), monitor="val_loss", patience=3), model)
    assert (resumed.best, resumed.best_epoch, resumed.wait) == (0.5, 1, 2)
    resumed.on_epoch_end(4, {"val_loss": 0.55})  # third epoch without beating 0.5
    assert model.stop_training

    model.stop_training = False
    fresh = attach(Stop(monitor="val_loss", patience=3), model)
    fresh.on_epoch_end(0, {"val_loss": 0.55})
    fresh.on_epoch_end(1, {"val_loss": 0.6})
    assert not model.stop_training and fresh.wait == 1


def test_plateau_resumes_its_count_since_the_last_rate_cut(model):
    # patience 2: the killed run cut the rate after epoch 3 (2 epochs without gain) and restarted its count
    plateau = attach(Plateau(Progress.from_rows([*ROWS, {"epoch": 4, "val_loss": 0.9}]), monitor="val_loss",
                             factor=0.5, patience=2, min_lr=1e-5), model)
    assert (plateau.best, plateau.wait) == (0.5, 1)
    plateau.on_epoch_end(5, {"val_loss": 0.6})
    assert float(model.optimizer.learning_rate) == pytest.approx(0.005)


def test_epoch_line_says_loss_rate_and_best(model, tmp_path, capsys):
    best = attach(AtomicBest(tmp_path / "best.keras"), model)
    line = attach(EpochLine(epochs=10, batches=3, best=best), model)
    line.on_epoch_begin(0)
    best.on_epoch_end(0, {"val_loss": 0.7})
    line.on_epoch_end(0, {"loss": 0.8, "accuracy": 0.5, "val_loss": 0.7})
    err = capsys.readouterr().err
    assert err.startswith("epoch   1/10  loss 0.8000  accuracy 0.5000  val_loss 0.7000  lr 0.01")
    assert err.rstrip().endswith("*best")
    quiet = attach(EpochLine(epochs=10, batches=3, best=best, verbose=False), model)
    quiet.on_epoch_begin(1)
    quiet.on_epoch_end(1, {"loss": 0.8})
    assert capsys.readouterr().err == ""


def test_augmentation_switches_on_after_the_warmup_epochs(model):
    on = keras.Variable(False, dtype="bool", trainable=False)
    warmup = attach(AugmentWarmup(on, warmup=2), model)
    seen = []
    for epoch in range(4):
        warmup.on_epoch_begin(epoch)
        seen.append(bool(keras.ops.convert_to_numpy(on)))
    assert seen == [False, False, True, True]


def test_learning_rate_logs_the_rate_the_epoch_ran_with(model):
    lr = attach(LearningRate(), model)
    lr.on_epoch_begin(0)
    model.optimizer.learning_rate = 0.001  # a plateau cuts the rate at the end of the epoch
    logs = {"loss": 0.5}
    lr.on_epoch_end(0, logs)
    assert logs["learning_rate"] == pytest.approx(0.01)
