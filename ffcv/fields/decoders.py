"""All decoders, under the import path FFCV users know (`from ffcv.fields.decoders import ...`)."""
from .basics import FloatDecoder, IntDecoder
from .bytes import BytesDecoder
from .image_decoders import (CenterCropRGBImageDecoder, RandomResizedCropRGBImageDecoder,
                             ResizedCropRGBImageDecoder, SimpleRGBImageDecoder)
from .ndarray import NDArrayDecoder
from .packed_images import PackedRGBImageDecoder
from .ragged import BytesListDecoder, NDArrayListDecoder, PaddedBytesDecoder, PaddedNDArrayDecoder

__all__ = ['FloatDecoder', 'IntDecoder', 'BytesDecoder', 'NDArrayDecoder', 'SimpleRGBImageDecoder',
           'ResizedCropRGBImageDecoder', 'RandomResizedCropRGBImageDecoder', 'CenterCropRGBImageDecoder',
           'PaddedNDArrayDecoder', 'NDArrayListDecoder', 'PaddedBytesDecoder', 'BytesListDecoder',
           'PackedRGBImageDecoder']
