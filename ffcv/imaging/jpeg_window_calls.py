"""The compiled bodies of `ffcv.imaging.jpeg_window`: libjpeg calls made from numba `cfunc`s.

libjpeg is called by symbol names (`ffcv_jpeg_*`) that `ffcv.imaging.jpeg_window` registers with LLVM before
importing this module, so numba can cache the compiled code on disk and reload it in a new process.
These bodies run under the setjmp trampoline: they hold no Python objects and allocate nothing. They read the
blocks through their pointers (no `numba.carray`, whose implementation would import ``numba.np.arrayobj``
when the cached bodies load: about 50 ms of a process's first batch).
"""
import llvmlite.binding
import numba
from numba import types

from .libjpeg import (DCT_METHOD, FANCY_UPSAMPLING, IMAGE_HEIGHT, IMAGE_WIDTH, JCS_RGB, JDCT_IFAST,
                      JPEG_LIB_VERSION, MAX_ROWS_PER_READ, OUT_COLOR_SPACE, OUTPUT_COMPONENTS,
                      OUTPUT_HEIGHT, OUTPUT_WIDTH, SCALE_DENOM, SCALE_NUM, NOT_RGB, OK,
                      OUT_OF_BOUNDS, P_CAPACITY, P_CINFO, P_CROP_W, P_DATA, P_EXPECT_H, P_EXPECT_W,
                      P_FOUND_H, P_FOUND_W, P_HEIGHT, P_LEFT, P_OUT, P_ROW_POINTERS, P_ROWS, P_SCALE,
                      P_SELF, P_SIZE, P_STATUS, P_STRUCT_SIZE, P_TOP, P_WIDTH, P_X, P_XOFFSET, P_XWIDTH,
                      SIZE_MISMATCH, STALLED, TOO_SMALL)

_u64, _u32, _i32 = types.uint64, types.uint32, types.int32
create = types.ExternalFunction('ffcv_jpeg_CreateDecompress', types.void(_u64, _i32, _u64))
mem_src = types.ExternalFunction('ffcv_jpeg_mem_src', types.void(_u64, _u64, _u64))
read_header = types.ExternalFunction('ffcv_jpeg_read_header', _i32(_u64, _i32))
start = types.ExternalFunction('ffcv_jpeg_start_decompress', _i32(_u64))
crop = types.ExternalFunction('ffcv_jpeg_crop_scanline', types.void(_u64, _u64, _u64))
skip = types.ExternalFunction('ffcv_jpeg_skip_scanlines', _u32(_u64, _u32))
read = types.ExternalFunction('ffcv_jpeg_read_scanlines', _u32(_u64, _u64, _u32))
finish = types.ExternalFunction('ffcv_jpeg_finish_decompress', _i32(_u64))
abort = types.ExternalFunction('ffcv_jpeg_abort_decompress', types.void(_u64))

_BODY_SIGNATURE = types.void(types.CPointer(types.int64), types.CPointer(types.int32))

# The bodies below are compiled (or loaded from numba's cache) at import, and LLVM aborts the whole process
# on a symbol it cannot resolve: refuse to go on unless `jpeg_window` has registered libjpeg's (every
# external function declared above).
_unregistered = [f.symbol for f in list(globals().values())
                 if isinstance(f, types.ExternalFunction) and not llvmlite.binding.address_of_symbol(f.symbol)]
if _unregistered:
    raise ImportError(f'{__name__} is imported by ffcv.imaging.jpeg_window once it has loaded libjpeg (call '
                      f'ffcv.imaging.jpeg_window.available() first); unregistered symbols: {_unregistered}')


@numba.njit(inline='always', cache=True)
def params_pointer_address(params, index):
    return params[P_SELF] + 8 * index


@numba.cfunc(_BODY_SIGNATURE, nopython=True, cache=True)
def create_body(params, fields):
    create(params[P_CINFO], JPEG_LIB_VERSION, params[P_STRUCT_SIZE])


