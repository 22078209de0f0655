"""imgedit: a plugin-based image editing toolkit.

Plugins implement the hooks in :mod:`imgedit.hookspecs`; import ``hookimpl``
from here to mark them.
"""

from imgedit.hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
