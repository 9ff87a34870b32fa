"""FFCV's helper classes kept for FFCV code compatibility: `MemoryAllocator`, `PageReader`, `Pipeline`,
`BATCHES_TYPE`, each doing its work on real files and batches."""
from __future__ import annotations

import multiprocessing
import time
from queue import Queue
from typing import Sequence

import numba
import numpy as np
import pytest
import torch

from ffcv.memory_allocator import MemoryAllocator
from ffcv.memory_managers.common import BATCHES_TYPE
from ffcv.memory_managers.process_cache.page_reader import PageReader
from ffcv.pipeline.allocation_query import AllocationQuery
from ffcv.pipeline.compiler import Compiler
from ffcv.pipeline.operation import Operation
from ffcv.pipeline.pipeline import BAD_COLLATION_MESSAGE, Pipeline
from ffcv.pipeline.pipeline_spec import PipelineError
from ffcv.pipeline.state import State
from ffcv.transforms import NormalizeImage, RandomHorizontalFlip, ToTensor, ToTorchImage
from helpers import compiled_and_python

HEADER = b'header!' * 14  # 98 bytes: the first page starts at 128


# --- MemoryAllocator ---

def test_allocator_places_samples_in_pages_and_restarts_a_split_sample(tmp_path):
    path = tmp_path / 'data.beton'
    path.write_bytes(HEADER)
    with MemoryAllocator(str(path), len(HEADER), 64) as allocator:
        assert allocator.offset == 128 and allocator.space_left_in_page == 0
        allocator.set_current_sample(0)
        for size, value in ((20, 1), (30, 2)):
            ptr, buffer = allocator.malloc(size)
            buffer[:] = value
        assert allocator.space_left_in_page == 14
        allocator.set_current_sample(1)
        allocator.malloc(10)[1][:] = 3
        with pytest.raises(MemoryError):  # 10 + 10 > 14 bytes left: sample 1 moves to the next page
            allocator.malloc(10)
        for value in (4, 5):
            allocator.malloc(10)[1][:] = value
    assert allocator.allocations == [(0, 128, 20), (0, 148, 30), (1, 192, 10), (1, 202, 10)]
    content = np.frombuffer(path.read_bytes(), np.uint8)
    assert content.size == 128 + 2 * 64 and content[:98].tobytes() == HEADER and not content[98:128].any()
    expected = np.zeros(128, np.uint8)
    expected[0:20], expected[20:50], expected[64:74], expected[74:84] = 1, 2, 4, 5
    np.testing.assert_array_equal(content[128:], expected)  # the withdrawn 3s were never written


def test_allocator_refuses_allocations_larger_than_a_page(tmp_path):
    with MemoryAllocator(str(tmp_path / 'data.beton'), 0, 64) as allocator:
        with pytest.raises(ValueError, match='64'):
            allocator.malloc(65)
        allocator.set_current_sample(0)
        assert allocator.malloc(64)[0] == 0


def _fill_second_page(allocator, go):
    go.wait(60)  # until the parent has booked page 0
    with allocator:
        allocator.set_current_sample(1)
        allocator.malloc(16)[1][:] = 2


def test_allocator_pages_from_several_processes_land_in_booking_order(tmp_path):
    path = tmp_path / 'data.beton'
    path.write_bytes(b'')
    allocator = MemoryAllocator(str(path), 0, 16)
    context = multiprocessing.get_context('fork')  # workers inherit the allocator, as FFCV's writer's do
    go = context.Event()
    child = context.Process(target=_fill_second_page, args=(allocator, go))
    child.start()
    with allocator:
        allocator.set_current_sample(0)
        allocator.malloc(16)[1][:] = 1  # books page 0
        go.set()                        # the child books page 1, and must wait for page 0 to be written
        deadline = time.monotonic() + 60
        while allocator.next_page_allocated.value < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert allocator.next_page_written.value == 0
    child.join(timeout=60)
    assert child.exitcode == 0
    np.testing.assert_array_equal(np.frombuffer(path.read_bytes(), np.uint8), [1] * 16 + [2] * 16)


