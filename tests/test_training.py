"""The one training loop (`pipeline.heads.training`): early stopping, the best epoch kept, the non-finite rule,
and the trained heads that run through it (fine-tuning's share is in test_finetune.py)."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
from samples import PLANTED_BEST, PLANTED_LAST, PlantedLoop, feature_set, same_weights

from pipeline.errors import HeadError, PipelineError
from pipeline.heads.features import FeatureSet, SplitData
from pipeline.heads.kinds import gap_dense, multitask
from pipeline.heads.registry import make_head
from pipeline.heads.training import LoopState, Stopping, run_epochs

REMEDY = "lower the learning rate"


class Curve:
    """A trainee whose weights are its epoch number and whose losses are planted."""

    def __init__(self, valid_losses, train_losses=None):
        self.valid_losses, self.train_losses = valid_losses, train_losses or {}
        self.epoch = 0

    def train_epoch(self, epoch):
        self.epoch = epoch
        return {"loss": self.train_losses.get(epoch, 1.0)}

    def validate(self):
        return {"valid_loss": self.valid_losses[self.epoch]}

    def weights(self):
        return self.epoch

    def set_weights(self, weights):
        self.epoch = weights


def test_the_best_epoch_must_beat_the_best_so_far_by_more_than_min_delta_and_patience_stops():
    losses = [None, 1.0, 0.9, 0.8995, 0.95, 0.91, 0.5]
    trainee = Curve(losses)
    state = run_epochs(trainee, Stopping(epochs=6, patience=3, min_delta=0.001), REMEDY)
    assert (state.best_epoch, state.epoch, trainee.epoch) == (2, 5, 2)  # epoch 3 is lower by 0.0005 only
    assert [record["epoch"] for record in state.history] == [1, 2, 3, 4, 5]
    assert state.stopped == ""
    everything = run_epochs(Curve(losses), Stopping(epochs=6, patience=None), REMEDY)
    assert (everything.best_epoch, everything.epoch) == (6, 6)


def test_starting_weights_are_epoch_0_and_a_run_continues_from_a_state():
    trainee = Curve([0.5, 1.0, 0.9, 0.8])
    state = run_epochs(trainee, Stopping(epochs=3, patience=2), REMEDY, score_start=True)
    assert (state.best_epoch, state.epoch, trainee.epoch) == (0, 2, 0)
    assert state.history[0] == {"epoch": 0, "loss": None, "valid_loss": 0.5}
    seen = []
    partial = LoopState(epoch=1, history=({"epoch": 1, "valid_loss": 1.0},), best_epoch=1, best_loss=1.0,
                        best_weights=1)
    resumed = run_epochs(Curve([None, 1.0, 0.9, 0.8]), Stopping(epochs=3, patience=2), REMEDY, start=partial,
                         on_epoch=lambda s, record: seen.append((s.epoch, record["epoch"])))
    assert (resumed.best_epoch, [record["epoch"] for record in resumed.history]) == (3, [1, 2, 3])
    assert seen == [(2, 2), (3, 3)]


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_training_loss_stops_and_keeps_the_best_finite_epoch(bad, caplog):
    trainee = Curve([None, 1.0, 0.8, 0.9, 0.1], train_losses={4: bad})
    with caplog.at_level(logging.WARNING, logger="pipeline.heads.training"):
        state = run_epochs(trainee, Stopping(epochs=10, patience=5), REMEDY)
    assert (state.best_epoch, state.epoch, trainee.epoch) == (2, 3, 2)
    assert len(state.history) == 3 and f"training loss was {bad} at epoch 4" in state.stopped
    assert "keeping epoch 2" in caplog.text


def test_a_non_finite_validation_loss_stops_like_a_training_one():
    trainee = Curve([None, 1.0, math.nan, 0.1])
    state = run_epochs(trainee, Stopping(epochs=10, patience=5), REMEDY)
    assert (state.best_epoch, trainee.epoch, len(state.history)) == (1, 1, 1)
    assert "validation loss was nan at epoch 2" in state.stopped


def test_no_finite_epoch_is_a_pipeline_error_saying_what_to_change():
    with pytest.raises(HeadError, match=f"no finite loss .*training loss was nan at epoch 1.*; {REMEDY}"):
        run_epochs(Curve([None, 1.0], train_losses={1: math.nan}), Stopping(epochs=5, patience=2), REMEDY)
    with pytest.raises(PipelineError, match="validation loss was inf at epoch 0"):
        run_epochs(Curve([math.inf, 1.0]), Stopping(epochs=5, patience=2), REMEDY, score_start=True)


_MODULE_OF = {"gap-dense": gap_dense, "mlp": gap_dense, "multitask": multitask}


@pytest.mark.parametrize("kind", list(_MODULE_OF))
@pytest.mark.parametrize("nan_from", [None, 6])
def test_every_trained_head_runs_the_one_loop(kind, nan_from, monkeypatch):
    """A planted validation curve: each head stops where the loop does and ends with the best epoch's weights;
    a NaN training loss at epoch 6 stops it there, keeping the best finite epoch."""
    planted = PlantedLoop(nan_from=nan_from)
    monkeypatch.setattr(_MODULE_OF[kind], "run_epochs", planted)
    head = make_head(kind).fit(feature_set())
    last = PLANTED_LAST if nan_from is None else nan_from - 1
    assert planted.calls == 1
    assert [record["epoch"] for record in head.search_] == list(range(1, last + 1))
    assert (head.params_["best_epoch"], head.params_["epochs_run"]) == (PLANTED_BEST, last)
    assert same_weights(planted.final, planted.weights_at[PLANTED_BEST])
    assert not same_weights(planted.final, planted.weights_at[last])


@pytest.mark.parametrize("kind", ["gap-dense", "multitask"])  # mlp's ReLU turns NaN inputs into zeros
def test_a_head_whose_every_epoch_is_non_finite_is_refused_with_the_fix(kind):
    features = feature_set()
    train = features.splits["train"]
    broken = train.x.copy()
    broken[0, 0] = np.nan  # fit-head refuses such rows before this; the loop is the last line
    features = FeatureSet(features.info, {**features.splits, "train": SplitData(broken, train.y, train.relpaths)})
    with pytest.raises(HeadError, match=r"no finite loss \(the training loss was nan at epoch 1\).*cache verify"):
        make_head(kind).fit(features)
