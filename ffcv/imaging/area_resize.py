"""Area-averaging downscale of RGB uint8 images: pixel-identical to OpenCV's INTER_AREA, about 3x faster.

``cv2.resize(image, size, interpolation=cv2.INTER_AREA)`` with a non-integer downscale factor runs a
generic scalar loop (about 1.2 ms of CPU for a 430x425 photo -> 256 px here): two thirds of the writer's work per
JPEG image. OpenCV computes it as two separable passes of float32 weighted sums: first along each
source row (horizontal), then across rows (vertical), rounding half to even at the end.

`area_resize` computes the same products and sums in the same order, so the pixels are identical, but
lays the data out so that both passes are whole-row vector operations, in one of two ways:

* sources of up to BLOCKED_MAX_PIXELS (320x320: the loader's random crops, decoded at a DCT scale that
  keeps them under twice the output size) are transposed as they are (`cv2.transpose` of the three-byte
  pixels), so that the horizontal pass combines whole source columns, and the work goes in blocks of 64
  output columns whose float32 sums stay in cache, a small transpose in the kernel turning each block's
  columns back into rows for the vertical pass (`_resize_blocked`);
* larger sources (the writer's photos) have their colour planes split apart and transposed (`cv2.split`,
  `cv2.transpose` of one-byte planes: half the cost of transposing the pixels); the horizontal pass's sums
  for the whole image are transposed back into rows (SIMD), the vertical pass combines whole rows of each
  plane, and `cv2.merge` interleaves the rounded planes.

Measured on a 2-core AMD EPYC VM (2026-12-01): in a hot loop the whole-plane passes are faster at every
size, but inside the loader, where each crop follows a JPEG decode on the same core and the other core does
the same, the blocked kernel resized the train crops in 120 us against 137 (thread CPU time per crop over
16 epochs); in the writer, the whole-plane passes wrote 350-500 px photos 1.18x faster than the blocked
kernel of issue 17's filing. A call does few Python-level steps (flat scratch arrays, the tables carved
inside the kernels): at the loader's crop sizes each numpy or OpenCV call is about a percent of it.
Scratch buffers are reused between calls (fresh megabyte-sized allocations would cost more in page faults
than the arithmetic). Integer factors, upscaling and anything but (H, W, 3) uint8 go to OpenCV itself,
whose fast paths differ.
Measured (one thread, hot loop, 2026-12-01, AMD): crops of 161-320 px to 160x160 in 152 us (the blocked
kernel of issue 17's filing: 191 us); 350-500 px photos to 256 px in 319 us (that kernel: 542 us).

Enlarging stays with OpenCV although it is a third of the val pipeline's time (center crops of 157-224 px to
224: ~170-280 us of the ~850 us per image on one thread; decoding is most of the rest). Its arithmetic is easy to
reproduce exactly (OpenCV 5.0: per axis s = floor(d * scale), weights round(2048 * (1 - fx)) and
round(2048 * fx), int32 horizontal sums, vertical ``((((h0 >> 4) * b0) >> 16) + (((h1 >> 4) * b1) >> 16) + 2)
>> 2``), but every numba layout tried was slower on this 2-core machine (2026-12-01), because the horizontal
pass gathers pixels along the row: done per pixel, 563 us per image; done as row selection between two
transposes (uint8 in, int16 sums back), 230-280 us per image against OpenCV's 180-280, the extra passes
over memory costing more than the vector arithmetic saves (copying 287 KB that sits in L2 takes 14 us here).
"""
from __future__ import annotations

import math
import threading
from typing import Optional

import cv2
import numba
import numpy as np

_DBL_EPSILON = 2.220446049250313e-16
_scratch_buffers = threading.local()
_warm = False
_SCRATCH_LIMIT = 1 << 23     # elements kept per scratch buffer and thread (32 MiB as float32)
_BLOCK = 64                  # output columns per block of `_resize_blocked`
BLOCKED_MAX_PIXELS = 320 * 320  # sources up to this size take `_resize_blocked` (the loader's crops), larger ones
                                # the whole-plane passes (the writer's photos): see the module docstring


