"""`ReplaceLabel`: set the label of chosen dataset samples to a fixed value (label-flipping experiments)."""
from __future__ import annotations

from dataclasses import replace

import numba
import numpy as np

from ..pipeline.compiler import run_kernel
from ..pipeline.operation import Operation
from ._checks import is_selected, require_numpy_labels, selection, writable

# Names FFCV 1.0.2 also exposes from this module (code written for it imports them from here).
from ..pipeline.allocation_query import AllocationQuery  # noqa: F401
from ..pipeline.compiler import Compiler  # noqa: F401
from ..pipeline.state import State  # noqa: F401


@numba.njit(nogil=True, cache=True)
def replace_label_kernel(labels, indices, mask, rest, new_label):
    """In place: labels[i] = new_label where indices[i] is selected (`mask`, `rest` from `selection`); labels (B, 1)."""
    for i in range(labels.shape[0]):
        if is_selected(indices[i], mask, rest):
            labels[i, 0] = new_label
    return labels


class ReplaceLabel(Operation):
    """Replace the label of the samples whose dataset index is in `indices` by `new_label`.

    Input:  NumPy batch of one label per sample (B, 1) (e.g. IntDecoder()), JIT stage.
    Output: the same batch, modified in place.

    Parameters
    ----------
    indices : sequence of int
        Dataset indices of the samples to relabel.
    new_label : int
        The label they get.
    """

    modifies_input = True  # works in place (a read-only batch is copied first)


    def __init__(self, indices, new_label: int):
        super().__init__()
        self.indices = np.sort(np.asarray(indices, np.int64).reshape(-1))
        self.new_label = new_label
        self._selection = selection(self.indices)

    def declare_state_and_memory(self, previous_state):
        require_numpy_labels(previous_state, self)
        self._value = np.asarray(self.new_label).astype(previous_state.dtype)[()]
        return replace(previous_state, jit_mode=True), None

    def generate_code(self):
        (mask, rest), value = self._selection, self._value

        def replace_label(labels, destination, indices):
            labels = writable(labels)
            rows = labels if labels.ndim == 2 else labels.reshape(labels.shape[0], 1)
            run_kernel(replace_label_kernel, rows, indices, mask, rest, value)
            return labels
        replace_label.python_code = True
        replace_label.with_indices = True
        return replace_label

    def __repr__(self):
        return f'ReplaceLabel({len(self.indices)} samples, new_label={self.new_label})'
