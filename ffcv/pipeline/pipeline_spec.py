"""`PipelineSpec`: the recipe of one loader output (source field, decoder, transforms)."""
from __future__ import annotations

from typing import Optional, Sequence, Union

from .operation import Operation


class PipelineError(ValueError):
    """A pipeline cannot work as specified; the message names the pipeline, the step and the fix."""


_ERROR_KINDS = {}


def pipeline_error(message: str, cause: BaseException) -> PipelineError:
    """A PipelineError carrying `message` that is also an instance of `cause`'s built-in class, so code
    written for FFCV that catches, say, the TypeError an operation raised still catches it."""
    kind = type(cause)
    if issubclass(PipelineError, kind) or kind.__module__ != 'builtins':
        return PipelineError(message)
    if kind not in _ERROR_KINDS:
        try:
            _ERROR_KINDS[kind] = type(f'Pipeline{kind.__name__}', (PipelineError, kind),
                                      {'__str__': BaseException.__str__, '__module__': __name__})
        except TypeError:  # incompatible layout (OSError and its kin): the plain kind
            _ERROR_KINDS[kind] = PipelineError
    return _ERROR_KINDS[kind](message)


class PipelineSpec:
    """Source field, decoder and transforms of one output of a `Loader`.

    A plain description: the `Loader` resolves it (default decoder, torch modules wrapped, checks) when
    it builds its pipelines (`ffcv.loader._resolve`).

    Parameters
    ----------
    source : str or Operation
        Name of the field to decode; or an operation of another pipeline, whose result (computed once per
        batch) this output continues from with its own transforms (then without a decoder).
    decoder : Operation, optional
        Decoder; default: the field's own (e.g. `SimpleRGBImageDecoder` for `RGBImageField`).
    transforms : list of Operation or torch.nn.Module, optional
        Applied in order after the decoder (or the source operation).
    """

    def __init__(self, source: Union[str, Operation], decoder: Optional[Operation] = None,
                 transforms: Optional[Sequence] = None):
        self.source = source
        self.decoder = decoder
        self.transforms = list(transforms or [])
        self.default_pipeline = decoder is None and not transforms and isinstance(source, str)

    def __repr__(self) -> str:
        return f'PipelineSpec(source={self.source!r}, decoder={self.decoder!r}, transforms={self.transforms!r})'
