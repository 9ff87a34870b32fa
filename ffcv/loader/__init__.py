"""The data loader: `Loader` and `OrderOption`."""
from .loader import Loader, OrderOption

__all__ = ['Loader', 'OrderOption']
