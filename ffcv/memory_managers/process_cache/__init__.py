"""Process cache: the loader reads the pages of each epoch into its own memory (``os_cache=False``)."""
from .context import ProcessCacheContext
from .manager import ProcessCacheManager
from .schedule import EpochSchedule

__all__ = ['EpochSchedule', 'ProcessCacheContext', 'ProcessCacheManager']
