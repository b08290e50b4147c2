"""A small Flask book shop used to demo otel-ext.

The app deliberately contains no OpenTelemetry code: it is meant to run
unmodified under ``opentelemetry-instrument`` so that every span comes from
zero-code instrumentation (flask, sqlite3, requests).  Its endpoints have
fixed, explainable behaviour so demo numbers can be checked by hand:

* ``GET /search`` always takes ~1.25 s (crosses a 1000 ms slow threshold),
* ``GET /reports/daily`` takes ~350 ms (slowish, but under the threshold),
* exactly every 4th ``POST /checkout`` that reaches payment fails with 500,
* everything else is fast and succeeds (``GET /books/<id>`` may be a 404).

Run with ``python app.py``; ``SHOP_PORT`` (default 5000) selects the port and
``SHOP_DB`` an SQLite file to use instead of a fresh one in a temp dir.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from types import FrameType
from typing import Any

import requests
from flask import Blueprint, Flask, current_app, request
from werkzeug.exceptions import InternalServerError

SEARCH_DELAY_S = 1.25
"""Simulated cost of relevance ranking; keeps /search reliably above 1 s."""

REPORT_DELAY_S = 0.35
"""Simulated cost of building the daily report; keeps it below 1 s."""

FAILING_CHECKOUT_EVERY = 4
"""Every Nth checkout is declined, so exactly 25 % of checkouts fail."""

INVENTORY_TIMEOUT_S = 5.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS books (
    id          INTEGER PRIMARY KEY,
    title       TEXT    NOT NULL,
    author      TEXT    NOT NULL,
    year        INTEGER NOT NULL,
    price_cents INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS inventory (
    book_id INTEGER PRIMARY KEY REFERENCES books(id),
    stock   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS orders (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    book_id     INTEGER NOT NULL REFERENCES books(id),
    quantity    INTEGER NOT NULL,
    total_cents INTEGER NOT NULL,
    created_at  TEXT    NOT NULL DEFAULT CURRENT_TIMESTAMP
);
"""

CATALOGUE: list[tuple[str, str, int]] = [
    ("Pride and Prejudice", "Jane Austen", 1813),
    ("Emma", "Jane Austen", 1815),
    ("Persuasion", "Jane Austen", 1817),
    ("Frankenstein", "Mary Shelley", 1818),
    ("Ivanhoe", "Walter Scott", 1819),
    ("The Last of the Mohicans", "James Fenimore Cooper", 1826),
    ("The Red and the Black", "Stendhal", 1830),
    ("Eugene Onegin", "Alexander Pushkin", 1833),
    ("Oliver Twist", "Charles Dickens", 1838),
    ("Dead Souls", "Nikolai Gogol", 1842),
    ("A Christmas Carol", "Charles Dickens", 1843),
    ("The Count of Monte Cristo", "Alexandre Dumas", 1844),
    ("The Three Musketeers", "Alexandre Dumas", 1844),
    ("Jane Eyre", "Charlotte Bronte", 1847),
    ("Wuthering Heights", "Emily Bronte", 1847),
    ("Vanity Fair", "William Makepeace Thackeray", 1848),
    ("David Copperfield", "Charles Dickens", 1850),
    ("The Scarlet Letter", "Nathaniel Hawthorne", 1850),
    ("Moby-Dick", "Herman Melville", 1851),
    ("Uncle Tom's Cabin", "Harriet Beecher Stowe", 1852),
    ("Bleak House", "Charles Dickens", 1853),
    ("Walden", "Henry David Thoreau", 1854),
    ("Madame Bovary", "Gustave Flaubert", 1857),
    ("A Tale of Two Cities", "Charles Dickens", 1859),
    ("Great Expectations", "Charles Dickens", 1861),
    ("Les Miserables", "Victor Hugo", 1862),
    ("Fathers and Sons", "Ivan Turgenev", 1862),
    ("Journey to the Center of the Earth", "Jules Verne", 1864),
    ("Alice's Adventures in Wonderland", "Lewis Carroll", 1865),
    ("Crime and Punishment", "Fyodor Dostoevsky", 1866),
    ("War and Peace", "Leo Tolstoy", 1869),
    ("Twenty Thousand Leagues Under the Seas", "Jules Verne", 1870),
    ("Middlemarch", "George Eliot", 1871),
    ("Around the World in Eighty Days", "Jules Verne", 1872),
    ("Far from the Madding Crowd", "Thomas Hardy", 1874),
    ("Anna Karenina", "Leo Tolstoy", 1878),
    ("The Brothers Karamazov", "Fyodor Dostoevsky", 1880),
    ("The Portrait of a Lady", "Henry James", 1881),
    ("Treasure Island", "Robert Louis Stevenson", 1883),
    ("Adventures of Huckleberry Finn", "Mark Twain", 1884),
    ("Strange Case of Dr Jekyll and Mr Hyde", "Robert Louis Stevenson", 1886),
    ("A Study in Scarlet", "Arthur Conan Doyle", 1887),
    ("The Picture of Dorian Gray", "Oscar Wilde", 1890),
    ("Tess of the d'Urbervilles", "Thomas Hardy", 1891),
    ("The Jungle Book", "Rudyard Kipling", 1894),
    ("The Time Machine", "H. G. Wells", 1895),
    ("Dracula", "Bram Stoker", 1897),
    ("The War of the Worlds", "H. G. Wells", 1898),
    ("Heart of Darkness", "Joseph Conrad", 1899),
    ("The Hound of the Baskervilles", "Arthur Conan Doyle", 1902),
]


