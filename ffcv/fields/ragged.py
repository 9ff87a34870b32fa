"""Decoders of variable-length samples: `NDArrayField(dtype, (None, ...))`, `BytesField` and `JSONField`.

Two shapes of output, chosen per pipeline by the decoder at its head:

* `PaddedNDArrayDecoder` / `PaddedBytesDecoder`: a padded batch ``(B, L, *row_shape)`` that flows through
  the pipeline like any array (``ToTensor()``, ``ToDevice()``, ``Convert()`` and NumPy operations apply to
  it), and the loader yields it paired with the samples' lengths: ``(padded, lengths)``, lengths an int64
  ``(B,)`` array (a CPU tensor when the padded batch is a tensor: what ``pack_padded_sequence`` wants);
* `NDArrayListDecoder` / `BytesListDecoder`: the same padded batch through the pipeline, yielded as a list
  of B arrays/tensors of their own lengths (views of the final batch: on the GPU after ``ToDevice()``).

``L`` is `max_length`, by default the longest sample of the file. A sample longer than an explicit
`max_length` fails when the `Loader` is created, naming the sample, unless ``truncate=True`` (then its
first `max_length` rows are kept and its length is reported as `max_length`).

How the loader pairs the outputs: a decoder may define ``finish_output(result, buffers)``; the loader
calls it with the pipeline's final result and this decoder's buffers of the batch, and yields what it
returns (`ffcv.loader.epoch_iterator`).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

import numba
import numpy as np
import torch

from ..pipeline.allocation_query import AllocationQuery
from ..pipeline.compiler import run_kernel
from ..pipeline.storage import blob_location
from .bytes import BytesDecoder
from .ndarray import NDArrayDecoder


@numba.njit(nogil=True, cache=True)
def fill_padded(indices, ptrs, rows, row_size, storage_state, destination, lengths, pad_row):
    """destination[i] = the first min(rows, L) rows of sample indices[i], then copies of `pad_row`.

    destination: (B, L * row_size) uint8 (L = destination.shape[1] // row_size, or its rows when row_size is
    0); lengths[i] receives the number of rows kept. ptrs / rows: the field's metadata columns.
    """
    memory = storage_state[0]
    width = destination.shape[1]
    capacity = width // row_size if row_size > 0 else 0
    for i in range(indices.shape[0]):
        sample = indices[i]
        n = np.int64(rows[sample])
        if row_size > 0:
            n = min(n, capacity)
            start, _ = blob_location(ptrs[sample], storage_state)
            used = n * row_size
            destination[i, :used] = memory[start:start + used]
            for at in range(used, width, row_size):
                destination[i, at:at + row_size] = pad_row
        lengths[i] = n
    return destination


def _pad_row(value, dtype: np.dtype, row_shape) -> np.ndarray:
    """One row of the pad value as bytes; ValueError when `dtype` cannot hold it exactly."""
    try:
        row = np.full(row_shape, value, dtype=dtype)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f'pad_value {value!r} cannot be stored as {dtype}: {exc}') from None
    if dtype.kind in 'biu' and not np.all(row == value):  # floats round, as any cast to float32 does
        raise ValueError(f'pad_value {value!r} cannot be stored as {dtype} without changing it')
    return np.ascontiguousarray(row).reshape(-1).view(np.uint8)


class _RaggedDecoding:
    """The shared implementation: padded decode into (data, lengths) buffers, output finished per mode."""

    as_list = False

    def __init__(self, max_length: Optional[int] = None, pad_value=0, truncate: bool = False):
        super().__init__()
        if max_length is not None and (not isinstance(max_length, (int, np.integer)) or max_length < 0):
            raise ValueError(f'max_length must be None or an int >= 0, got {max_length!r}')
        self.max_length = None if max_length is None else int(max_length)
        self.pad_value = pad_value
        self.truncate = bool(truncate)

    def _layout(self):
        return self.field.ragged_layout()

    def declare_state_and_memory(self, previous_state):
        ptr_name, rows_name, row_shape, dtype = self._layout()
        rows = np.asarray(self.metadata[rows_name], dtype=np.int64)
        longest = int(rows.max()) if rows.size else 0
        length = longest if self.max_length is None else self.max_length
        if longest > length and not self.truncate:
            sample = int(np.argmax(rows > length))
            count = int((rows > length).sum())
            raise ValueError(f'sample {sample} has {int(rows[sample])} rows, more than max_length={length} '
                             f'({count} sample(s) of the file are longer, the longest {longest}); raise max_length '
                             'or pass truncate=True to keep only their first max_length rows')
        self._pad = _pad_row(self.pad_value, dtype, row_shape)
        shape = (length, *row_shape)
        return (replace(previous_state, jit_mode=True, shape=shape, dtype=dtype),
                (AllocationQuery(shape, dtype), AllocationQuery((), np.dtype('int64'))))

    def generate_code(self):
        ptr_name, rows_name, _, _ = self._layout()
        row_size = int(self._pad.size)
        pad = self._pad

        def decode(indices, destination, metadata, storage_state):
            data, lengths = destination
            flat = data.reshape(data.shape[0], -1).view(np.uint8)
            run_kernel(fill_padded, indices, metadata[ptr_name], metadata[rows_name], row_size, storage_state, flat,
                       lengths, pad)
            return data
        decode.python_code = True
        decode.per_sample = True
        return decode

    def finish_output(self, result, buffers):
        """The loader's output of this pipeline: ``(result, lengths)``, or a list when `as_list`."""
        lengths = buffers[1]
        if isinstance(result, torch.Tensor):
            lengths = torch.from_numpy(lengths)
        if not self.as_list:
            return result, lengths
        if result.shape[0] != lengths.shape[0]:
            raise ValueError(f'{type(self).__name__}: the pipeline turned a batch of {lengths.shape[0]} samples '
                             f'into {result.shape[0]} rows; the list cannot be cut')
        return [result[i, :n] for i, n in enumerate(lengths.tolist())]

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(max_length={self.max_length}, pad_value={self.pad_value!r}, '
                f'truncate={self.truncate})')


