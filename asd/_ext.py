"""Access to the compiled extension ``asd._C``, with a one-time notice when it is absent.

Every kernel in ``_C`` has a readable twin (numpy or torch); callers use
``get_ext()`` and fall back to the twin when it returns ``None``.
"""

from __future__ import annotations

import sys
from types import ModuleType

_EXT: ModuleType | None = None
_TRIED = False
_ERROR: str | None = None


def get_ext() -> ModuleType | None:
    """Return ``asd._C`` or ``None`` (then say once, on stderr, that the slower twins run)."""
    global _EXT, _TRIED, _ERROR
    if not _TRIED:
        _TRIED = True
        try:
            from asd import _C  # type: ignore[attr-defined]

            _EXT = _C
        except ImportError as e:  # the build failed or was skipped
            _ERROR = str(e)
            print(
                f"asd: the compiled extension asd._C is not available ({e}); "
                "using the slower numpy/torch reference implementations. "
                "Rebuild with `make build` (or `pip install -e .`; see README).",
                file=sys.stderr,
            )
    return _EXT


def has_cuda_kernels() -> bool:
    ext = get_ext()
    return bool(ext is not None and getattr(ext, "WITH_CUDA", False))


def require_ext(kernel: str) -> ModuleType:
    """``asd._C`` where the caller has already checked that ``kernel`` is compiled in (RuntimeError otherwise)."""
    ext = get_ext()
    if ext is None or not hasattr(ext, kernel):
        raise RuntimeError(f"asd._C.{kernel} is not available in this build")
    return ext
