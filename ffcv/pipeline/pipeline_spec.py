"""`PipelineSpec`: the recipe of one loader output (source field, decoder, transforms)."""
from __future__ import annotations

from typing import List, Optional, Sequence, Union

import torch

from .operation import Operation


class PipelineError(ValueError):
    """A pipeline cannot work as specified; the message names the pipeline, the step and the fix."""


def _wrap_modules(operations: Sequence) -> List[Operation]:
    from ..transforms.module import ModuleWrapper
    return [ModuleWrapper(op) if isinstance(op, torch.nn.Module) else op for op in operations]


class PipelineSpec:
    """Source field, decoder and transforms of one output of a `Loader`.

    Parameters
    ----------
    source : str
        Name of the field to decode.
    decoder : Operation, optional
        Decoder; default: the field's own (e.g. `SimpleRGBImageDecoder` for `RGBImageField`).
    transforms : list of Operation or torch.nn.Module, optional
        Applied in order after the decoder.
    """

    def __init__(self, source: Union[str, Operation], decoder: Optional[Operation] = None,
                 transforms: Optional[Sequence] = None):
        if not isinstance(source, str):
            raise NotImplementedError('PipelineSpec sources other than a field name (branching off another '
                                      "pipeline's operation) are not supported; decode the field twice instead")
        self.source = source
        self.decoder = decoder
        self.transforms = _wrap_modules(transforms or [])
        self.default_pipeline = decoder is None and not transforms

    def accept_decoder(self, decoder_class, output_name: str) -> None:
        """Resolve the decoder: an instance of the field's decoder class at the head of `transforms`
        becomes the decoder; otherwise the field's default decoder is used."""
        from ..transforms.ops import ToTensor
        if self.decoder is None and self.transforms and isinstance(self.transforms[0], decoder_class):
            self.decoder = self.transforms.pop(0)
        if self.decoder is None:
            if self.transforms and _looks_like_decoder(self.transforms[0]):
                raise PipelineError(
                    f"pipeline '{output_name}' starts with {type(self.transforms[0]).__name__}, which cannot "
                    f"decode field '{self.source}' (its decoders are {decoder_class.__name__} and "
                    'subclasses)')
            try:
                self.decoder = decoder_class()
            except TypeError as exc:
                raise PipelineError(f"pipeline '{output_name}': the default decoder {decoder_class.__name__} needs "
                                 f'arguments ({exc}); put an instance at the head of the pipeline') from None
            if self.default_pipeline:
                self.transforms = [ToTensor()]

    def __repr__(self) -> str:
        return f'PipelineSpec(source={self.source!r}, decoder={self.decoder!r}, transforms={self.transforms!r})'


def _looks_like_decoder(op) -> bool:
    from ..fields import decoders
    return isinstance(op, tuple(getattr(decoders, name) for name in decoders.__all__))