@numba.njit(nogil=True, cache=True)
def _area_table(src_size, dst_size, scale, dst_index, src_index, weight):
    """Entries (destination index, source index, weight) of one axis, in OpenCV's order.

    Destination cell d covers source [d * scale, (d + 1) * scale): a partial first pixel, whole
    pixels, a partial last one; each weight is the covered length over the cell width, as float32.
    Written into `dst_index`, `src_index` (int32) and `weight` (float32), each of at least 2 * src_size + 2
    entries; returns the filled part of each. The kernels allocate nothing (see
    `ffcv.pipeline.seeding.fill_seeds`): their scratch comes from the caller (`_scratch`).
    """
    k = 0
    for d in range(dst_size):
        start = d * scale
        end = start + scale
        cell = min(scale, src_size - start)
        last = min(int(math.floor(end)), src_size - 1)
        first = min(int(math.ceil(start)), last)
        if first - start > 1e-3:
            dst_index[k], src_index[k] = d, first - 1
            weight[k] = np.float32((first - start) / cell)
            k += 1
        for s in range(first, last):
            dst_index[k], src_index[k] = d, s
            weight[k] = np.float32(1.0 / cell)
            k += 1
        if end - last > 1e-3:
            dst_index[k], src_index[k] = d, last
            weight[k] = np.float32(min(min(end - last, 1.0), cell) / cell)
            k += 1
    return dst_index[:k], src_index[:k], weight[:k]


@numba.njit(nogil=True, cache=True, inline='always')
def _table(src_size, dst_size, scale, ints, floats):
    """`_area_table` in room taken from the start of `ints` and `floats` (2 * n and n entries, n = 2 * src_size
    + 2); returns the table and what is left of each scratch array."""
    n = 2 * src_size + 2
    table = _area_table(src_size, dst_size, scale, ints[:n], ints[n:2 * n], floats[:n])
    return table, ints[2 * n:], floats[n:]


def _table_room(*src_sizes: int) -> tuple:
    """(ints, floats): the scratch `_table` needs for one table per axis of these sizes."""
    n = sum(2 * size + 2 for size in src_sizes)
    return 2 * n, n


@numba.njit(nogil=True, cache=True)
def _horizontal_pass(columns, src_width, averaged, scale_x, ints, floats):
    """averaged[d] = the weighted sum of the source columns that output column d covers.

    `columns` is the (W, 3 * H) uint8 image, flat: source column x as ``[red of rows 0..H-1, green ...,
    blue ...]``; `averaged` is (out_width, 3 * H) float32, written whole. The sums are OpenCV's horizontal
    ones, term by term in the same order (`_weighted_sum`), as whole-column vector operations. `ints`,
    `floats`: scratch for the table (`_table_room`).
    """
    (x_dst, x_src, x_weight), ints, floats = _table(src_width, averaged.shape[0], scale_x, ints, floats)
    k = 0
    while k < x_dst.shape[0]:
        k = _weighted_sum(columns, averaged.shape[1], x_dst, x_src, x_weight, k, averaged[x_dst[k]])


@numba.njit(nogil=True, cache=True)
def _vertical_pass(rows, src_height, out_planes, scale_y, ints, floats):
    """out_planes[c, r] = the weighted sum of the rows of plane c that output row r covers, rounded to uint8.

    `rows` is the (3, H, out_width) float32 horizontal sums (one plane per colour), flat; `out_planes`
    (3, out_height, out_width) uint8. OpenCV's vertical sums, term by term in the same order. `ints`,
    `floats`: scratch for the table (`_table_room`) and out_width floats more.
    """
    out_width = out_planes.shape[2]
    (y_dst, y_src, y_weight), ints, floats = _table(src_height, out_planes.shape[1], scale_y, ints, floats)
    total = floats[:out_width]
    plane_size = src_height * out_width
    for c in range(3):
        plane = rows[c * plane_size:(c + 1) * plane_size]
        e = 0
        while e < y_dst.shape[0]:
            row = y_dst[e]
            e = _weighted_sum(plane, out_width, y_dst, y_src, y_weight, e, total)
            _store_rounded(total, out_planes[c, row])


