"""Compiled single-image kernels shared by the augmentations (RandAugment's ops, hue, blur, grayscale, ...).

Every kernel takes one uint8 image (H, W, C), C-contiguous, and reproduces the arithmetic of the
torchvision functional op of the same name on a uint8 tensor: the float32 operations in the same order,
the same rounding (truncation after a clamp for blends, round-half-even for convolutions and grid
sampling). In-place kernels return nothing; out-of-place ones write `out` (same shape as the image).
"""
from __future__ import annotations

import math

import numba
import numpy as np

from .color_jitter import _BLUE, _GREEN, _RED, _to_uint8

_F0, _F1, _F255 = np.float32(0.0), np.float32(1.0), np.float32(255.0)
_TO_BYTE = np.float32(255.999)  # torchvision's float -> uint8 conversion multiplies by 255 + 1 - 1e-3
_SIX = np.float32(6.0)
_FOUR, _THIRTEENTH = np.float32(4.0), np.float32(1.0 / 13.0)
_ROUNDER = np.float32(12582912.0)  # 1.5 * 2**23: (v + it) - it rounds a float32 |v| < 2**22 half to even


# --- Point ops (in place) -------------------------------------------------------------------------

@numba.njit(nogil=True, cache=True, inline='always')
def _gray_int(values, k):
    """Grayscale of the pixel whose red value is values[k]: torchvision's uint8(0.2989 R + 0.587 G +
    0.114 B) in float32 (the sum is in [0, 255), so truncating through int32 is the same and lets the
    compiler vectorise)."""
    return np.int32(_RED * np.float32(values[k]) + _GREEN * np.float32(values[k + 1])
                    + _BLUE * np.float32(values[k + 2]))


@numba.njit(nogil=True, cache=True, inline='always')
def _gray_value(values, k):
    """`_gray_int` as float32."""
    return np.float32(_gray_int(values, k))


@numba.njit(nogil=True, cache=True)
def grayscale_image(image):
    """Every pixel becomes (g, g, g), g = uint8(0.2989 R + 0.587 G + 0.114 B) (rgb_to_grayscale)."""
    values = image.reshape(-1)
    for k in range(0, values.shape[0], 3):
        gray = np.uint8(_gray_value(values, k))
        values[k], values[k + 1], values[k + 2] = gray, gray, gray


@numba.njit(nogil=True, cache=True)
def solarize_image(image, threshold):
    """value >= threshold becomes 255 - value (solarize; `threshold` is a float)."""
    limit = np.int64(math.ceil(threshold))  # v >= threshold <=> v >= ceil(threshold) for integers v
    values = image.reshape(-1)
    for k in range(values.shape[0]):
        v = values[k]
        values[k] = 255 - v if np.int64(v) >= limit else v


@numba.njit(nogil=True, cache=True)
def posterize_image(image, bits):
    """Keep the `bits` high bits of every value (posterize)."""
    mask = np.uint8((0xFF << (8 - bits)) & 0xFF)
    values = image.reshape(-1)
    for k in range(values.shape[0]):
        values[k] &= mask


@numba.njit(nogil=True, cache=True)
def brightness_image(image, factor):
    """uint8(clamp(f * value, 0, 255)) (adjust_brightness)."""
    values, f = image.reshape(-1), np.float32(factor)
    for k in range(values.shape[0]):
        values[k] = _to_uint8(f * np.float32(values[k]))


