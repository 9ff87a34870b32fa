"""Sample orders of an epoch: `Sequential`, `Random`, `QuasiRandom`, or a `TraversalOrder` subclass."""
from .base import TraversalOrder
from .quasi_random import QuasiRandom
from .random import Random
from .sequential import Sequential

__all__ = ['TraversalOrder', 'Sequential', 'Random', 'QuasiRandom']
