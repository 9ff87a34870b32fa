"""`ToImageList`: packed images of different sizes -> a list of (3, H, W) tensors (detection models' input)."""
from __future__ import annotations

from dataclasses import replace
from typing import List, Optional

import torch

from ..pipeline.operation import Operation
from ..pipeline.state import State


def unpack_images(packed: torch.Tensor, shapes: torch.Tensor) -> List[torch.Tensor]:
    """Views (3, H_i, W_i) of the images stored back to back, (H_i, W_i, 3) each, in the 1-D `packed`.

    `shapes` is the (B, 2) tensor of (H_i, W_i) that `PackedRGBImageDecoder` gives with `packed`. Each
    view keeps the packed memory's layout (channels last: strides (1, 3 * W_i, 3)).
    """
    images, offset = [], 0
    for height, width in shapes.tolist():
        size = 3 * height * width
        images.append(packed[offset:offset + size].view(height, width, 3).permute(2, 0, 1))  # (H,W,3)->(3,H,W)
        offset += size
    if offset != packed.shape[0]:
        raise ValueError(f'the shapes describe {offset} bytes of images, the packed batch holds {packed.shape[0]}')
    return images


class ToImageList(Operation):
    """The ``(packed, shapes)`` output of `PackedRGBImageDecoder` as a list of B images (3, H_i, W_i).

    Input: the pair from `PackedRGBImageDecoder` (place right after it). Output: a list of tensors, views of
    one buffer per batch (valid while you hold the batch, like every loader output).

    Parameters
    ----------
    device : torch.device or str, optional
        Copy the batch there first (one asynchronous copy of the packed bytes from pinned memory).
    to_float : bool
        float32 in [0, 1] (``uint8 / 255``), what torchvision's detection models take; else uint8.
    non_blocking : bool
        Asynchronous copy to `device` (the loader orders it before your use of the batch).
    """

    def __init__(self, device=None, to_float: bool = False, non_blocking: bool = True):
        super().__init__()
        self.device = None if device is None else torch.device(f'cuda:{device}' if isinstance(device, int)
                                                               else device)
        self.to_float = bool(to_float)
        self.non_blocking = non_blocking

    def declare_state_and_memory(self, previous_state: State):
        if previous_state.jit_mode or previous_state.shape is not None or previous_state.dtype != torch.uint8:
            raise ValueError('expects the (packed, shapes) pair of PackedRGBImageDecoder; place ToImageList() '
                             'right after that decoder')
        device = self.device if self.device is not None else previous_state.device
        dtype = torch.float32 if self.to_float else torch.uint8
        return replace(previous_state, device=device, dtype=dtype), None

    def generate_code(self):
        device, to_float, non_blocking = self.device, self.to_float, self.non_blocking

        def to_image_list(batch, destination):
            if not (isinstance(batch, tuple) and len(batch) == 2):
                raise TypeError(f'ToImageList expects the (packed, shapes) pair of PackedRGBImageDecoder, got '
                                f'{type(batch).__name__}')
            packed, shapes = batch
            if device is not None:
                packed = packed.to(device, non_blocking=non_blocking)
            if to_float:
                packed = packed.to(torch.float32).div_(255)
            return unpack_images(packed, shapes)
        to_image_list.python_code = True
        return to_image_list

    def __repr__(self) -> str:
        return f'ToImageList(device={self.device}, to_float={self.to_float})'


def images_to_list(packed: torch.Tensor, shapes: torch.Tensor, device: Optional[torch.device] = None,
                   to_float: bool = False) -> List[torch.Tensor]:
    """Functional form of `ToImageList` (for a pair kept as the loader's output)."""
    if device is not None:
        packed = packed.to(device)
    if to_float:
        packed = packed.to(torch.float32).div_(255)
    return unpack_images(packed, shapes)
