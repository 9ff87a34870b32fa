"""Transforms (same import paths as FFCV: `from ffcv.transforms import ToTensor, ...`)."""
from .auto_augment import RandAugment, TrivialAugmentWide
from .blur import GaussianBlur
from .color_jitter import RandomBrightness, RandomContrast, RandomSaturation
from .common import Squeeze
from .cutout import Cutout
from .flip import RandomHorizontalFlip
from .grayscale import RandomGrayscale
from .hue import RandomHue
from .mixup import ImageMixup, LabelMixup, MixupToOneHot
from .module import ModuleWrapper
from .normalize import NormalizeImage
from .ops import Convert, ToDevice, ToTensor, ToTorchImage, View
from .poisoning import Poison
from .random_color_jitter import RandomColorJitter
from .ragged import ToImageList
from .random_resized_crop import RandomResizedCrop
from .replace_label import ReplaceLabel
from .solarize import RandomSolarization
from .translate import RandomTranslate

__all__ = ['ToTensor', 'ToDevice', 'ToTorchImage', 'Convert', 'View', 'Squeeze', 'ModuleWrapper',
           'RandomHorizontalFlip', 'RandomTranslate', 'Cutout', 'RandomResizedCrop', 'NormalizeImage',
           'ImageMixup', 'LabelMixup', 'MixupToOneHot', 'Poison', 'ReplaceLabel',
           'RandomBrightness', 'RandomContrast', 'RandomSaturation', 'RandomHue', 'RandomColorJitter',
           'RandomGrayscale', 'RandomSolarization', 'GaussianBlur', 'RandAugment', 'TrivialAugmentWide',
           'ToImageList']