@numba.njit(nogil=True, cache=True)
def _resize_blocked(columns, src_width, src_height, flat_out, scale_x, scale_y, block, ints, floats):
    """flat_out ((out_height, 3 * out_width) uint8) = the INTER_AREA resize of the image whose columns are
    `columns` ((W, 3 * H) uint8, flat: source column x as its H pixels' interleaved RGB), a block of output
    columns at a time so that the float32 intermediates stay in cache: the horizontal pass sums whole source
    columns into `averaged` (block x 3H), a small transpose turns the block into `rows` (H x 3 * block), and
    the vertical pass sums those rows into the block of the output. `ints` and `floats`: scratch
    (`_blocked_room`). OpenCV's sums, term for term in the same order.
    """
    out_width = flat_out.shape[1] // 3
    column_length = 3 * src_height
    (x_dst, x_src, x_w), ints, floats = _table(src_width, out_width, scale_x, ints, floats)
    (y_dst, y_src, y_w), ints, floats = _table(src_height, flat_out.shape[0], scale_y, ints, floats)
    averaged = floats[:block * column_length]
    rows = floats[block * column_length:block * column_length + src_height * 3 * block]
    total = floats[block * column_length + src_height * 3 * block:]
    k = 0
    for first in range(0, out_width, block):
        count = min(block, out_width - first)
        length = 3 * count
        while k < x_dst.shape[0] and x_dst[k] < first + count:
            j = x_dst[k] - first
            k = _weighted_sum(columns, column_length, x_dst, x_src, x_w, k,
                              averaged[j * column_length:(j + 1) * column_length])
        for y in range(src_height):  # (count, H, 3) -> (H, count * 3)
            row = rows[y * 3 * block:]
            for j in range(count):
                column = averaged[j * column_length + 3 * y:]
                row[3 * j] = column[0]
                row[3 * j + 1] = column[1]
                row[3 * j + 2] = column[2]
        e = 0
        while e < y_dst.shape[0]:
            row = y_dst[e]
            e = _weighted_sum(rows, 3 * block, y_dst, y_src, y_w, e, total[:length])
            _store_rounded(total[:length], flat_out[row, 3 * first:3 * first + length])


def _blocked_room(src_width: int, src_height: int, block: int) -> tuple:
    """(ints, floats): the scratch `_resize_blocked` needs."""
    ints, floats = _table_room(src_width, src_height)
    return ints, floats + block * 3 * src_height + src_height * 3 * block + 3 * block


@numba.njit(nogil=True, cache=True, inline='always')
def _weighted_sum(sources, stride, dst_index, src_index, weight, k, target):
    """target = the weighted sum of the table's entries for destination dst_index[k] (consecutive from k),
    in float32, term by term in table order as OpenCV sums them; returns the index after those entries.

    `sources` holds the rows the entries name, flat, row s from ``s * stride`` (uint8 columns or float32
    rows; only target's length is read). The first two terms go in one pass over target (OpenCV starts from
    0 or from the first product: both give exactly the first product), the rest are added one pass each.
    """
    end = k + 1
    while end < dst_index.shape[0] and dst_index[end] == dst_index[k]:
        end += 1
    length = target.shape[0]
    source, alpha = sources[src_index[k] * stride:], weight[k]
    if end - k >= 2:
        second, beta = sources[src_index[k + 1] * stride:], weight[k + 1]
        for i in range(length):
            target[i] = np.float32(source[i]) * alpha + np.float32(second[i]) * beta
        k += 2
    else:
        for i in range(length):
            target[i] = np.float32(source[i]) * alpha
        k += 1
    while k < end:
        source, alpha = sources[src_index[k] * stride:], weight[k]
        for i in range(length):
            target[i] = target[i] + np.float32(source[i]) * alpha
        k += 1
    return k


@numba.njit(nogil=True, cache=True)
def _store_rounded(values, out):
    """OpenCV's saturate_cast<uchar>(float): round half to even, clamp to [0, 255]."""
    for i in range(values.shape[0]):
        out[i] = np.uint8(min(max(np.rint(values[i]), np.float32(0)), np.float32(255)))


def _scratch(name: str, size: int, dtype) -> np.ndarray:
    """A reusable per-thread flat array of `size` elements (contents undefined), grown as needed."""
    if size > _SCRATCH_LIMIT:  # a huge image: do not keep that much memory around
        return np.empty(size, dtype)
    buffer = getattr(_scratch_buffers, name, None)
    if buffer is None or buffer.size < size:
        buffer = np.empty(max(size, 1 << 16), dtype)
        setattr(_scratch_buffers, name, buffer)
    return buffer[:size]


