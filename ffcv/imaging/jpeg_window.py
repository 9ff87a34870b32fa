"""Decode only a window of a JPEG: libjpeg-turbo's `jpeg_crop_scanline` / `jpeg_skip_scanlines`.

A random or center crop needs part of the image; decoding the rest costs IDCT, upsampling and colour
conversion for nothing. simplejpeg cannot decode a window, but the libjpeg-turbo bundled with the Pillow
wheel exports the libjpeg API that can. That API reports errors by calling `error_exit`, which must not
return (the default one ends the process), so the calls run under a small trampoline compiled here with
llvmlite (numba's own compiler, no C compiler needed):

    status = protected_call(body, params, cinfo)     # _setjmp, then body(params, cinfo)
    error_exit(cinfo) / emit_message(cinfo, -1)      # longjmp back: status 1 (error) / 2 (warning)

`body` is a numba `cfunc` making the libjpeg calls (`ffcv.imaging.jpeg_window_calls`); it holds no Python
objects and allocates nothing, so jumping out of it leaks nothing. Corrupt data (libjpeg's warnings
included, as simplejpeg's strict mode does) becomes `jpeg.JPEGDecodeError`. Everything is checked once,
at first use, on a generated JPEG (struct layout, pixels identical to simplejpeg's); if anything is off,
or the platform is not Linux x86-64 / aarch64, or `FFCV_REGION_DECODE=0`, `available()` is False and
callers decode whole images.

Decoding settings as `jpeg.decode_jpeg`'s defaults: RGB, fast integer IDCT, smooth chroma upsampling,
optional DCT-domain scaling by M/8.
"""
from __future__ import annotations

import ctypes
import glob
import os
import platform
import threading
import weakref
from typing import Optional, Tuple

import numpy as np

from . import jpeg
from .libjpeg import (CALLED, EMIT_MESSAGE, ERROR_EXIT, FORMAT_MESSAGE, MSG_PARM, NOT_RGB, OK, OUT_OF_BOUNDS, PARAMS,
                      P_CINFO, P_CROP_W, P_DATA, P_FOUND_H, P_FOUND_W, P_SELF, P_STATUS, P_STRUCT_SIZE, P_X,
                      SIZE_MISMATCH, STALLED, TOO_SMALL)

_IR = r'''
declare i32 @_setjmp(ptr) returns_twice
declare void @longjmp(ptr, i32) noreturn

define i32 @ffcv_protected_call(ptr %body, ptr %params, ptr %cinfo) noinline {
entry:
  %buffer = alloca [512 x i8], align 16
  %slot = getelementptr i8, ptr %cinfo, i64 24
  store ptr %buffer, ptr %slot
  %jumped = call i32 @_setjmp(ptr %buffer) returns_twice
  %first = icmp eq i32 %jumped, 0
  br i1 %first, label %run, label %failed
run:
  call void %body(ptr %params, ptr %cinfo)
  ret i32 0
failed:
  ret i32 %jumped
}

define void @ffcv_error_exit(ptr %cinfo) noreturn {
entry:
  %slot = getelementptr i8, ptr %cinfo, i64 24
  %buffer = load ptr, ptr %slot
  call void @longjmp(ptr %buffer, i32 1)
  unreachable
}

define void @ffcv_emit_message(ptr %cinfo, i32 %level) {
entry:
  %warning = icmp slt i32 %level, 0
  br i1 %warning, label %fail, label %done
fail:
  %slot = getelementptr i8, ptr %cinfo, i64 24
  %buffer = load ptr, ptr %slot
  call void @longjmp(ptr %buffer, i32 2)
  unreachable
done:
  ret void
}
'''


def _find_libjpeg() -> Optional[str]:
    try:
        import PIL
    except ImportError:
        return None
    site = os.path.dirname(os.path.dirname(PIL.__file__))
    found = sorted(glob.glob(os.path.join(site, 'pillow.libs', 'libjpeg-*.so.62*')))
    return found[0] if found else None


class _Library:
    """libjpeg's functions, the compiled trampoline and the compiled bodies."""

    def __init__(self, path: str):
        lib = ctypes.CDLL(path)
        u64 = ctypes.c_uint64

        def function(name, restype, *argtypes):
            f = getattr(lib, name)
            f.restype, f.argtypes = restype, list(argtypes)
            return f

        self.std_error = function('jpeg_std_error', u64, u64)
        self.abort = function('jpeg_abort_decompress', None, u64)
        self.destroy = function('jpeg_destroy_decompress', None, u64)
        self._engine, self.protected_call, self.error_exit, self.emit_message = _compile_trampoline()
        # the compiled bodies call libjpeg by these names (numba caches them on disk, unlike calls
        # through ctypes objects, whose addresses change with every process)
        import llvmlite.binding as llvm
        for name in CALLED:
            llvm.add_symbol(f'ffcv_{name}', ctypes.cast(getattr(lib, name), ctypes.c_void_p).value)
        from . import jpeg_window_calls as calls
        self.create_body, self.decode_body = calls.create_body, calls.decode_body
        self.struct_size = _probe_struct_size(self)


