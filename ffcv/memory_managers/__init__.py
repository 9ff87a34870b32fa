"""Where heap data is read from: the OS page cache (mmap) or a process-managed page cache."""
from .base import ContextClosedError, MemoryContext, MemoryManager
from .os_cache import OSCacheManager
from .process_cache import ProcessCacheManager

__all__ = ['ContextClosedError', 'MemoryContext', 'MemoryManager', 'OSCacheManager', 'ProcessCacheManager']
