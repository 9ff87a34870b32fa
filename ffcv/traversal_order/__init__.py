"""Sample orders."""
from .base import TraversalOrder
from .random import Random
from .sequential import Sequential

try:
    from .quasi_random import QuasiRandom
except ImportError:  # being written
    QuasiRandom = None

__all__ = ['TraversalOrder', 'Sequential', 'Random', 'QuasiRandom']
