"""Reading a file the program was given: one bounded reader for every spec, config, token and certificate.

Rules, each against a way a file has been seen to hurt:

* Only a regular file is read. A device (``/dev/zero`` reports size 0 and never ends), a FIFO (opening
  it waits for a writer), a socket or a directory is refused from ``fstat`` on the opened descriptor,
  before a byte is read. The descriptor is opened with ``O_NONBLOCK``, so opening a FIFO returns at
  once instead of waiting for a writer.
* At most ``limit + 1`` bytes are read: a size check alone is passed by any file whose reported size
  is not its content (a device, a file still growing, ``/proc``).
* Text is UTF-8; other bytes are refused with the file's name and the offset of the first bad byte.
* Every refusal is one ``SpecError`` line ``file:0: field: message`` (exit 2). ``field`` names what
  the file is for (``(file)`` for a spec, a setting's name for a token or a certificate), and the
  file name is printed with its control characters escaped, so the answer stays one line.
"""

from __future__ import annotations

import os
import stat

from orchestrator.errors import SpecError

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def shown(path: str | os.PathLike[str]) -> str:
    """``path`` as it may be printed on one line: control and other unprintable characters escaped."""
    text = os.fspath(path)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "is a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "is a device, not a regular file"
    if stat.S_ISFIFO(mode):
        return "is a FIFO (named pipe), not a regular file"
    if stat.S_ISSOCK(mode):
        return "is a socket, not a regular file"
    return "is not a regular file"


def _size(limit: int) -> str:
    if limit < 1024:
        return f"{limit} bytes"
    return f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit // 1024} KiB"


def read_bytes(path: str | os.PathLike[str], *, limit: int, field: str = "(file)", hint: str = "") -> bytes:
    """The content of the regular file at ``path``, at most ``limit`` bytes, else ``SpecError``."""
    where = f"{shown(path)}:0: {field}:"
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise SpecError([f"{where} no such file"]) from None
    except PermissionError:
        raise SpecError([f"{where} permission denied"]) from None
    except OSError as exc:
        raise SpecError([f"{where} cannot open: {exc.strerror or type(exc).__name__}"]) from None
    except ValueError:  # a NUL byte, or a character the file system's encoding cannot carry
        raise SpecError([f"{where} not a usable file name"]) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise SpecError([f"{where} {_kind(mode)}"])
        chunks: list[bytes] = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 64 * 1024))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise SpecError([f"{where} cannot read: {exc.strerror or type(exc).__name__}"]) from None
    finally:
        os.close(fd)
    raw = b"".join(chunks)
    if len(raw) > limit:
        raise SpecError([f"{where} larger than {_size(limit)}" + (f"; {hint}" if hint else "")])
    return raw


def read_text(path: str | os.PathLike[str], *, limit: int, field: str = "(file)", hint: str = "") -> str:
    """``read_bytes`` decoded as UTF-8, refusing other encodings with the offset of the first bad byte."""
    raw = read_bytes(path, limit=limit, field=field, hint=hint)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(
            [f"{shown(path)}:0: {field}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start})"]
        ) from None


def check_file(path: str | os.PathLike[str], *, limit: int, field: str) -> str:
    """``path`` if it is a readable regular file within ``limit``, for libraries that open the file themselves."""
    read_bytes(path, limit=limit, field=field)
    return os.fspath(path)


__all__ = ["check_file", "read_bytes", "read_text", "shown"]
