"""Decode crop windows of a JPEG and resize them (the crop decoders' per-image work).

`jpeg_crop` decodes one window (at a reduced DCT scale when the window is at least twice its output, only
the window's rows and columns when window decoding works); `decode_views` decodes one image once for several
windows (views), at the smallest scale that still serves every view at the one-view rule's quality.
Windows are (top, left, height, width) in pixels of the full-size image.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from . import jpeg_window
from .area_resize import resize_area_into
from .jpeg import JPEGDecodeError, decode_jpeg, jpeg_size
from .jpeg_window import choose_scale, scaled_side


def check_header_size(blob: np.ndarray, height: int, width: int) -> None:
    """Compare the JPEG's own size with the metadata before a DCT-scaled decode, whose output size
    alone cannot tell a JPEG twice as large as the metadata says from the right one."""
    if jpeg_size(blob) != (height, width):
        stored_height, stored_width = jpeg_size(blob)
        raise JPEGDecodeError(f'JPEG is {stored_width}x{stored_height} but the metadata says {width}x{height}')


def check_decoded_size(image: np.ndarray, height: int, width: int, scaled: bool) -> None:
    """A JPEG whose header disagrees with the stored metadata is corrupt."""
    if scaled:  # M/8 scaling rounds up: ceil(side * M / 8)
        factor = image.shape[0] / height
        ok = abs(image.shape[1] - width * factor) <= 1 + factor
    else:
        ok = image.shape[:2] == (height, width)
    if not ok:
        raise JPEGDecodeError(f'JPEG is {image.shape[1]}x{image.shape[0]} but the metadata says {width}x{height}')


def scale_window(window, height: int, width: int, scaled_h: int, scaled_w: int):
    """A window of a height x width image, in the coordinates of its scaled_h x scaled_w DCT-scaled decode."""
    top, left, crop_h, crop_w = window
    scale_y, scale_x = scaled_h / height, scaled_w / width
    top, left = int(top * scale_y), int(left * scale_x)
    return (top, left, max(1, min(round(crop_h * scale_y), scaled_h - top)),
            max(1, min(round(crop_w * scale_x), scaled_w - left)))


def jpeg_crop(blob, height: int, width: int, window, out_h: int, out_w: int, scratch: np.ndarray,
               dct_scaling: bool, windowed: bool) -> np.ndarray:
    """The crop `window` (top, left, h, w) of a height x width JPEG, decoded into `scratch`: at a reduced
    DCT scale when the crop is at least twice the output, and only its rows and columns when `windowed`."""
    top, left, crop_h, crop_w = window
    need_h, need_w = -(-out_h * height // crop_h), -(-out_w * width // crop_w)
    scaled = dct_scaling and height >= 2 * need_h and width >= 2 * need_w
    if windowed and (crop_h < height or crop_w < width):
        scale = choose_scale(height, width, need_h, need_w) if scaled else 8
        if scale < 8:
            window = scale_window(window, height, width, scaled_side(height, scale), scaled_side(width, scale))
        return jpeg_window.decode_window(blob, height, width, window, scale, scratch)
    if scaled:
        check_header_size(blob, height, width)
    image = decode_jpeg(blob, out=scratch, min_height=need_h if scaled else 0, min_width=need_w if scaled else 0)
    check_decoded_size(image, height, width, scaled)
    if scaled:
        window = scale_window(window, height, width, *image.shape[:2])
    top, left, crop_h, crop_w = window
    return image[top:top + crop_h, left:left + crop_w]


def _view_need(height: int, width: int, window, out_h: int, out_w: int, dct_scaling: bool):
    """(need_h, need_w, scalable): the size the whole decoded image must have for `window` to hold at least
    out_h x out_w pixels, and whether the one-view rule decodes it at a reduced scale (the window at least
    twice the output, `dct_scaling` on)."""
    need_h, need_w = -(-out_h * height // window[2]), -(-out_w * width // window[3])
    return need_h, need_w, dct_scaling and height >= 2 * need_h and width >= 2 * need_w


def decode_views(blob, height: int, width: int, windows: Sequence, outputs: Sequence[np.ndarray],
                 dct_scaling: Sequence[bool], scratch: np.ndarray, windowed: bool) -> None:
    """Decode a height x width JPEG once and resize each window (top, left, h, w) into its output
    ((h_out, w_out, 3) uint8 arrays, INTER_AREA).

    The decode scale is the largest of the scales the one-view rule picks for each window (`jpeg_crop`):
    M/8 with M the smallest whose decode still has at least the output's pixels in that window, for a window
    at least twice its output with `dct_scaling`; full size otherwise. So every view gets at least the
    detail it would get decoded alone, a view whose own scale is the largest gets exactly the same pixels,
    and when any view needs the full size, all get a full-size decode (the same pixels as
    ``cv2.resize(full_decode[window], INTER_AREA)``). When `windowed`, only the bounding box of the windows
    is decoded (`jpeg_window`, the same pixels as a full decode).
    """
    needs = [_view_need(height, width, window, out.shape[0], out.shape[1], dct)
             for window, out, dct in zip(windows, outputs, dct_scaling)]
    scaled = all(scalable for _, _, scalable in needs)
    min_h, min_w = max(n[0] for n in needs), max(n[1] for n in needs)
    scale = choose_scale(height, width, min_h, min_w) if scaled else 8
    scaled_h, scaled_w = scaled_side(height, scale), scaled_side(width, scale)
    if scale < 8:
        windows = [scale_window(window, height, width, scaled_h, scaled_w) for window in windows]
    top, left = min(w[0] for w in windows), min(w[1] for w in windows)
    bottom, right = max(w[0] + w[2] for w in windows), max(w[1] + w[3] for w in windows)
    if windowed and (bottom - top < scaled_h or right - left < scaled_w):
        region = jpeg_window.decode_window(blob, height, width, (top, left, bottom - top, right - left), scale,
                                           scratch)
    else:
        if scale < 8:
            check_header_size(blob, height, width)
        image = decode_jpeg(blob, out=scratch, min_height=min_h if scale < 8 else 0,
                            min_width=min_w if scale < 8 else 0)
        if image.shape[:2] != (scaled_h, scaled_w):
            raise JPEGDecodeError(f'JPEG is {image.shape[1]}x{image.shape[0]} at scale {scale}/8 but the '
                                  f'metadata says {width}x{height}')
        region = image[top:bottom, left:right]
    for (y, x, h, w), out in zip(windows, outputs):
        resize_area_into(region[y - top:y - top + h, x - left:x - left + w], out)
