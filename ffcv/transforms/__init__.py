"""Transforms (same import paths as FFCV: `from ffcv.transforms import ToTensor, ...`)."""
from .common import Squeeze
from .flip import RandomHorizontalFlip
from .module import ModuleWrapper
from .ops import Convert, ToDevice, ToTensor, ToTorchImage, View

__all__ = ['ToTensor', 'ToDevice', 'ToTorchImage', 'Convert', 'View', 'Squeeze', 'ModuleWrapper',
           'RandomHorizontalFlip']
