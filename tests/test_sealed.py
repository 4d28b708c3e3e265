"""The test-split guard: only the final scoring reads a test split's labels; any other read (a
selection on the test set) raises an error that names the fix."""

import numpy as np
import pytest

from molkit.data import SealedLabels, TestLabelAccessError, final_scoring, seal


def test_labels_are_read_only_inside_the_final_scoring():
    labels = seal([0, 1, 1, 0], "bbbp test (scaffold split)")
    assert len(labels) == 4 and labels.shape == (4,)  # the size is no secret
    for peek in (np.asarray, list, lambda x: x[0], lambda x: x.read(), lambda x: np.mean(x)):
        with pytest.raises(TestLabelAccessError, match="validation part") as info:
            peek(labels)
        assert "bbbp test (scaffold split)" in str(info.value)
    with final_scoring():
        assert np.asarray(labels).tolist() == [0, 1, 1, 0] and labels[2] == 1
        with final_scoring():  # nested scoring stays open until the outer one ends
            assert labels.read().sum() == 2
        assert list(labels) == [0, 1, 1, 0]
    with pytest.raises(TestLabelAccessError):
        labels.read()
    assert "sealed" in repr(labels) and isinstance(labels, SealedLabels)


def test_an_epoch_choice_that_peeks_at_test_fails():
    """A selection loop that scores candidate epochs on the test labels raises; the same loop on
    validation labels runs, and the chosen model is then scored once."""
    rng = np.random.default_rng(0)
    valid_y, test_y = rng.integers(0, 2, 20), seal(rng.integers(0, 2, 20), "toy test")
    predictions = {epoch: rng.random(20) for epoch in (1, 2, 3)}

    def accuracy(y, p):
        return float(np.mean((np.asarray(p) > 0.5) == np.asarray(y)))

    with pytest.raises(TestLabelAccessError):
        max(predictions, key=lambda e: accuracy(test_y, predictions[e]))
    chosen = max(predictions, key=lambda e: accuracy(valid_y, predictions[e]))
    with final_scoring():
        assert 0.0 <= accuracy(test_y, predictions[chosen]) <= 1.0
