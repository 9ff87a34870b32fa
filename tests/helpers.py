"""Small helpers shared by test modules."""
from ffcv.reader import Reader
from ffcv.writer import DatasetWriter


def write_and_read(path, fields, samples, chunksize=100, **writer_kwargs):
    """Write `samples` with `fields`, reopen the file, and return the Reader."""
    writer_kwargs.setdefault('num_workers', 1)
    DatasetWriter(path, fields, **writer_kwargs).from_indexed_dataset(samples, chunksize=chunksize,
                                                                      progress=False)
    return Reader(path)
