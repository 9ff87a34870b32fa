"""Crop-window math of the resized-crop decoders (torchvision's RandomResizedCrop rule, FFCV's center crop).

Windows are (top, left, height, width) in source pixels. Random windows draw from the counter-based
streams of `ffcv.pipeline.seeding`, so they depend only on each sample's seed.
"""
from __future__ import annotations

import math

import numba
import numpy as np

from ..pipeline.seeding import uniform


@numba.njit(nogil=True, cache=True)
def random_resized_crop_windows(heights, widths, seeds, scale_low, scale_high, log_ratio_low, log_ratio_high,
                                out):
    """torchvision's RandomResizedCrop window for each image; out: (B, 4) int64."""
    for i in range(heights.shape[0]):
        height, width, seed = np.int64(heights[i]), np.int64(widths[i]), seeds[i]
        area = height * width
        found = False
        for attempt in range(10):
            target_area = area * (scale_low + (scale_high - scale_low) * uniform(seed, 4 * attempt))
            aspect = math.exp(log_ratio_low + (log_ratio_high - log_ratio_low) * uniform(seed, 4 * attempt + 1))
            crop_w = np.int64(round(math.sqrt(target_area * aspect)))
            crop_h = np.int64(round(math.sqrt(target_area / aspect)))
            if 0 < crop_w <= width and 0 < crop_h <= height:
                out[i, 0] = np.int64(uniform(seed, 4 * attempt + 2) * (height - crop_h + 1))
                out[i, 1] = np.int64(uniform(seed, 4 * attempt + 3) * (width - crop_w + 1))
                out[i, 2] = crop_h
                out[i, 3] = crop_w
                found = True
                break
        if not found:  # fall back to a centred crop with the closest allowed aspect ratio
            in_ratio = width / height
            ratio_low, ratio_high = math.exp(log_ratio_low), math.exp(log_ratio_high)
            if in_ratio < ratio_low:
                crop_w = width
                crop_h = np.int64(round(crop_w / ratio_low))
            elif in_ratio > ratio_high:
                crop_h = height
                crop_w = np.int64(round(crop_h * ratio_high))
            else:
                crop_w, crop_h = width, height
            crop_h, crop_w = max(min(crop_h, height), 1), max(min(crop_w, width), 1)
            out[i, 0] = (height - crop_h) // 2
            out[i, 1] = (width - crop_w) // 2
            out[i, 2] = crop_h
            out[i, 3] = crop_w
    return out


def center_crop_windows(heights: np.ndarray, widths: np.ndarray, ratio: float) -> np.ndarray:
    """Square window of side int(ratio * min(H, W)), centred (FFCV's CenterCropRGBImageDecoder rule)."""
    heights, widths = heights.astype(np.int64), widths.astype(np.int64)
    side = np.maximum((ratio * np.minimum(heights, widths)).astype(np.int64), 1)
    return np.stack([(heights - side) // 2, (widths - side) // 2, side, side], axis=1)
