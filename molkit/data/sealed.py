"""Test labels that only the final scoring can read.

Nothing a run chooses by measurement (epochs, early stopping, a retriever, a threshold, a decoding
rule) may look at the test split: that is what the validation part is for. `SealedLabels` holds a
test split's labels and hands them out only inside `final_scoring()`; reading them anywhere else
(``np.asarray``, iteration, indexing, ``len`` excepted) raises `TestLabelAccessError`, which names
the fix. A method seals its test labels where it splits (`seal`) and opens the seal in the one
function that scores its final predictions, so a selection that peeks fails loudly instead of
biasing a verdict silently.

>>> labels = SealedLabels([0, 1, 1], "bbbp test")
>>> with final_scoring():
...     labels.read().tolist()
[0, 1, 1]
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["SealedLabels", "TestLabelAccessError", "final_scoring", "scoring_open", "seal"]

_OPEN = 0


class TestLabelAccessError(RuntimeError):
    """Test labels were read outside the final scoring."""

    __test__ = False  # not a pytest test class


@contextlib.contextmanager
def final_scoring() -> Iterator[None]:
    """The one place test labels are read: the final scoring of predictions already made."""
    global _OPEN
    _OPEN += 1
    try:
        yield
    finally:
        _OPEN -= 1


def scoring_open() -> bool:
    """Whether the code runs inside `final_scoring`."""
    return _OPEN > 0


class SealedLabels:
    """A test split's labels (any shape), readable only inside `final_scoring`. ``len`` and
    ``shape`` stay open (how many test items there are is no secret)."""

    __test__ = False

    def __init__(self, values: Sequence | np.ndarray, name: str = "the test split") -> None:
        self._values = np.asarray(values)
        self.name = name

    def __len__(self) -> int:
        return len(self._values)

    @property
    def shape(self) -> tuple[int, ...]:
        return self._values.shape

    def read(self) -> np.ndarray:
        """The labels; a `TestLabelAccessError` outside `final_scoring`."""
        if not scoring_open():
            raise TestLabelAccessError(
                f"the labels of {self.name} are read by the final scoring only (inside "
                "molkit.data.final_scoring()); choose epochs, early stopping, retrievers and "
                "thresholds on the validation part"
            )
        return self._values.copy()

    def __array__(self, dtype=None, copy=None):
        values = self.read()
        return values.astype(dtype) if dtype is not None else values

    def __iter__(self):
        return iter(self.read())

    def __getitem__(self, index):
        return self.read()[index]

    def __repr__(self) -> str:
        return f"SealedLabels({self.name}: {len(self)} labels, sealed)"


def seal(values: Sequence | np.ndarray, name: str = "the test split") -> SealedLabels:
    """`SealedLabels` of ``values``."""
    return SealedLabels(values, name)
