"""Image folders and in-memory arrays as indexed datasets (used by ``ffcv convert`` and the dataset writers).

Each returns ``(image, label)`` tuples, the shape `DatasetWriter` expects for the fields
``{'image': RGBImageField(...), 'label': IntField()}``.
"""
from __future__ import annotations

import os
from typing import List, Optional, Sequence, Tuple

import numpy as np

__all__ = ['ImageFolderDataset', 'ArrayDataset', 'IMAGE_EXTENSIONS']

# Lower-case suffixes of the files `ImageFolderDataset` picks up (matched case-insensitively).
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')


class ImageFolderDataset:
    """Images in torchvision's ImageFolder layout: ``root/<class name>/**/<image file>``.

    Class names are the sub-folders of `root`, sorted; the label of an image is the index of its class
    in that order. Files are found recursively inside each class folder and sorted by path, so the
    order of samples depends only on the names on disk. Files directly in `root` are ignored.

    Images are opened with Pillow and converted to RGB in ``__getitem__``, so `DatasetWriter`'s worker
    processes do the decoding.

    Parameters
    ----------
    root : str
        The folder holding one sub-folder per class.
    extensions : sequence of str
        File suffixes to include (case-insensitive), default `IMAGE_EXTENSIONS`.

    Attributes
    ----------
    classes : list of str
        Class names, sorted; ``classes[label]`` is the name of a label.
    class_to_idx : dict of str -> int
    samples : list of (path, label)

    Raises
    ------
    FileNotFoundError
        `root` does not exist or is not a folder.
    ValueError
        `root` has no class folders, or they hold no image files.

    Examples
    --------
    >>> dataset = ImageFolderDataset('/data/imagenet/train')
    >>> image, label = dataset[0]  # a PIL.Image in RGB mode and an int
    """

    def __init__(self, root: str, extensions: Sequence[str] = IMAGE_EXTENSIONS):
        self.root = os.fspath(root)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(f'{self.root}: no such folder')
        suffixes = tuple(e.lower() if e.startswith('.') else '.' + e.lower() for e in extensions)
        self.classes: List[str] = sorted(entry.name for entry in os.scandir(self.root)
                                         if entry.is_dir() and not entry.name.startswith('.'))
        if not self.classes:
            raise ValueError(f'{self.root}: no class sub-folders (expected root/<class>/<image>)')
        self.class_to_idx = {name: index for index, name in enumerate(self.classes)}
        self.samples: List[Tuple[str, int]] = []
        for name in self.classes:
            paths = []
            for folder, subfolders, files in os.walk(os.path.join(self.root, name), followlinks=True):
                subfolders[:] = [s for s in subfolders if not s.startswith('.')]
                paths.extend(os.path.join(folder, f) for f in files
                             if f.lower().endswith(suffixes) and not f.startswith('.'))
            self.samples.extend((path, self.class_to_idx[name]) for path in sorted(paths))
        if not self.samples:
            raise ValueError(f'{self.root}: the class folders hold no image files '
                             f'(looked for {", ".join(suffixes)})')

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        """(PIL image in RGB mode, int label) of sample `index`."""
        from PIL import Image
        path, label = self.samples[index]
        with Image.open(path) as image:
            return image.convert('RGB'), label

    def __repr__(self) -> str:
        return f'ImageFolderDataset({self.root!r}: {len(self)} images, {len(self.classes)} classes)'


class ArrayDataset:
    """Images and labels held in two arrays (for example CIFAR-style ``.npz`` / ``.npy`` files).

    Parameters
    ----------
    images : numpy array
        (N, H, W, 3) or (N, H, W) (grayscale) uint8; a memory-mapped array is read lazily.
    labels : numpy array, optional
        (N,) integers. Without labels, samples are 1-tuples ``(image,)``.

    Raises
    ------
    ValueError
        Wrong dtype or shape, or a different number of images and labels.
    """

    def __init__(self, images: np.ndarray, labels: Optional[np.ndarray] = None):
        if images.dtype != np.uint8:
            raise ValueError(f'images must be uint8, got dtype {images.dtype} '
                             '(scale to 0-255 and use .astype(np.uint8))')
        if not (images.ndim == 4 and images.shape[3] == 3) and images.ndim != 3:
            raise ValueError(f'images must have shape (N, H, W, 3) or (N, H, W), got {images.shape}')
        if labels is not None:
            labels = np.asarray(labels)
            if labels.ndim != 1 or labels.dtype.kind not in 'iu':
                raise ValueError(f'labels must be a 1-D integer array, got dtype {labels.dtype} and '
                                 f'shape {labels.shape}')
            if len(labels) != len(images):
                raise ValueError(f'{len(images)} images but {len(labels)} labels')
        self.images = images
        self.labels = labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = np.asarray(self.images[index])
        if self.labels is None:
            return (image,)
        return image, int(self.labels[index])
