"""Exception types shared by the Python reader/writer and the native runtime
(the C++ ErrorCode kFormat and kUnsupported map onto these)."""


class FormatError(ValueError):
    """A ``.spr`` file (or a model about to be written) breaks the format:
    malformed, truncated, corrupt (checksum) or of an unknown version."""


class UnsupportedError(ValueError):
    """A model uses an op, attribute or storage kind this build does not implement."""
