"""`ffcv.libffcv`: the C helpers of FFCV 1.0.2's extension, for user code written against FFCV.

FFCV users call ``memcpy``, ``imdecode``, ``resize_crop`` and ``read`` from their own decoders, in compiled
code (``Compiler.compile(imdecode)``, then called from another numba function) and in plain Python
(``FFCV_DISABLE_JIT=1``). FFCV's wrappers call C functions of its extension ``ffcv._libffcv`` through
ctypes; a wheels-only package has no such extension, so the C functions are made here, with FFCV's names
and argument types:

* ``ctypes_imdecode``, ``ctypes_resize``, ``ctypes_memcopy``: C entry points into Python
  (``ctypes.CFUNCTYPE``) that decode with simplejpeg (`ffcv.imaging.jpeg`), resize with OpenCV's
  INTER_AREA pixels (`ffcv.imaging.area_resize`) and copy with ``ctypes.memmove``. A call takes the GIL
  for its bookkeeping; the decode and the resize release it again;
* ``read_c``: libc's ``pread``, as in FFCV.

Being ctypes function pointers, numba calls them from compiled code and Python through ctypes, so
``imdecode``, ``resize_crop`` and ``read`` run the same code in both modes; ``memcpy`` copies with NumPy
byte views instead (native code when compiled, no GIL). ``lib`` holds the pointers under the names of
FFCV's extension (``lib.imdecode``, ``lib.resize``, ``lib.my_memcpy``). The public wrappers check their
arguments (bounds, contiguity) where FFCV's would write past a buffer or crash.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from ctypes import CDLL, c_bool, c_int, c_int64, c_uint32, c_uint64, c_void_p

import cv2
import numba
import numpy as np
from numba.extending import overload


from .imaging.area_resize import area_resize
from .imaging.jpeg import decode_jpeg, jpeg_size
from .utils import cast_int_to_byte_ptr

logger = logging.getLogger(__name__)


def _load_libc() -> CDLL:
    """The C library (for ``pread``)."""
    try:
        return CDLL('libc.so.6' if sys.platform.startswith('linux') else ctypes.util.find_library('c'),
                    use_errno=True)
    except OSError:  # pragma: no cover (musl and other libcs: their symbols are in the process anyway)
        return CDLL(None, use_errno=True)


libc = _load_libc()
# Where FFCV's extension exports its functions; ours are attached below by their C names.
lib = CDLL(None)

read_c = libc.pread
read_c.argtypes = [c_uint32, c_void_p, c_uint64, c_uint64]
read_c.restype = c_int64  # ssize_t (FFCV leaves ctypes' default, a 32-bit int)

_CALLBACKS = []  # the CFUNCTYPE thunks behind the pointers below: they must live as long as the process


def _c_entry_point(name: str, function, restype, argtypes):
    """A ctypes function pointer (the type ``lib.<symbol>`` has) calling the Python `function`."""
    thunk = ctypes.CFUNCTYPE(restype, *argtypes)(function)
    _CALLBACKS.append(thunk)
    pointer = lib._FuncPtr(ctypes.cast(thunk, c_void_p).value)
    pointer.argtypes, pointer.restype = argtypes, restype
    setattr(lib, name, pointer)
    return pointer


def _array_at(address: int, shape) -> np.ndarray:
    """A uint8 array of `shape` over the memory at `address` (no copy)."""
    count = int(np.prod(shape))
    return np.ctypeslib.as_array((ctypes.c_uint8 * count).from_address(address)).reshape(shape)


# --- memcpy ---

def _copy_bytes(source, destination, size):
    """FFCV's ``my_memcpy(source, destination, size)``: copy `size` bytes (source first)."""
    ctypes.memmove(destination, source, size)


ctypes_memcopy = _c_entry_point('my_memcpy', _copy_bytes, None, [c_void_p, c_void_p, c_uint64])


def _bytes_of(array: np.ndarray, count: int) -> np.ndarray:
    """The first `count` bytes of the C-contiguous `array`, as a uint8 view."""
    return array.reshape(-1).view(np.uint8)[:count]