class PaddedNDArrayDecoder(_RaggedDecoding, NDArrayDecoder):
    """Decoder of a variable-length `NDArrayField` (shape ``(None, ...)``): padded batch + lengths.

    Output: ``(padded, lengths)``: padded (B, max_length, *row_shape) of the field's dtype, passed through the
    rest of the pipeline; lengths (B,) int64, on the CPU.

    Parameters
    ----------
    max_length : int, optional
        Rows of the padded batch (default: the longest sample of the file).
    pad_value : number
        Value of the rows past a sample's length (must be exact in the field's dtype).
    truncate : bool
        Cut samples longer than `max_length` instead of failing at ``Loader(...)``.
    """


class NDArrayListDecoder(PaddedNDArrayDecoder):
    """Decoder of a variable-length `NDArrayField`: a list of B arrays (tensors after ``ToTensor()``).

    Same parameters as `PaddedNDArrayDecoder` (`pad_value` only fills the unused buffer). The list holds
    views of the pipeline's final padded batch, ``batch[i, :length_i]``.
    """
    as_list = True


class PaddedBytesDecoder(_RaggedDecoding, BytesDecoder):
    """Decoder of `BytesField` / `JSONField`: padded uint8 batch (B, max_length) + lengths.

    Unlike `BytesDecoder` (rows as long as the file's longest blob, lengths not given), the length of each
    sample comes with the batch and `max_length` is yours to choose (see `PaddedNDArrayDecoder`).
    """

    def _layout(self):
        return 'ptr', 'size', (), np.dtype('uint8')


class BytesListDecoder(PaddedBytesDecoder):
    """Decoder of `BytesField` / `JSONField`: a list of B uint8 arrays (tensors after ``ToTensor()``)."""
    as_list = True
