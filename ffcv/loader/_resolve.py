"""From the user's `pipelines` argument to the loader's `OutputPipeline`s.

This is where the loader decides what a pipeline means: which field it reads, which decoder heads it
(the field's default one, or the user's at the head of the list), that torch modules run wrapped in a
`ModuleWrapper`, and that a field nobody mentioned is decoded with its default decoder + `ToTensor()`.
The engine (`ffcv.pipeline`) then runs the resolved steps without knowing any particular operation.

A `PipelineSpec` whose source is an operation of another pipeline (FFCV's graphs) is a branch: it starts
from that step's result, computed once per batch, and applies its own transforms (e.g. several random
crops of one decoded image). A step that modifies its input in place (``modifies_input``) and shares that
input with another consumer gets its own copy, so branches never see each other's changes.

Several outputs may also name the same field as their source, each with its own decoder (views by name,
e.g. DINO's 2 global + 8 local crops: ``{'global0': PipelineSpec('image', decoder=...), ...}``). When two
or more of them use crop decoders that can share a decode (`can_share_decode()`), their decoder steps form
one `DecodeGroup`: each image is decoded once per batch for all of them, and each view still draws its own
windows from its own seeds (its output name and position). Other decoders of that field decode on their own.
"""
from __future__ import annotations

import difflib
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch

from ..fields import decoders
from ..pipeline.graph import DecodeGroup, OutputPipeline, Step
from ..pipeline.operation import Operation
from ..pipeline.pipeline_spec import PipelineError, PipelineSpec
from ..pipeline.seeding import op_key
from ..reader import Reader
from ..transforms.module import ModuleWrapper
from ..transforms.ops import ToTensor


def build_pipelines(pipelines: Mapping, reader: Reader, memory_read) -> List[OutputPipeline]:
    """Resolve the user's `pipelines` mapping into OutputPipelines, in FFCV's output order (fields in file
    order, then extra outputs), each declared once so that a misplaced step fails here."""
    field_names = reader.field_names
    specs: Dict[str, PipelineSpec] = {}
    for name, value in pipelines.items():
        if value is None:
            if name not in reader.handlers:
                raise PipelineError(_unknown_field(name, reader))
            continue
        if isinstance(value, PipelineSpec):
            spec = value
        elif isinstance(value, (list, tuple)):
            spec = PipelineSpec(name, transforms=list(value))
        else:
            raise PipelineError(f"pipelines['{name}'] must be a list of operations, a PipelineSpec or None; "
                                f'got {type(value).__name__}')
        if isinstance(spec.source, str) and spec.source not in reader.handlers:
            raise PipelineError(_unknown_field(spec.source, reader))
        specs[name] = spec
    for name in field_names:  # fields not mentioned: default decoder + ToTensor
        if name not in pipelines:
            specs[name] = PipelineSpec(name)

    ordered = [n for n in field_names if n in specs] + [n for n in specs if n not in field_names]
    outputs = {name: _output(name, specs[name], reader, memory_read)
               for name in ordered if isinstance(specs[name].source, str)}
    branches = [name for name in ordered if name not in outputs]
    while branches:  # a branch may start from another branch: resolve those whose source is built
        ready = [name for name in branches if _owner(specs[name].source, outputs.values(), name) is not None]
        if not ready:
            name = branches[0]
            raise PipelineError(f"pipeline '{name}' starts from {specs[name].source!r}, which is not an operation "
                                'of any other pipeline (pass the very object used in another pipeline)')
        for name in ready:
            outputs[name] = _branch(name, specs[name], _owner(specs[name].source, outputs.values(), name), reader,
                                    memory_read)
        branches = [name for name in branches if name not in outputs]
    _guard_shared_inputs([outputs[name] for name in ordered])
    _group_views([outputs[name] for name in ordered])
    return [outputs[name] for name in ordered]


def _group_views(outputs: Sequence[OutputPipeline]) -> None:
    """Join the decoders of the outputs that decode one field with crop decoders able to share a decode
    (two or more per field) into a DecodeGroup; a field with one such output keeps its own decoder."""
    views: Dict[str, List[Step]] = {}
    for output in outputs:
        if output.source is None and output.steps:
            can_share = getattr(output.steps[0].operation, 'can_share_decode', None)
            if callable(can_share) and can_share():
                views.setdefault(output.field_name, []).append(output.steps[0])
    for field_name, steps in views.items():
        if len(steps) > 1:
            decoders = [step.operation for step in steps]
            group = DecodeGroup(field_name, steps, type(decoders[0]).generate_shared_code(decoders))
            for step in steps:
                step.group = group


def run_order(outputs: Sequence[OutputPipeline]) -> List[int]:
    """Indices of `outputs` with every branch after the pipeline it starts from (else in output order)."""
    position = {id(step): index for index, output in enumerate(outputs) for step in output.steps}
    order, placed = [], set()

    def place(index: int) -> None:
        if index in placed:
            return
        source = outputs[index].source
        if source is not None:
            place(position[id(source)])
        placed.add(index)
        order.append(index)
    for index in range(len(outputs)):
        place(index)
    return order


