"""Writer regressions found by the FFCV 1.0.2 cross-check and the writer benchmark."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np

from ffcv.fields import BytesField, JSONField
from ffcv.reader import Reader
from ffcv.writer import DatasetWriter


def test_empty_blobs_never_share_an_offset(tmp_beton):
    """FFCV 1.0.2 looks a blob's size up by its offset: an empty blob at the same offset as the next
    allocation made it read 0 bytes of the JSON after it. Every allocation now has its own offset."""
    samples = [(b'', {'a': 1}), (b'xyz', {}), (b'', {'unicode': 'ü🙂'}), (b'', [])]
    path = tmp_beton()
    DatasetWriter(path, {'blob': BytesField(), 'meta': JSONField()}, num_workers=1).from_indexed_dataset(
        samples, progress=False)
    reader = Reader(path)
    ptrs = reader.alloc_table['ptr']
    assert len(np.unique(ptrs)) == len(ptrs)
    for i, (blob, meta) in enumerate(samples):
        sample = reader.read_sample(i)
        assert sample['blob'].tobytes() == blob
        assert sample['meta'] == meta


def test_forked_workers_do_not_hang_after_opencv_ran_in_the_parent(tmp_path):
    """cv2.setNumThreads in a forked child hung forever once the parent had used OpenCV's thread pool."""
    script = textwrap.dedent(f'''
        import cv2, numpy as np
        from ffcv.fields import IntField, RGBImageField
        from ffcv.writer import DatasetWriter
        cv2.setNumThreads(2)
        big = np.random.default_rng(0).integers(0, 256, (2000, 2000, 3), dtype=np.uint8)
        for _ in range(3):
            cv2.resize(big, (700, 650), interpolation=cv2.INTER_AREA)   # the parent's pool now exists
        images = [big[:400, :300].copy() for _ in range(40)]
        samples = [(image, i) for i, image in enumerate(images)]
        fields = {{'image': RGBImageField(write_mode='jpg', max_resolution=128), 'label': IntField()}}
        DatasetWriter({os.fspath(tmp_path / 'out.beton')!r}, fields, num_workers=2).from_indexed_dataset(
            samples, chunksize=5, progress=False)
        assert cv2.getNumThreads() == 2
        print('ok')
    ''')
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and 'ok' in result.stdout, result.stderr[-2000:]
