"""Span names with ids in them (``GET /users/8a7f…``) mapped to one operation name.

Some instrumentations, and many hand-written spans, name a span after the raw
URL path. Each id then becomes an operation of its own: the statistics cap
folds them into ``otel_ext.overflow`` and the operation is lost from view.
Replacing id-like path segments with ``{id}`` keeps them together instead.

Only names with a ``/`` are touched, and only what follows the first ``/``:
the query string and the fragment (``?…``, ``#…``) are dropped, then each
``/``-separated segment is replaced by ``{id}`` when it is, as a whole:

* digits only (``42``), a UUID, or hex of at least 8 characters with a digit
  in it (hashes, object ids, UUIDs without dashes: ``deadbeef12``);
* anything with an ``@`` (or ``%40``) in it: emails and user handles
  (``alice@example.com``, ``@alice``). User identifiers must never end up in
  metric labels;
* digits and the separators ``- _ . : +`` with at least 4 digits: dates,
  times, IPv4 addresses, phone numbers (``2024-01-15``, ``192.168.0.1``,
  ``+1-415-555-2671``, ``%2B14155552671``), also as an ISO 8601 timestamp
  (``2024-01-15T10:00:00Z``). A version stays with 3 digits (``1.2.3``) but
  folds from 4 (``2.31.0``);
* 1 to 10 letters, a ``-`` or ``_``, then at least 4 digits, or capitals
  then at least 4 digits: business keys such as ``ORD-1234``,
  ``ACCT_0001234`` or ``INV20240001`` (``v2``, ``h264``, ``mp3``, ``oauth2``
  have fewer digits, and words ending in a year, ``summer2024``, are
  lower-case without a separator: they stay);
* an IPv6 address (hex digits and at least two ``:``: ``2001:db8::1``);
* an opaque token: at least 16 characters of ``A-Z a-z 0-9 - _`` where one
  ``-``/``_``-free piece mixes a digit, an upper- and a lower-case letter
  (``AbCdEfGh12345678xyz``, ``cus_NffrFeUfNV2Hib``; title-case slugs such as
  ``Getting-Started-V2`` have no such piece), or at least 16 characters of
  one case only, without separators, with at least 4 digits (base36 keys,
  ULIDs such as ``01ARZ3NDEKTSV4RRFFQ69G5FAV``);
* a JWT (``eyJ….….…``).

A segment that is not an id but ends in a short extension (a ``.`` and 1 to 5
letters or digits, at least one a letter: ``.csv``, ``.png``, ``.mp4``) keeps
the extension: ``12345678.csv`` → ``{id}.csv`` when its stem is an id, and a
hashed asset name ``main.3f2a9b1c.js`` → ``main.{id}.js`` when the part after
the stem's last dot is an id of at least 8 characters. Dash-hashed asset names
(``index-BHeQp5aU.js``) stay: each release brings only a few of them.

Words and slugs stay, digits or not: ``api``, ``v2``, ``2fa``, ``summer-sale``,
``healthcheck_v1_internal``, ``report-2024-final-v2.pdf``,
``icon-192x192.png``; so do route templates (``{id}``, ``<int:book_id>``,
``:id``) and names without a path (``SELECT orders``, ``HTTP GET``). The
result is stable: folding a folded name changes nothing.
"""

from __future__ import annotations

import re

__all__ = ["ID_PLACEHOLDER", "operation_name", "replace_ids"]

ID_PLACEHOLDER = "{id}"

# One pattern, matched against whole segments (fullmatch), so a segment costs one regex call.
# No alternative matches letters only: replace_ids skips such segments (most of them) before it.
_ID = re.compile(
    r"""
      [0-9]+                                                # numbers
    | [0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}  # UUIDs
    | (?=[a-fA-F]*[0-9])[0-9a-fA-F]{8,}                     # hashes, object ids, undashed UUIDs
    | (?:%2[Bb])?(?=(?:[^0-9]*[0-9]){4})[0-9._:+-]+(?:T[0-9._:+-]+)?Z?  # dates, times, IPs, phones
    | [A-Za-z]{1,10}[-_][0-9]{4,} | [A-Z]{1,10}[0-9]{4,}     # business keys: ORD-1234, ACCT_0001234, INV20240001
    | (?=[0-9a-fA-F]*:[0-9a-fA-F]*:)[0-9a-fA-F:]{2,39}      # IPv6 addresses: 2001:db8::1, ::1
    | (?=(?:[A-Za-z0-9_-]*[-_])?                            # opaque tokens: one -/_-free piece
         (?=[A-Za-z0-9]*[0-9])(?=[A-Za-z0-9]*[a-z])[A-Za-z0-9]*[A-Z]  # has a digit, a-z and A-Z
      )[A-Za-z0-9_-]{16,}
    | (?=(?:[a-z]*[0-9]){4})[a-z0-9]{16,}                   # one-case tokens, 4+ digits: base36 keys,
    | (?=(?:[A-Z]*[0-9]){4})[A-Z0-9]{16,}                   # ULIDs, base32
    | eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*     # JWTs
    """,
    re.VERBOSE,
)
_EXTENSION = re.compile(r"(?=[0-9]*[A-Za-z])[A-Za-z0-9]{1,5}")  # csv, png, json, mp4: a letter in it
_MIN_HASH_LENGTH = 8  # main.3f2a9b1c.js; shorter inner parts (lib-v1.2.js, bootstrap.5.css) are versions


def _fold_segment(segment: str) -> str:
    if _ID.fullmatch(segment) or "@" in segment or "%40" in segment:
        return ID_PLACEHOLDER
    stem, dot, extension = segment.rpartition(".")
    if not dot or not _EXTENSION.fullmatch(extension):
        return segment
    if _ID.fullmatch(stem):
        return f"{ID_PLACEHOLDER}.{extension}"
    head, dot, last = stem.rpartition(".")
    if dot and len(last) >= _MIN_HASH_LENGTH and _ID.fullmatch(last):
        return f"{head}.{ID_PLACEHOLDER}.{extension}"
    return segment


def replace_ids(name: str) -> str:
    """``GET /users/42/orders/8a7f…?x=1`` → ``GET /users/{id}/orders/{id}``; other names unchanged.

    Only path segments (after the first ``/``) are considered, and a query
    string or fragment is dropped: words such as ``SELECT orders`` or ``v2``
    are never ids. The rules are in the module docstring.
    """
    head, slash, path = name.partition("/")
    if not slash:
        return name
    path = path.partition("?")[0].partition("#")[0]
    segments = [segment if segment.isalpha() else _fold_segment(segment) for segment in path.split("/")]
    return f"{head}/{'/'.join(segments)}"


def operation_name(span_name: str, fold_ids: bool = True) -> str:
    """The operation a span counts under everywhere: statistics, metrics, thresholds and error groups."""
    return replace_ids(span_name) if fold_ids else span_name
