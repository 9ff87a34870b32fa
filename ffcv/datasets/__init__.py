"""Ready-made indexed datasets to write `.beton` files from.

* `folders`: `ImageFolderDataset` (a folder per class, as torchvision's ImageFolder) and `ArrayDataset`
  (images and labels held in arrays, e.g. CIFAR's), used by ``ffcv convert`` and the dataset writers;
* `embedded`: a small learnable 10-class dataset built from photographs that ship with scikit-image
  (what ``python train_cifar.py`` trains on when no dataset is given).
"""
from .folders import ArrayDataset, ImageFolderDataset

__all__ = ['ArrayDataset', 'ImageFolderDataset']