class CheckoutCounter:
    """Numbers checkouts across request threads so failures are exact, not random."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._count = 0

    def next(self) -> int:
        with self._lock:
            self._count += 1
            return self._count


shop = Blueprint("shop", __name__)
checkout_counter = CheckoutCounter()


@contextmanager
def db() -> Iterator[sqlite3.Cursor]:
    """Open one connection per request, commit on success, always close.

    ``sqlite3.connect`` is looked up at call time and queries go through a
    cursor (not the ``Connection.execute`` shortcut) so that the sqlite3
    auto-instrumentation, which wraps ``connect`` and traces cursors, sees
    every statement.
    """
    with closing(sqlite3.connect(current_app.config["SHOP_DB"])) as conn:
        conn.row_factory = sqlite3.Row
        with conn, closing(conn.cursor()) as cursor:
            yield cursor


def init_db(path: str) -> None:
    """Create the schema and seed the catalogue once (an existing DB is reused).

    Uses the ``Connection`` shortcuts, which the sqlite3 instrumentation does
    not trace, so start-up seeding adds no spans to the demo's numbers.
    """
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.executescript(SCHEMA)
        if conn.execute("SELECT COUNT(*) FROM books").fetchone()[0] == 0:
            conn.executemany(
                "INSERT INTO books (id, title, author, year, price_cents)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (i, title, author, year, 799 + (i * 137) % 1500)
                    for i, (title, author, year) in enumerate(CATALOGUE, start=1)
                ],
            )
            conn.executemany(
                "INSERT INTO inventory (book_id, stock) VALUES (?, ?)",
                [(i, 5 + (i * 7) % 40) for i in range(1, len(CATALOGUE) + 1)],
            )


def create_app(db_path: str) -> Flask:
    """Build the app around an initialised database (also handy for test clients)."""
    init_db(db_path)
    app = Flask(__name__)
    app.config["SHOP_DB"] = db_path
    app.register_blueprint(shop)
    return app


@shop.app_errorhandler(InternalServerError)
def internal_error(error: InternalServerError) -> tuple[dict[str, str], int]:
    """Keep 500s JSON like every other response.

    Flask still logs the original exception and hands it to teardown hooks
    (where instrumentation records it); this only changes the response body.
    """
    return {"error": "internal server error"}, 500


@shop.get("/health")
def health() -> dict[str, str]:
    """Readiness probe for scripts that start the shop in the background."""
    return {"status": "ok"}


@shop.get("/books")
def list_books() -> list[dict[str, Any]]:
    """Whole catalogue in one query: the fast, always-successful baseline."""
    with db() as cur:
        cur.execute("SELECT id, title, author, year, price_cents FROM books ORDER BY id")
        return [dict(row) for row in cur.fetchall()]


@shop.get("/books/<int:book_id>")
def get_book(book_id: int) -> tuple[dict[str, Any], int]:
    """One book; unknown ids are a plain 404 response, not an exception."""
    with db() as cur:
        cur.execute(
            "SELECT id, title, author, year, price_cents FROM books WHERE id = ?",
            (book_id,),
        )
        row = cur.fetchone()
    if row is None:
        return {"error": f"book {book_id} not found"}, 404
    return dict(row), 200


@shop.get("/search")
def search() -> dict[str, Any]:
    """Substring search over title/author; deliberately slow (~1.25 s).

    The sleep stands in for an expensive ranking step so that this endpoint
    is the one operation that always exceeds a 1000 ms slow threshold.
    """
    query = request.args.get("q", "")
    pattern = f"%{query}%"
    with db() as cur:
        cur.execute(
            "SELECT id, title, author, year, price_cents FROM books"
            " WHERE title LIKE ? OR author LIKE ? ORDER BY title",
            (pattern, pattern),
        )
        rows = [dict(row) for row in cur.fetchall()]
    time.sleep(SEARCH_DELAY_S)
    return {"query": query, "results": rows}


@shop.get("/inventory/<int:book_id>")
def inventory(book_id: int) -> tuple[dict[str, Any], int]:
    """Stock level; called over HTTP by /checkout to produce an outgoing span."""
    with db() as cur:
        cur.execute("SELECT book_id, stock FROM inventory WHERE book_id = ?", (book_id,))
        row = cur.fetchone()
    if row is None:
        return {"error": f"no inventory for book {book_id}"}, 404
    return dict(row), 200


@shop.post("/checkout")
def checkout() -> tuple[dict[str, Any], int]:
    """Buy a book (JSON body ``{"book_id": 1, "quantity": 1}``, both optional).

    Every 4th checkout that reaches payment raises, so Flask answers 500 for
    exactly 25 % of them; the others record an order, then ask the inventory
    endpoint (a real outgoing HTTP request) for the remaining stock.
    """
    body = request.get_json(silent=True) or {}
    book_id = body.get("book_id", 1)
    quantity = body.get("quantity", 1)
    if not isinstance(book_id, int) or not isinstance(quantity, int) or quantity < 1:
        return {"error": "book_id and quantity must be positive integers"}, 400

    with db() as cur:
        cur.execute("SELECT price_cents FROM books WHERE id = ?", (book_id,))
        book = cur.fetchone()
        if book is None:
            return {"error": f"book {book_id} not found"}, 404
        if checkout_counter.next() % FAILING_CHECKOUT_EVERY == 0:
            raise RuntimeError("payment declined")
        total_cents = book["price_cents"] * quantity
        cur.execute(
            "INSERT INTO orders (book_id, quantity, total_cents) VALUES (?, ?, ?)",
            (book_id, quantity, total_cents),
        )
        order_id = cur.lastrowid

    stock = requests.get(
        f"{request.host_url}inventory/{book_id}", timeout=INVENTORY_TIMEOUT_S
    )
    stock.raise_for_status()
    return {
        "order_id": order_id,
        "book_id": book_id,
        "quantity": quantity,
        "total_cents": total_cents,
        "stock": stock.json()["stock"],
    }, 201


@shop.get("/reports/daily")
def daily_report() -> dict[str, Any]:
    """Today's sales; moderately slow (~350 ms) but below the slow threshold."""
    with db() as cur:
        cur.execute(
            "SELECT COUNT(*) AS orders, COALESCE(SUM(quantity), 0) AS items,"
            " COALESCE(SUM(total_cents), 0) AS revenue_cents, date('now') AS day"
            " FROM orders WHERE date(created_at) = date('now')"
        )
        report = dict(cur.fetchone())
    time.sleep(REPORT_DELAY_S)
    return report


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    """Turn SIGTERM into a normal exit so atexit hooks and temp-dir cleanup run.

    Demo scripts stop the shop with SIGTERM; without this the process dies
    immediately and anything registered with ``atexit`` (such as telemetry
    exporters flushing their last batch) never gets to run.
    """
    sys.exit(0)


def main() -> None:
    """Serve on 127.0.0.1:$SHOP_PORT with a threaded, non-reloading server."""
    port = int(os.environ.get("SHOP_PORT", "5000"))
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with tempfile.TemporaryDirectory(prefix="flask-shop-") as tmp:
        app = create_app(os.environ.get("SHOP_DB") or os.path.join(tmp, "shop.db"))
        print(f"flask-shop listening on http://127.0.0.1:{port}", flush=True)
        app.run(host="127.0.0.1", port=port, threaded=True, debug=False, use_reloader=False)


if __name__ == "__main__":
    main()
