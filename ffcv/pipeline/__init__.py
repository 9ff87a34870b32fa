"""Pipeline building blocks: operations, states, allocation queries, the compiler."""
from .allocation_query import AllocationQuery
from .compiler import Compiler
from .operation import Operation
from .pipeline import Pipeline
from .pipeline_spec import PipelineSpec
from .state import State

__all__ = ['AllocationQuery', 'Compiler', 'Operation', 'Pipeline', 'PipelineSpec', 'State']