# --- PageReader ---

def test_page_reader_reads_the_requested_pages_into_slots(tmp_path):
    page_size = 4096
    content = np.random.default_rng(0).integers(0, 256, 3 * page_size + 100, dtype=np.uint8)
    (tmp_path / 'data.beton').write_bytes(content.tobytes())
    memory = np.full((2, page_size), 255, np.uint8)
    queries, loaded = Queue(), Queue()
    reader = PageReader(str(tmp_path / 'data.beton'), queries, loaded, memory)
    assert reader.daemon and reader.page_size == page_size
    reader.start()
    queries.put((2, 0))
    assert loaded.get(timeout=30) == 2
    np.testing.assert_array_equal(memory[0], content[2 * page_size:3 * page_size])
    queries.put((3, 1))  # the last, partial page: the rest of the slot is zeroed
    assert loaded.get(timeout=30) == 3
    np.testing.assert_array_equal(memory[1, :100], content[3 * page_size:])
    assert not memory[1, 100:].any()
    queries.put(None)
    reader.join(timeout=30)
    assert not reader.is_alive()


def test_batches_type_is_ffcvs():
    assert BATCHES_TYPE == Sequence[Sequence[int]]


# --- Pipeline ---

IMAGES = np.random.default_rng(5).integers(0, 256, (10, 6, 5, 3), dtype=np.uint8)
MEAN, STD = np.array([120.0, 110.0, 100.0]), np.array([60.0, 50.0, 70.0])


class FromArray(Operation):
    """A decoder reading images from `IMAGES` (the samples of a test dataset)."""

    def declare_state_and_memory(self, previous_state):
        return State(True, torch.device('cpu'), IMAGES.shape[1:], np.dtype('uint8')), \
            AllocationQuery(IMAGES.shape[1:], np.dtype('uint8'))

    def generate_code(self):
        images = IMAGES

        def decode(indices, destination, metadata, storage_state):
            for i in range(indices.shape[0]):
                destination[i] = images[indices[i]]
            return destination
        return decode


def run_pipeline(pipeline, indices, slot=1):
    """Run every operation on one batch, as a loader would, in the buffers of `allocate_memory`."""
    buffers = pipeline.allocate_memory(batch_size=4, batches_ahead=2)
    result = None
    for index, function in pipeline.compiled_ops.items():
        destination = None if buffers[index] is None else buffers[index][slot][:len(indices)]
        result = function(indices, destination, None, None) if index == 0 else function(result, destination)
    return result, buffers


def test_pipeline_runs_real_transforms_like_numpy():
    operations = [FromArray(), NormalizeImage(MEAN, STD, np.float32), ToTensor(), ToTorchImage()]
    indices = np.array([7, 2, 9], np.int64)

    def run():
        pipeline = Pipeline(operations)
        assert isinstance(pipeline.compiled_ops[0], numba.core.registry.CPUDispatcher) == Compiler.is_enabled
        return pipeline, *run_pipeline(pipeline, indices)

    for pipeline, result, buffers in compiled_and_python(run):
        assert pipeline.operation_blocks == [(True, [0, 1]), (False, [2, 3])]
        assert pipeline.original_state.jit_mode and pipeline.original_state.shape is None
        assert buffers[0].shape == (2, 4, 6, 5, 3) and buffers[1].dtype == np.float32 and buffers[2] is None
        expected = ((IMAGES[indices] - MEAN) / STD).astype(np.float32).transpose(0, 3, 1, 2)  # (B,H,W,C)->(B,C,H,W)
        np.testing.assert_allclose(result.numpy(), expected, rtol=1e-6)


def test_pipeline_names_the_misplaced_step():
    with pytest.raises(PipelineError, match='step 2'):
        Pipeline([FromArray(), ToTensor(), RandomHorizontalFlip()])


def test_bad_collation_message_is_ffcvs():
    assert BAD_COLLATION_MESSAGE == 'Each pipeline needs one and one only Collate operation'