@numba.cfunc(_BODY_SIGNATURE, nopython=True, cache=True)
def decode_body(params, fields):
    """Decode rows [top, top + height) and (at least) columns [left, left + width) of the image scaled
    by scale/8, into out (rows of P_CROP_W * 3 bytes starting at column P_X). `params`: the int64 block
    (`ffcv.imaging.libjpeg`), `fields`: the decompressor struct as int32s."""
    cinfo = params[P_CINFO]
    mem_src(cinfo, params[P_DATA], params[P_SIZE])
    read_header(cinfo, 1)
    params[P_FOUND_H], params[P_FOUND_W] = fields[IMAGE_HEIGHT // 4], fields[IMAGE_WIDTH // 4]
    if params[P_FOUND_H] != params[P_EXPECT_H] or params[P_FOUND_W] != params[P_EXPECT_W]:
        params[P_STATUS] = SIZE_MISMATCH
        abort(cinfo)
        return
    fields[OUT_COLOR_SPACE // 4] = JCS_RGB
    fields[SCALE_NUM // 4] = params[P_SCALE]
    fields[SCALE_DENOM // 4] = 8
    fields[DCT_METHOD // 4] = JDCT_IFAST
    fields[FANCY_UPSAMPLING // 4] = 1
    start(cinfo)
    out_h, out_w = fields[OUTPUT_HEIGHT // 4], fields[OUTPUT_WIDTH // 4]
    top, left, height, width = params[P_TOP], params[P_LEFT], params[P_HEIGHT], params[P_WIDTH]
    if fields[OUTPUT_COMPONENTS // 4] != 3:
        params[P_STATUS] = NOT_RGB
    elif top < 0 or left < 0 or height < 1 or width < 1 or top + height > out_h or left + width > out_w:
        params[P_STATUS] = OUT_OF_BOUNDS
    else:
        # columns: libjpeg widens the window to whole iMCUs (xoffset down, width up); one more column
        # on each side keeps ours off the window's edges, where chroma upsampling lacks its neighbours
        first, last = max(left - 1, 0), min(left + width + 1, out_w)
        params[P_XOFFSET] = first
        params[P_XWIDTH] = last - first
        if last - first < out_w:
            crop(cinfo, params_pointer_address(params, P_XOFFSET), params_pointer_address(params, P_XWIDTH))
        x_offset, x_width = params[P_XOFFSET] & 0xFFFFFFFF, params[P_XWIDTH] & 0xFFFFFFFF
        stride = x_width * 3
        below = out_h - top - height
        if ((height + (below > 0)) * stride > params[P_CAPACITY] or x_offset > left
                or x_offset + x_width < left + width):
            params[P_STATUS] = TOO_SMALL
        else:
            if top > 0:
                skip(cinfo, top)  # whole iMCU rows are entropy-decoded only (corruption still seen)
            done = 0
            while done < height:
                count = min(height - done, MAX_ROWS_PER_READ)
                for k in range(count):
                    params[P_ROW_POINTERS + k] = params[P_OUT] + (done + k) * stride
                got = read(cinfo, params_pointer_address(params, P_ROW_POINTERS), count)
                if got == 0:
                    break
                done += got
            params[P_ROWS] = done
            params[P_X] = left - x_offset
            params[P_CROP_W] = x_width
            params[P_STATUS] = OK if done == height else STALLED
            if done == height:
                # Run through the rest as a full decode would, so that corrupt or truncated data is
                # reported the same way: skip (entropy decoding only) to the last row, read it into the
                # spare row after the window, and let libjpeg check the end of the stream.
                if below > 1:
                    skip(cinfo, below - 1)
                if below > 0:
                    params[P_ROW_POINTERS] = params[P_OUT] + height * stride
                    read(cinfo, params_pointer_address(params, P_ROW_POINTERS), 1)
                finish(cinfo)
                return
    abort(cinfo)  # leaves the object ready for the next image
