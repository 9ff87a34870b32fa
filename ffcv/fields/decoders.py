"""All decoders, under the import path FFCV users know (`from ffcv.fields.decoders import ...`)."""
from .basics import FloatDecoder, IntDecoder
from .bytes import BytesDecoder
from .image_decoders import (CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder,
                             ResizedCropRGBImageDecoder, SimpleRGBImageDecoder)
from .ndarray import NDArrayDecoder

__all__ = ['FloatDecoder', 'IntDecoder', 'BytesDecoder', 'NDArrayDecoder', 'SimpleRGBImageDecoder',
           'ResizedCropRGBImageDecoder', 'RandomResizedCropRGBImageDecoder', 'CenterCropRGBImageDecoder']
