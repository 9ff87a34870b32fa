"""Small shared helpers (FFCV's `ffcv.utils` names, plus `available_cpus`)."""
from __future__ import annotations

import os
import threading

import numpy as np
from numba import types
from numba.extending import intrinsic


def available_cpus() -> int:
    """CPUs this process may run on (the affinity mask, which SLURM and containers restrict)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def chunks(lst, n: int):
    """Consecutive slices of `lst` of length `n` (the last may be shorter)."""
    for start in range(0, len(lst), n):
        yield lst[start:start + n]


def is_power_of_2(n: int) -> bool:
    return n > 0 and (n & (n - 1)) == 0


def align_to_page(ptr: int, page_size: int) -> int:
    """Smallest multiple of `page_size` that is >= ptr."""
    return -(-ptr // page_size) * page_size


def decode_null_terminated_string(bytes: np.ndarray) -> str:
    """ASCII text stored NUL-padded in a uint8 array (field names in a `.beton` header)."""
    return np.asarray(bytes, dtype=np.uint8).tobytes().split(b'\0', 1)[0].decode('ascii', errors='replace')


@intrinsic
def cast_int_to_byte_ptr(typingctx, src):
    """In numba code: the integer address `src` as a ``uint8*`` (for calling C functions on raw memory)."""
    if not isinstance(src, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))
    return types.CPointer(types.uint8)(types.uintp), codegen


s_print_lock = threading.Lock()


def s_print(*a, **b) -> None:
    """`print` that does not interleave with other threads' `s_print` lines."""
    with s_print_lock:
        print(*a, **b)