def _compile_trampoline():
    import llvmlite.binding as llvm
    try:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
    except RuntimeError:  # already initialised by numba
        pass
    libc = ctypes.CDLL(None)
    for name in ('_setjmp', 'longjmp'):
        llvm.add_symbol(name, ctypes.cast(getattr(libc, name), ctypes.c_void_p).value)
    module = llvm.parse_assembly(_IR)
    module.verify()
    target = llvm.Target.from_default_triple().create_target_machine(opt=2)
    engine = llvm.create_mcjit_compiler(module, target)
    engine.finalize_object()
    call = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)(
        engine.get_function_address('ffcv_protected_call'))
    return (engine, call, engine.get_function_address('ffcv_error_exit'),
            engine.get_function_address('ffcv_emit_message'))


def _probe_struct_size(library: _Library) -> int:
    """sizeof(jpeg_decompress_struct) as the library sees it: create with size 0 and read the error."""
    state = _ThreadState(library, create=False)
    state.params[P_CINFO] = state.cinfo.ctypes.data
    state.params[P_STRUCT_SIZE] = 0
    status = state.call(library.create_body)
    library_size = int(state.err.view(np.int32)[MSG_PARM // 4])
    if status != 1 or not 400 <= library_size <= state.cinfo.nbytes:
        raise RuntimeError(f'unexpected libjpeg struct size probe (status {status}, size {library_size})')
    return library_size


class _ThreadState:
    """One decompressor (and its buffers) per thread; destroyed when the thread's reference goes."""

    def __init__(self, library: _Library, create: bool = True):
        self.library = library
        self.cinfo = np.zeros(1024, np.uint8)   # jpeg_decompress_struct (632 bytes for libjpeg-turbo 6.2)
        self.err = np.zeros(512, np.uint8)      # jpeg_error_mgr
        self.params = np.zeros(PARAMS, np.int64)
        self.params[P_SELF] = self.params.ctypes.data
        self.message = ctypes.create_string_buffer(256)
        library.std_error(self.err.ctypes.data)
        pointers = self.err.view(np.uint64)
        pointers[ERROR_EXIT // 8] = library.error_exit
        pointers[EMIT_MESSAGE // 8] = library.emit_message
        self.cinfo.view(np.uint64)[0] = self.err.ctypes.data
        self._decode_call = library.protected_call
        self._decode_args = (library.decode_body.address, self.params.ctypes.data, self.cinfo.ctypes.data)
        if create:
            self.params[P_CINFO] = self.cinfo.ctypes.data
            self.params[P_STRUCT_SIZE] = library.struct_size
            if self.call(library.create_body) != 0:
                raise RuntimeError(f'libjpeg: {self.error_text()}')
            # the finalizer holds the buffers (not self), so they outlive the object until destroyed
            self.finalizer = weakref.finalize(self, _destroy, library, self.cinfo, self.err)

    def call(self, body) -> int:
        return self.library.protected_call(body.address, self.params.ctypes.data, self.cinfo.ctypes.data)

    def decode(self) -> int:
        """`call(decode_body)` with the addresses looked up once (this runs for every image)."""
        return self._decode_call(*self._decode_args)

    def error_text(self) -> str:
        address = int(self.err.view(np.uint64)[FORMAT_MESSAGE // 8])
        format_message = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_char_p)(address)
        format_message(self.cinfo.ctypes.data, self.message)
        return self.message.value.decode('ascii', 'replace')


def _destroy(library: _Library, cinfo: np.ndarray, err: np.ndarray) -> None:
    library.destroy(cinfo.ctypes.data)


def scaled_side(side: int, scale: int) -> int:
    """A side of the image decoded at scale/8 (libjpeg rounds up)."""
    return -(-side * scale // 8)


def choose_scale(height: int, width: int, min_height: int, min_width: int) -> int:
    """The smallest M in 1..8 whose M/8-scaled decode is at least min_height x min_width (8: full size)."""
    for scale in range(1, 8):
        if scaled_side(height, scale) >= min_height and scaled_side(width, scale) >= min_width:
            return scale
    return 8


_library: Optional[_Library] = None
_unavailable_reason: Optional[str] = None
_local = threading.local()


def decode_window(data: np.ndarray, height: int, width: int, window: Tuple[int, int, int, int], scale: int,
                  out: np.ndarray) -> np.ndarray:
    """Pixels [top:top + h, left:left + w] of the JPEG `data` (a height x width image) decoded at scale/8,
    the window given in scaled coordinates; a view into `out` (uint8, large enough for h + 1 rows of the
    window widened to whole iMCUs)."""
    state = getattr(_local, 'state', None)
    if state is None:
        if not available():
            raise RuntimeError(f'window decoding is unavailable: {_unavailable_reason}')
        state = _local.state = _ThreadState(_library)
    top, left, crop_h, crop_w = window
    params = state.params
    params[P_DATA:P_STATUS + 1] = (data.ctypes.data, data.nbytes, scale, top, left, crop_h, crop_w, out.ctypes.data,
                                   out.nbytes, height, width, -1)
    jumped = state.decode()
    if jumped:
        text = state.error_text()
        state.library.abort(state.cinfo.ctypes.data)
        raise jpeg.JPEGDecodeError(f'JPEG decode failed: {text}')
    status = int(params[P_STATUS])
    if status != OK:
        raise jpeg.JPEGDecodeError(_STATUS_TEXT.get(status, f'JPEG decode failed (status {status})').format(
            h=height, w=width, found_h=int(params[P_FOUND_H]), found_w=int(params[P_FOUND_W])))
    stride = int(params[P_CROP_W]) * 3
    x = int(params[P_X])
    rows = out[:crop_h * stride].reshape(crop_h, stride // 3, 3)
    return rows[:, x:x + crop_w]


_STATUS_TEXT = {
    SIZE_MISMATCH: 'JPEG is {found_w}x{found_h} but the metadata says {w}x{h}',
    OUT_OF_BOUNDS: 'crop window outside the decoded image',
    TOO_SMALL: 'output buffer too small for the decoded window',
    STALLED: 'JPEG data ended before the last needed row',
    NOT_RGB: 'JPEG does not decode to 3 channels',
}


def available() -> bool:
    """Whether window decoding works here (loaded and self-tested once)."""
    global _unavailable_reason
    if _library is not None:
        return True
    if _unavailable_reason is not None:
        return False
    with _load_lock:
        if _library is None and _unavailable_reason is None:
            _unavailable_reason = _load()
    return _library is not None


_load_lock = threading.Lock()


def _load() -> Optional[str]:
    global _library
    if os.environ.get('FFCV_REGION_DECODE', '1') == '0':
        return 'disabled by FFCV_REGION_DECODE=0'
    if platform.system() != 'Linux' or platform.machine() not in ('x86_64', 'aarch64'):
        return f'not supported on {platform.system()} {platform.machine()}'
    path = _find_libjpeg()
    if path is None:
        return "Pillow's bundled libjpeg-turbo not found"
    try:
        _library = _Library(path)
        _self_test()
    except Exception as exc:  # any surprise: decode whole images with simplejpeg instead
        _library = None
        return f'self-test failed: {exc}'
    return None


def _self_test() -> None:
    """Window decodes of a generated photo-like JPEG must equal simplejpeg's full decode, cropped."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:75, 0:101]
    image = np.stack([(y * 3 + x) % 256, (x * 2) % 256, (y * 5 + x * x // 7) % 256], -1)
    image = np.clip(image + rng.integers(-20, 20, image.shape), 0, 255).astype(np.uint8)
    data = np.frombuffer(jpeg.encode_jpeg(image, 90), np.uint8)
    out = np.empty(75 * 112 * 3, np.uint8)
    for scale, window in ((8, (0, 0, 75, 101)), (8, (9, 21, 40, 50)), (4, (3, 5, 30, 40)), (2, (0, 0, 19, 26))):
        full = jpeg.decode_jpeg(data, min_height=scaled_side(75, scale), min_width=scaled_side(101, scale))
        top, left, h, w = window
        got = decode_window(data, 75, 101, window, scale, out)
        if full.shape[:2] != (scaled_side(75, scale), scaled_side(101, scale)) or not np.array_equal(
                got, full[top:top + h, left:left + w]):
            raise RuntimeError(f'window {window} at scale {scale}/8 differs from the full decode')
    try:
        decode_window(data[:len(data) // 2], 75, 101, (0, 0, 75, 101), 8, out)
    except jpeg.JPEGDecodeError:
        pass
    else:
        raise RuntimeError('a truncated JPEG was not reported')