@overload(_bytes_of, jit_options={'nogil': True})
def _bytes_of_compiled(array, count):
    """`_bytes_of` in numba code, for any array layout (numba types slices as 'A' even when contiguous)."""
    def byte_view(array, count):
        return numba.carray(cast_int_to_byte_ptr(array.ctypes.data), count)
    return byte_view


def memcpy(source: np.ndarray, dest: np.ndarray):
    """Copy the bytes of `source` to the start of `dest` (FFCV 1.0.2 API, for FFCV code compatibility).

    Works in plain Python and compiled with numba (``Compiler.compile(memcpy)``, called from numba code).

    Parameters
    ----------
    source : np.ndarray
        C-contiguous array; all of its ``source.size * source.itemsize`` bytes are copied.
    dest : np.ndarray
        C-contiguous array of at least as many bytes (any dtype: the copy is byte for byte).

    Returns
    -------
    None
        (FFCV's returns whatever the C function left in a register.)

    Raises
    ------
    ValueError
        If an array is not C-contiguous or `dest` is too small (FFCV's writes past its end).
    """
    size = source.size * source.itemsize
    if not (source.flags.c_contiguous and dest.flags.c_contiguous):
        raise ValueError('memcpy: source and dest must be C-contiguous arrays')
    if dest.size * dest.itemsize < size:
        raise ValueError('memcpy: dest holds fewer bytes than source')
    _bytes_of(dest, size)[:] = _bytes_of(source, size)


# --- imdecode ---

def _scaled(size: int, num: int, denom: int) -> int:
    """libjpeg-turbo's TJSCALED: `size` scaled by num / denom, rounded up."""
    return (size * num + denom - 1) // denom


def _decode_plan(height, width, crop_height, crop_width, offset_x, offset_y, scale_num, scale_denom, transform):
    """(top, left, window height, window width, eighths): the source window and libjpeg-turbo's scale M/8."""
    top, left, window_h, window_w = 0, 0, height, width
    if transform:  # tjTransform's crop region, in coordinates of the (flipped) image; 0 = up to the edge
        window_w = crop_width or width - offset_x
        window_h = crop_height or height - offset_y
        if offset_x + window_w > width or offset_y + window_h > height or window_w <= 0 or window_h <= 0:
            raise ValueError(f'crop window {window_h}x{window_w} at (x={offset_x}, y={offset_y}) does not fit '
                             f'in the {height}x{width} image')
        top, left = offset_y, offset_x
    # tjDecompress2: the largest scale M/8 (M = 16..1) whose output fits in the requested size (0: the image's)
    target_w = _scaled(crop_width, scale_num, scale_denom) or window_w
    target_h = _scaled(crop_height, scale_num, scale_denom) or window_h
    for eighths in range(16, 0, -1):
        if _scaled(window_w, eighths, 8) <= target_w and _scaled(window_h, eighths, 8) <= target_h:
            return top, left, window_h, window_w, eighths
    raise ValueError(f'cannot scale a {window_h}x{window_w} image down to {target_h}x{target_w}')


