"""How a failure is told to the user: one line naming the file and the reason, whatever the
exception type; and text that can be printed or stored whatever bytes a file name holds."""
from __future__ import annotations


def safe_text(text) -> str:
    """``text`` with characters UTF-8 cannot hold (the lone surrogates Python uses for the
    non-UTF-8 bytes of a file name) written as ``\\udcNN`` escapes, so it can be printed, put in
    a Parquet string column or a CSV file. In a JSON string that escape reads back exactly."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")


def reason(exc: BaseException) -> str:
    """The exception's message, or its type name when it has none (``KeyError()``)."""
    text = str(exc).strip()
    name = type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror  # the path is named by the caller, once
    if not text:
        return name
    if isinstance(exc, (KeyError, IndexError, TypeError, AttributeError, UnicodeError)):
        return f"{name}: {text}"  # "KeyError: 'bbox'" says more than "'bbox'"
    return text


def describe(path, exc: BaseException) -> str:
    """``path: reason``; the path is not repeated when the message already starts with it."""
    text, where = reason(exc), str(path)
    return safe_text(text if text.startswith(where) else f"{where}: {text}")
