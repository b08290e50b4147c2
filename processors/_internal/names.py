"""Span names with ids in them (``GET /users/8a7f…``) mapped to one operation name.

Some instrumentations, and many hand-written spans, name a span after the raw
URL path. Each id then becomes an operation of its own: the statistics cap
folds them into ``otel_ext.overflow`` and the operation is lost from view.
Replacing id-like path segments with ``{id}`` keeps them together instead.
"""

from __future__ import annotations

import re

__all__ = ["ID_PLACEHOLDER", "replace_ids"]

ID_PLACEHOLDER = "{id}"
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
_HEX_ID = re.compile(r"(?=[0-9a-fA-F]*[0-9])[0-9a-fA-F]{8,}")  # hashes, object ids: hex with a digit
_TOKEN = re.compile(r"(?=[\w.~=-]*[0-9])(?=[\w.~=-]*[A-Za-z])[\w.~=-]{16,}")  # opaque keys: letters and digits


def _is_id(segment: str) -> bool:
    return bool(
        segment.isdigit()
        or _UUID.fullmatch(segment)
        or _HEX_ID.fullmatch(segment)
        or _TOKEN.fullmatch(segment)
    )


def replace_ids(name: str) -> str:
    """``GET /users/42/orders/8a7f…?x=1`` → ``GET /users/{id}/orders/{id}``; other names unchanged.

    Only path segments (after a ``/``) are considered, and a query string is
    dropped: words such as ``SELECT orders`` or ``v2`` are never ids.
    """
    if "/" not in name:
        return name
    path = name.split("?", 1)[0]
    segments = path.split("/")
    replaced = [segments[0]] + [ID_PLACEHOLDER if _is_id(segment) else segment for segment in segments[1:]]
    return "/".join(replaced)