def _decode(input_p, input_size, output_p, capacity, crop_height, crop_width, offset_x, offset_y,
            scale_num, scale_denom, enable_crop, hflip) -> int:
    """The body of ``ctypes_imdecode``: 0 on success, -1 on failure (logged), as tjDecompress2."""
    try:
        if not input_p or not output_p:
            raise ValueError('null buffer')
        data = _array_at(input_p, (input_size,))
        height, width = jpeg_size(data)
        transform = enable_crop or hflip
        top, left, window_h, window_w, eighths = _decode_plan(height, width, crop_height, crop_width, offset_x,
                                                              offset_y, scale_num, scale_denom, transform)
        out_h, out_w = _scaled(window_h, eighths, 8), _scaled(window_w, eighths, 8)
        if out_h * out_w * 3 > capacity:
            raise ValueError(f'the {out_h}x{out_w}x3 image does not fit in dst ({capacity} bytes)')
        out = _array_at(output_p, (out_h, out_w, 3))
        decoded = min(eighths, 8)  # simplejpeg scales down only; larger scales are resized after
        minimum = (_scaled(height, decoded, 8), _scaled(width, decoded, 8)) if decoded < 8 else (0, 0)
        if not transform and eighths <= 8:
            image = decode_jpeg(data, out=out, min_height=minimum[0], min_width=minimum[1])
            if image.shape != out.shape:
                raise ValueError(f'decoded {image.shape}, expected {out.shape}')
            return 0
        image = decode_jpeg(data, min_height=minimum[0], min_width=minimum[1])
        if hflip:  # the window is given in the flipped image
            image = image[:, ::-1]
        row, column = top * decoded // 8, left * decoded // 8
        window = image[row:row + _scaled(window_h, decoded, 8), column:column + _scaled(window_w, decoded, 8)]
        if eighths > 8:
            window = cv2.resize(window, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        out[...] = window
        return 0
    except Exception as exc:  # an exception cannot cross the C boundary: report it and return the C status
        logger.warning('imdecode failed: %s: %s', type(exc).__name__, exc)
        return -1


def _decode_unchecked(input_p, input_size, source_height, source_width, output_p, crop_height, crop_width,
                      offset_x, offset_y, scale_num, scale_denom, enable_crop, hflip):
    return _decode(input_p, input_size, output_p, 1 << 62, crop_height, crop_width, offset_x, offset_y,
                   scale_num, scale_denom, enable_crop, hflip)


ctypes_imdecode = _c_entry_point('imdecode', _decode_unchecked, c_int, [
    c_void_p, c_uint64, c_uint32, c_uint32, c_void_p, c_uint32, c_uint32,
    c_uint32, c_uint32, c_uint32, c_uint32, c_bool, c_bool])
# The same with the destination's size, so that `imdecode` never writes past `dst`.
_ctypes_imdecode_checked = _c_entry_point('_ffcv_imdecode_checked', _decode, c_int, [
    c_void_p, c_uint64, c_void_p, c_uint64, c_uint32, c_uint32,
    c_uint32, c_uint32, c_uint32, c_uint32, c_bool, c_bool])


def imdecode(source: np.ndarray, dst: np.ndarray,
             source_height: int, source_width: int,
             crop_height=None, crop_width=None,
             offset_x=0, offset_y=0, scale_factor_num=1, scale_factor_denom=1,
             enable_crop=False, do_flip=False):
    """Decode the JPEG bytes `source` into `dst` as RGB uint8 (FFCV 1.0.2 API, for FFCV code compatibility).

    Works in plain Python and compiled with numba (``Compiler.compile(imdecode)``, called from numba code).
    FFCV's semantics (libjpeg-turbo's ``tjTransform`` then ``tjDecompress2``, fast integer IDCT):

    * when `enable_crop` or `do_flip` is set, the image is first flipped left-right (`do_flip`) and cut to
      the window of `crop_width` x `crop_height` pixels at (`offset_x`, `offset_y`) (0: up to the edge);
    * the result is decoded at the largest scale M/8 (M = 1..16) whose size fits in
      ceil(crop * scale_factor_num / scale_factor_denom) (crop 0 or None: the image's size);
    * the pixels go to the first rows * cols * 3 bytes of `dst`, rows packed.

    Differences from FFCV's: the window need not start on a JPEG block (MCU) boundary, where FFCV's fails;
    the flip mirrors every column (libjpeg-turbo's lossless flip can leave a partial block column at the
    edge); scales above 1 are decoded at 1 then resized (bilinear): same size as FFCV's, other pixels;
    None for `crop_height` / `crop_width` means 0 (FFCV's fails on None); a too small `dst` is an error.

    Parameters
    ----------
    source : np.ndarray
        uint8 array of JPEG bytes (C-contiguous).
    dst : np.ndarray
        C-contiguous uint8 destination, e.g. (H, W, 3) for the decoded size.
    source_height, source_width : int
        Not used: the size is read from the JPEG header (as FFCV's C code does).
    crop_height, crop_width : int or None
        Window size, and the reference size for scaling.
    offset_x, offset_y : int
        Left and top of the window (in the flipped image when `do_flip`).
    scale_factor_num, scale_factor_denom : int
        Requested scale of the window.
    enable_crop, do_flip : bool
        Apply the window; flip left-right.

    Returns
    -------
    int
        0 on success, -1 on failure (the reason is logged at WARNING level), as FFCV's.
    """
    height = 0 if crop_height is None else crop_height
    width = 0 if crop_width is None else crop_width
    if not (source.flags.c_contiguous and dst.flags.c_contiguous):
        raise ValueError('imdecode: source and dst must be C-contiguous arrays')
    return _ctypes_imdecode_checked(source.ctypes.data, source.size * source.itemsize,
                                    dst.ctypes.data, dst.size * dst.itemsize, height, width,
                                    offset_x, offset_y, scale_factor_num, scale_factor_denom, enable_crop, do_flip)


# --- resize ---

def _resize(resizer, source_p, source_rows, source_cols, start_row, end_row, start_col, end_col,
            dest_p, dest_rows, dest_cols):
    """The body of ``ctypes_resize``: INTER_AREA resize of a window of one (H, W, 3) uint8 image."""
    try:
        source = _array_at(source_p, (source_rows, source_cols, 3))
        destination = _array_at(dest_p, (dest_rows, dest_cols, 3))
        destination[...] = area_resize(source[start_row:end_row, start_col:end_col], int(dest_cols), int(dest_rows))
    except Exception as exc:  # an exception cannot cross the C boundary
        logger.warning('resize_crop failed: %s: %s', type(exc).__name__, exc)


ctypes_resize = _c_entry_point('resize', _resize, None, 11 * [c_int64])


def resize_crop(source, start_row, end_row, start_col, end_col, destination):
    """Resize ``source[start_row:end_row, start_col:end_col]`` into `destination` (FFCV 1.0.2 API, for FFCV
    code compatibility).

    Works in plain Python and compiled with numba. Same pixels as FFCV's (OpenCV's ``cv::resize`` with
    ``INTER_AREA`` from the window to the destination's size), computed by `ffcv.imaging.area_resize`.

    Parameters
    ----------
    source : np.ndarray
        (H, W, 3) uint8, C-contiguous.
    start_row, end_row, start_col, end_col : int
        The window, rows and columns, end excluded.
    destination : np.ndarray
        (h, w, 3) uint8, C-contiguous; receives the resized window.

    Raises
    ------
    ValueError
        If the window is empty or leaves the image, or an array is not C-contiguous (FFCV's crashes).
    """
    if not (0 <= start_row < end_row <= source.shape[0] and 0 <= start_col < end_col <= source.shape[1]):
        raise ValueError('resize_crop: the window is empty or leaves the source image')
    if not (source.flags.c_contiguous and destination.flags.c_contiguous):
        raise ValueError('resize_crop: source and destination must be C-contiguous arrays')
    if destination.shape[0] < 1 or destination.shape[1] < 1:
        raise ValueError('resize_crop: empty destination')
    ctypes_resize(0, source.ctypes.data, source.shape[0], source.shape[1], start_row, end_row, start_col, end_col,
                  destination.ctypes.data, destination.shape[0], destination.shape[1])


# --- read ---

def read(fileno: int, destination: np.ndarray, offset: int):
    """Read bytes of an open file at `offset` into `destination` with ``pread`` (FFCV 1.0.2 API, for FFCV code
    compatibility).

    Works in plain Python (the GIL is released during the read) and compiled with numba.

    Parameters
    ----------
    fileno : int
        File descriptor, e.g. ``handle.fileno()``.
    destination : np.ndarray
        C-contiguous array; up to its size in bytes are read (FFCV's reads ``destination.size`` bytes, the
        same for uint8).
    offset : int
        Position in the file.

    Returns
    -------
    int
        Bytes read (fewer near the end of the file), or -1 on error, as ``pread`` (in Python,
        ``ctypes.get_errno()`` then tells the error).
    """
    if not destination.flags.c_contiguous:
        raise ValueError('read: destination must be a C-contiguous array')
    return read_c(fileno, destination.ctypes.data, destination.size * destination.itemsize, offset)
