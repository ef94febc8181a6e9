"""Zip archives damaged the way the fuzz run found them: headers asking for what Python's
zipfile does not implement."""

from __future__ import annotations

import struct

CENTRAL = b"PK\x01\x02"
LOCAL = b"PK\x03\x04"


def with_version_needed(data: bytes, version: int) -> bytes:
    """``data`` with every central-directory entry asking for zip ``version`` (203 = 20.3)
    to extract: zipfile refuses to open it (NotImplementedError)."""
    out = bytearray(data)
    at = out.find(CENTRAL)
    while at >= 0:
        struct.pack_into("<H", out, at + 6, version)
        at = out.find(CENTRAL, at + 4)
    return bytes(out)


def with_compression_method(data: bytes, method: int) -> bytes:
    """``data`` with every entry packed by compression ``method`` (99: AES, which zipfile
    lists but cannot unpack): the archive opens, its entries do not."""
    out = bytearray(data)
    for signature, offset in ((CENTRAL, 10), (LOCAL, 8)):
        at = out.find(signature)
        while at >= 0:
            struct.pack_into("<H", out, at + offset, method)
            at = out.find(signature, at + 4)
    return bytes(out)