def area_resize(image: np.ndarray, width: int, height: int, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Same pixels as ``cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)``, written into `out`
    (a C-contiguous uint8 (height, width, 3) array) when given."""
    src_height, src_width = image.shape[:2]
    scale_x = 1.0 / (width / src_width)    # as OpenCV: 1 / inv_scale, in double precision
    scale_y = 1.0 / (height / src_height)
    if (image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or scale_x < 1 or scale_y < 1
            or (abs(scale_x - round(scale_x)) < _DBL_EPSILON and abs(scale_y - round(scale_y)) < _DBL_EPSILON)):
        return cv2.resize(image, (width, height), dst=out, interpolation=cv2.INTER_AREA)
    if out is None:
        out = np.empty((height, width, 3), np.uint8)
    if src_width * src_height <= BLOCKED_MAX_PIXELS:
        # Columns become rows, (W, H, 3): both passes then run over contiguous memory, a block at a time.
        # (Few Python-level steps: at the loader's crop sizes each costs a percent of the call.)
        columns = _scratch('columns', src_width * src_height * 3, np.uint8)
        cv2.transpose(image, dst=columns.reshape(src_width, src_height, 3))
        block = min(_BLOCK, width)
        ints, floats = _blocked_room(src_width, src_height, block)
        _resize_blocked(columns, src_width, src_height, out.reshape(height, 3 * width), scale_x, scale_y, block,
                        _scratch('ints', ints, np.int32), _scratch('floats', floats, np.float32))
        return out
    # Columns become rows, (W, 3 * H) as (W, 3, H): the horizontal pass combines whole rows of it.
    size = src_width * src_height
    planes = _scratch('planes', 3 * size, np.uint8).reshape(3, src_height, src_width)
    columns = _scratch('columns', 3 * size, np.uint8)
    cv2.split(image, [planes[0], planes[1], planes[2]])
    cv2.transpose(planes.reshape(3 * src_height, src_width), dst=columns.reshape(src_width, 3 * src_height))
    averaged = _scratch('averaged', width * 3 * src_height, np.float32).reshape(width, 3 * src_height)
    ints, floats = _table_room(max(src_width, src_height))
    ints, floats = _scratch('ints', ints, np.int32), _scratch('floats', floats + width, np.float32)
    _horizontal_pass(columns, src_width, averaged, scale_x, ints, floats)
    # Back to rows, one plane per colour: the vertical pass combines whole rows of each.
    rows = _scratch('rows', 3 * src_height * width, np.float32)
    cv2.transpose(averaged, dst=rows.reshape(3 * src_height, width))
    out_planes = _scratch('out_planes', 3 * height * width, np.uint8).reshape(3, height, width)
    _vertical_pass(rows, src_height, out_planes, scale_y, ints, floats)
    return cv2.merge([out_planes[0], out_planes[1], out_planes[2]], dst=out)


def warm_up() -> None:
    """Compile the kernels (or load them from numba's cache) in this process, once.

    The writer calls it before forking its workers, which then inherit compiled code instead of each
    spending about half a second of CPU on it at every `from_indexed_dataset` call.
    """
    global _warm
    if not _warm:
        area_resize(np.zeros((3, 5, 3), np.uint8), 2, 2)  # factors 2.5 and 1.5: the blocked kernel
        area_resize(np.zeros((330, 330, 3), np.uint8), 200, 200)  # the whole-plane kernels
        _warm = True


def resize_area_into(image: np.ndarray, out: np.ndarray) -> None:
    """``out[:] = cv2.resize(image, out size, interpolation=cv2.INTER_AREA)``, the same pixels, faster.

    OpenCV's INTER_AREA is slow (a generic, unvectorised loop) when it shrinks by a non-integer factor,
    which is most random crops; `area_resize` computes the same result about twice as fast there.
    """
    out_h, out_w = out.shape[:2]
    if not out.flags.c_contiguous:  # OpenCV and the kernel write C-contiguous images only
        out[...] = area_resize(image, out_w, out_h)
    elif image.shape[0] > out_h and image.shape[1] > out_w:
        area_resize(image, out_w, out_h, out)
    else:  # enlarging (or same size): OpenCV's own fast path
        cv2.resize(image, (out_w, out_h), dst=out, interpolation=cv2.INTER_AREA)