def _output(name: str, spec: PipelineSpec, reader: Reader, memory_read) -> OutputPipeline:
    handler = reader.handlers[spec.source]
    decoder, transforms = resolve_spec(spec, handler.get_decoder_class(), name)
    index = reader.field_names.index(spec.source)
    output = OutputPipeline(name, spec.source, index)
    for position, op in enumerate([decoder, *transforms]):
        if not isinstance(op, Operation):
            raise PipelineError(f"pipeline '{name}', step {position}: {op!r} is neither an Operation nor a "
                                'torch.nn.Module')
        op.accept_field(handler)
        op.accept_globals(reader.column(index), memory_read)
        output.steps.append(Step(op, position, op_key(name, position)))
    output.declare()
    return output


def _owner(operation, outputs, name: str) -> Optional[Tuple[OutputPipeline, Step]]:
    """(pipeline, step) of `operation` among the built `outputs`; None if it is not there (yet)."""
    found = [(output, step) for output in outputs for step in output.steps if step.operation is operation]
    if len(found) > 1:
        raise PipelineError(f"pipeline '{name}' starts from {operation!r}, which several pipelines use "
                            f"({', '.join(repr(output.name) for output, _ in found)}): the source is ambiguous")
    return found[0] if found else None


def _branch(name: str, spec: PipelineSpec, owner: Tuple[OutputPipeline, Step], reader: Reader,
            memory_read) -> OutputPipeline:
    """The output of a PipelineSpec whose source is `owner`'s step: that step's result, then the transforms."""
    parent, source = owner
    if spec.decoder is not None:
        raise PipelineError(f"pipeline '{name}' starts from an operation of pipeline '{parent.name}' and cannot "
                            f'have a decoder too (got {spec.decoder!r})')
    source.shared = True
    output = OutputPipeline(name, parent.field_name, parent.field_index, source=source)
    handler = reader.handlers[parent.field_name]
    for position, op in enumerate(_wrap_modules(spec.transforms), start=1):
        if not isinstance(op, Operation):
            raise PipelineError(f"pipeline '{name}', step {position}: {op!r} is neither an Operation nor a "
                                'torch.nn.Module')
        op.accept_field(handler)
        op.accept_globals(reader.column(parent.field_index), memory_read)
        output.steps.append(Step(op, position, op_key(name, position)))
    output.declare()
    return output


def _guard_shared_inputs(outputs: Sequence[OutputPipeline]) -> None:
    """Mark `copy_input` on each step that modifies its input in place while another consumer reads it."""
    consumers: Dict[int, List[Optional[Step]]] = {}  # None: the result is itself an output of the loader
    for output in outputs:
        if output.source is not None:
            consumers.setdefault(id(output.source), []).append(output.steps[0] if output.steps else None)
        for before, after in zip(output.steps, [*output.steps[1:], None]):
            if before.shared:
                consumers.setdefault(id(before), []).append(after)
    for steps in consumers.values():
        for step in steps:
            if step is not None:
                step.copy_input = len(steps) > 1 and bool(getattr(step.operation, 'modifies_input', False))


def resolve_spec(spec: PipelineSpec, decoder_class, output_name: str) -> Tuple[Operation, List[Operation]]:
    """(decoder, transforms) of `spec`: an instance of the field's decoder class at the head of the
    transforms becomes the decoder, else the field's default decoder is used (a pipeline given as nothing
    at all gets ``ToTensor()`` after it); torch modules are wrapped. `spec` is left as it is."""
    decoder, transforms = spec.decoder, _wrap_modules(spec.transforms)
    if decoder is None and transforms and isinstance(transforms[0], decoder_class):
        decoder, transforms = transforms[0], transforms[1:]
    if decoder is None:
        if transforms and _looks_like_decoder(transforms[0]):
            raise PipelineError(
                f"pipeline '{output_name}' starts with {type(transforms[0]).__name__}, which cannot "
                f"decode field '{spec.source}' (its decoders are {decoder_class.__name__} and subclasses)")
        try:
            decoder = decoder_class()
        except TypeError as exc:
            raise PipelineError(f"pipeline '{output_name}': the default decoder {decoder_class.__name__} needs "
                                f'arguments ({exc}); put an instance at the head of the pipeline') from None
        if spec.default_pipeline:
            transforms = [ToTensor()]
    return decoder, transforms


def _wrap_modules(operations: Sequence) -> List[Operation]:
    return [ModuleWrapper(op) if isinstance(op, torch.nn.Module) else op for op in operations]


def _looks_like_decoder(op) -> bool:
    return isinstance(op, tuple(getattr(decoders, name) for name in decoders.__all__))


def _unknown_field(name: str, reader: Reader) -> str:
    close = difflib.get_close_matches(name, reader.field_names, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ''
    return (f"pipelines names '{name}', which is not a field of {reader.file_name} "
            f"(fields: {', '.join(reader.field_names)}){hint}")
