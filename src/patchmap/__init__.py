"""patchmap: balanced, contiguous, compact sales territories from a table of accounts."""

from patchmap.errors import InputError

__version__ = "0.1.0"
__all__ = ["InputError", "__version__"]