@numba.njit(nogil=True, cache=True)
def saturation_image(image, factor):
    """Blend every pixel with its grayscale value (adjust_saturation)."""
    height = image.shape[0]
    rows = image.reshape(height, -1)
    f, rest = np.float32(factor), np.float32(1.0 - factor)
    grays = np.empty(rows.shape[1] // 3, np.float32)  # (1 - f) * gray of each pixel of a row
    for h in range(height):
        row = rows[h]
        for p in range(grays.shape[0]):  # two loops the compiler vectorises
            grays[p] = rest * _gray_value(row, 3 * p)
        for p in range(grays.shape[0]):
            gray, k = grays[p], 3 * p
            row[k] = _to_uint8(f * np.float32(row[k]) + gray)
            row[k + 1] = _to_uint8(f * np.float32(row[k + 1]) + gray)
            row[k + 2] = _to_uint8(f * np.float32(row[k + 2]) + gray)


@numba.njit(nogil=True, cache=True)
def contrast_image(image, factor):
    """Blend every value with the image's mean grayscale value (adjust_contrast; the mean is exact, torch's
    float32 mean can differ in its last bits, so a rare value differs by 1)."""
    values = image.reshape(-1)
    total = 0
    for k in range(0, values.shape[0], 3):
        total += _gray_int(values, k)
    f = np.float32(factor)
    offset = np.float32(1.0 - factor) * np.float32(total / (values.shape[0] // 3))
    for k in range(values.shape[0]):
        values[k] = _to_uint8(f * np.float32(values[k]) + offset)


@numba.njit(nogil=True, cache=True)
def _apply_tables(image, tables):
    """values[k, c] = tables[c, values[k, c]] (one lookup table per channel)."""
    channels = image.shape[2]
    values = image.reshape(-1, channels)
    for k in range(values.shape[0]):
        for c in range(channels):
            values[k, c] = tables[c, values[k, c]]


@numba.njit(nogil=True, cache=True)
def autocontrast_image(image):
    """Stretch each channel to [0, 255]: (value - min) * (255 / (max - min)) in float32 (autocontrast)."""
    channels = image.shape[2]
    values = image.reshape(-1, channels)
    low, high = np.full(channels, 255, np.uint8), np.zeros(channels, np.uint8)
    for c in range(channels):
        lowest, highest = np.uint8(255), np.uint8(0)
        for k in range(values.shape[0]):
            lowest, highest = min(lowest, values[k, c]), max(highest, values[k, c])
        low[c], high[c] = lowest, highest
    tables = np.empty((channels, 256), np.uint8)
    for c in range(channels):
        minimum = np.float32(low[c])
        # torchvision: an infinite scale (max == min) becomes minimum 0, scale 1 (the channel is unchanged)
        # 255 / range as torch computes a number over a tensor: reciprocal first, then the product
        scale = (_F1 / (np.float32(high[c]) - minimum)) * _F255 if high[c] > low[c] else _F1
        if high[c] == low[c]:
            minimum = _F0
        for v in range(256):
            tables[c, v] = _to_uint8((np.float32(v) - minimum) * scale)
    _apply_tables(image, tables)


@numba.njit(nogil=True, cache=True)
def equalize_image(image):
    """Histogram equalisation per channel with torchvision's integer lookup table (equalize)."""
    channels = image.shape[2]
    values = image.reshape(-1, channels)
    histograms = np.zeros((channels, 256), np.int64)
    for k in range(values.shape[0]):
        for c in range(channels):
            histograms[c, values[k, c]] += 1
    tables = np.empty((channels, 256), np.uint8)
    for c in range(channels):
        histogram = histograms[c]
        last = 255  # the highest value present: its count is left out of the step
        while histogram[last] == 0:
            last -= 1
        step = (values.shape[0] - histogram[last]) // 255
        cumulative = 0
        for v in range(256):  # table[v] = (count of values < v + step // 2) // step, at most 255
            tables[c, v] = v if step == 0 else min((cumulative + step // 2) // step, 255)
            cumulative += histogram[v]
    _apply_tables(image, tables)


@numba.njit(nogil=True, cache=True)
def hue_image(image, hue_factor):
    """Rotate every pixel's hue by `hue_factor` turns through float32 HSV (adjust_hue's arithmetic)."""
    pixels = image.reshape(-1, 3)
    shift = np.float32(hue_factor)
    for k in range(pixels.shape[0]):
        r = np.float32(pixels[k, 0]) / _F255
        g = np.float32(pixels[k, 1]) / _F255
        b = np.float32(pixels[k, 2]) / _F255
        high, low = max(r, g, b), min(r, g, b)
        chroma = high - low
        if high == low:
            s, h = _F0, _F0
        else:
            s = chroma / high
            rc, gc, bc = (high - r) / chroma, (high - g) / chroma, (high - b) / chroma
            if high == r:
                h = bc - gc
            elif high == g:
                h = np.float32(2.0) + rc - bc
            else:
                h = np.float32(4.0) + gc - rc
            h = h / _SIX + _F1
            h = h - np.float32(math.floor(h))  # fmod(h, 1) of a positive h
        h = h + shift
        h = h - np.float32(math.floor(h))  # Python-style modulo 1
        scaled = h * _SIX
        sector = np.float32(math.floor(scaled))
        f = scaled - sector
        p = min(max(high * (_F1 - s), _F0), _F1)
        q = min(max(high * (_F1 - s * f), _F0), _F1)
        t = min(max(high * (_F1 - s * (_F1 - f)), _F0), _F1)
        i = int(sector) % 6
        if i == 0:
            r, g, b = high, t, p
        elif i == 1:
            r, g, b = q, high, p
        elif i == 2:
            r, g, b = p, high, t
        elif i == 3:
            r, g, b = p, q, high
        elif i == 4:
            r, g, b = t, p, high
        else:
            r, g, b = high, p, q
        pixels[k, 0] = np.uint8(r * _TO_BYTE)
        pixels[k, 1] = np.uint8(g * _TO_BYTE)
        pixels[k, 2] = np.uint8(b * _TO_BYTE)


# --- Neighbourhood and geometric ops (out of place) -----------------------------------------------

@numba.njit(nogil=True, cache=True)
def sharpness_image(image, out, factor):
    """out = blend(image, smoothed image, factor) (adjust_sharpness): the smoothing kernel is
    [[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13 on interior pixels, rounded half to even (a sum over 13 is never
    within float32 error of a half, so floor(total / 13 + 0.5) in float32 is torch's result);
    border pixels blend with themselves."""
    height, width, channels = image.shape
    if height <= 2 or width <= 2:
        out[:] = image
        return
    f, rest = np.float32(factor), np.float32(1.0 - factor)
    rows, targets = image.reshape(height, width * channels), out.reshape(height, width * channels)
    n = width * channels
    columns = np.empty(n, np.float32)  # sums of the three rows around h, per value
    for h in range(1, height - 1):  # float32 sums of integers: exact
        above, row, below, target = rows[h - 1], rows[h], rows[h + 1], targets[h]
        for k in range(n):
            columns[k] = np.float32(above[k]) + np.float32(row[k]) + np.float32(below[k])
        for k in range(channels, n - channels):
            value = np.float32(row[k])
            total = columns[k - channels] + columns[k] + columns[k + channels] + _FOUR * value
            smooth = np.float32(np.int32(total * _THIRTEENTH + np.float32(0.5)))
            target[k] = _to_uint8(f * value + rest * smooth)
    last = (width - 1) * channels
    for h in range(height):  # the border blends with itself (f v + (1 - f) v can round below v)
        row, target = rows[h], targets[h]
        for k in range(width * channels) if h == 0 or h == height - 1 else range(channels):
            target[k] = _to_uint8(f * np.float32(row[k]) + rest * np.float32(row[k]))
            if 0 < h < height - 1:
                target[last + k] = _to_uint8(f * np.float32(row[last + k]) + rest * np.float32(row[last + k]))


@numba.njit(nogil=True, cache=True)
def inverse_affine_matrix(center_x, center_y, angle, translate_x, translate_y, shear_x, shear_y):
    """The 2x3 matrix mapping output to input coordinates (origin at the image centre) of a rotation by
    `angle` degrees (clockwise in the image), shear (degrees) and translation (pixels) about
    (center_x, center_y) (torchvision's convention for affine(); scale 1)."""
    rot, sx, sy = math.radians(angle), math.radians(shear_x), math.radians(shear_y)
    a = math.cos(rot - sy) / math.cos(sy)
    b = -math.cos(rot - sy) * math.tan(sx) / math.cos(sy) - math.sin(rot)
    c = math.sin(rot - sy) / math.cos(sy)
    d = -math.sin(rot - sy) * math.tan(sx) / math.cos(sy) + math.cos(rot)
    matrix = np.array([d, -b, 0.0, -c, a, 0.0])  # inverse of [[a, b], [c, d]] (its determinant is 1)
    matrix[2] = matrix[0] * (-center_x - translate_x) + matrix[1] * (-center_y - translate_y) + center_x
    matrix[5] = matrix[3] * (-center_x - translate_x) + matrix[4] * (-center_y - translate_y) + center_y
    return matrix


@numba.njit(nogil=True, cache=True)
def affine_nearest(image, out, matrix, fill):
    """On RGB images (H, W, 3): out[y, x] = image at the nearest pixel to `matrix` @ (x, y, 1) in centred
    coordinates, or `fill` (one value per channel) where that falls outside (affine/rotate's grid sampling,
    nearest mode, in float32; a coordinate within float32 rounding of a half pixel may pick the other
    neighbour than torch's)."""
    height, width = image.shape[0], image.shape[1]
    half_w, half_h = np.float32(0.5 * width), np.float32(0.5 * height)
    # torchvision divides the matrix by (w / 2, h / 2) into grid_sample's [-1, 1] units, then back
    m = matrix.astype(np.float32)
    r00, r01, r02 = m[0] / half_w, m[1] / half_w, m[2] / half_w
    r10, r11, r12 = m[3] / half_h, m[4] / half_h, m[5] / half_h
    source, target = image.reshape(-1), out.reshape(-1)
    x_high, y_high, half = np.float32(width), np.float32(height), np.float32(0.5)
    starts = np.empty(width, np.int32)  # per output pixel of a row: its source's first byte, or -1 (fill)
    for h in range(height):
        y = np.float32(h) - half_h + half
        y01, y11 = y * r01, y * r11
        for w in range(width):  # coordinates first (a loop the compiler vectorises), then the gather
            x = np.float32(w) - half_w + half
            # round half to even (grid_sample's nearbyint): adding and removing 1.5 * 2**23 in float32
            sx = (((x * r00 + y01 + r02) + _F1) * half_w - half + _ROUNDER) - _ROUNDER
            sy = (((x * r10 + y11 + r12) + _F1) * half_h - half + _ROUNDER) - _ROUNDER
            inside = sx >= 0 and sx < x_high and sy >= 0 and sy < y_high
            starts[w] = (np.int32(sy) * np.int32(width) + np.int32(sx)) * np.int32(3) if inside else np.int32(-1)
        k = h * width * 3
        for w in range(width):
            start = starts[w]
            if start >= 0:
                u = np.uint32(start)
                target[k], target[k + 1], target[k + 2] = source[u], source[u + 1], source[u + 2]
            else:
                target[k], target[k + 1], target[k + 2] = fill[0], fill[1], fill[2]
            k += 3


@numba.njit(nogil=True, cache=True)
def translate_image(image, out, shift_x, shift_y, fill):
    """out[y, x] = image[y - shift_y, x - shift_x], or `fill` (one value per channel) outside: whole-pixel
    translation, which is what `affine_nearest` gives for a pure translation, by row copies."""
    height, width, channels = image.shape
    for h in range(height):
        source = h - shift_y
        low, high = max(0, shift_x), min(width, width + shift_x)  # output columns with a source pixel
        if source < 0 or source >= height or low >= high:
            low, high = 0, 0
        else:
            target, origin = out[h].reshape(-1), image[source].reshape(-1)
            for k in range(low * channels, high * channels):
                target[k] = origin[k - shift_x * channels]
        for w in range(low):
            for c in range(channels):
                out[h, w, c] = fill[c]
        for w in range(high, width):
            for c in range(channels):
                out[h, w, c] = fill[c]


@numba.njit(nogil=True, cache=True)
def gaussian_kernel(size, sigma):
    """torchvision's float32 1-D Gaussian: exp(-0.5 (x / sigma)^2) at x = -(size-1)/2 .. (size-1)/2, normalised."""
    kernel = np.empty(size, np.float32)
    half = (size - 1) * 0.5
    s = np.float32(sigma)
    for i in range(size):
        x = np.float32(i - half) / s
        kernel[i] = np.exp(np.float32(-0.5) * (x * x))
    total = np.float32(0.0)
    for i in range(size):
        total += kernel[i]
    for i in range(size):
        kernel[i] = kernel[i] / total
    return kernel


@numba.njit(nogil=True, cache=True, inline='always')
def _reflect(i, n):
    """Index i in [-n+1, 2n-2] reflected into [0, n) without repeating the edge (torch's 'reflect')."""
    if i < 0:
        return -i
    if i >= n:
        return 2 * n - 2 - i
    return i


@numba.njit(nogil=True, cache=True)
def blur_image(image, kernel_x, kernel_y, row, rows):
    """Separable Gaussian blur in place with reflect padding, float32 sums rounded half to even
    (gaussian_blur). `row` (float32, (W + len(kernel_x) - 1) * C) and `rows` (float32, (H, W * C)) are
    scratch buffers."""
    height, width, channels = image.shape
    half_x, half_y = kernel_x.shape[0] // 2, kernel_y.shape[0] // 2
    n = width * channels
    for h in range(height):  # horizontal pass into `rows`
        for j in range(width + 2 * half_x):
            source = _reflect(j - half_x, width)
            for c in range(channels):
                row[j * channels + c] = np.float32(image[h, source, c])
        target = rows[h]
        target[:] = 0.0
        for t in range(kernel_x.shape[0]):
            weight, offset = kernel_x[t], t * channels
            for k in range(n):
                target[k] += weight * row[offset + k]
    flat = image.reshape(height, n)
    for h in range(height):  # vertical pass, rounded back into the image
        out = row[:n]
        out[:] = 0.0
        for t in range(kernel_y.shape[0]):
            weight, source = kernel_y[t], rows[_reflect(h + t - half_y, height)]
            for k in range(n):
                out[k] += weight * source[k]
        for k in range(n):
            flat[h, k] = np.uint8(min(max(np.rint(out[k]), _F0), _F255))
