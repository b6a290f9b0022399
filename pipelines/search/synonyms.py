"""The search synonym dictionary, rendered from the lake's copy of the synonyms table.

Search engineers keep synonyms in Aurora MySQL (`SynonymsTable`: an id and up to three terms per
row). The table reaches the lake through the MySQL CDC source like any other; this module reads
its current state and renders it in the Solr synonyms format, which OpenSearch's `synonym` and
`synonym_graph` filters read by default: one line per row, the row's terms separated by commas
(equivalent synonyms, so every term finds every other).

The rendering is a pure function of the rows: lines sorted by row id, terms normalised, no
timestamps. Its SHA-256 therefore changes exactly when the dictionary's content does, which is
what lets the store (`pipelines.search.synonyms_store`) skip publishing an unchanged dictionary.
A row that would break the file or the analyzer is left out and reported with its row id,
rather than failing the whole dictionary: one bad row must not block everybody else's synonyms.
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from connectors.lake.lake import Lake
from connectors.opensearch.text import normalize_text

DEFAULT_LAKE_TABLE = "health__synonymstable"
DEFAULT_ID_COLUMN = "SynID"
DEFAULT_TERM_COLUMNS = ("Base_Term", "Synonym_1", "Synonym_2")
MAX_TERM_CHARS = 200
HEADER_PREFIX = "# lakehouse-cdc synonyms"


class SynonymTableError(Exception):
    """The lake's synonyms table is missing, or lacks the expected columns or types."""


class SynonymRowsError(ValueError):
    """The rows handed to `render_dictionary` cannot be rendered unambiguously."""


@dataclass(frozen=True, slots=True)
class SynonymRow:
    """One row of the synonyms table: its id and its terms as stored (NULLs kept as None)."""

    row_id: int
    terms: tuple[str | None, ...]


@dataclass(frozen=True, slots=True)
class Rejected:
    """A row left out of the dictionary, and why."""

    row_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class Dictionary:
    """A rendered synonym dictionary: the file's text, its SHA-256 (hex), and what was left out."""

    text: str
    sha256: str
    lines: int
    rejected: tuple[Rejected, ...]

    @property
    def body(self) -> bytes:
        """The file's bytes (UTF-8), the exact bytes `sha256` was computed over."""
        return self.text.encode("utf-8")


def read_synonym_rows(
    lake: Lake,
    source: str,
    lake_table: str = DEFAULT_LAKE_TABLE,
    id_column: str = DEFAULT_ID_COLUMN,
    term_columns: Sequence[str] = DEFAULT_TERM_COLUMNS,
) -> list[SynonymRow]:
    """The synonyms table's current rows from the lake, ordered by row id.

    Only the id and term columns are read. Raises `SynonymTableError` when the table has not
    reached the lake yet, or lacks one of the columns, or a column has the wrong type.
    """
    if not term_columns:
        raise SynonymTableError("no term columns given")
    table = lake.current(source).load(lake_table)
    identifier = f"{source}.{lake_table}"
    if table is None:
        raise SynonymTableError(
            f"current-state table {identifier} does not exist (has source {source!r} synced the synonyms table?)"
        )
    wanted = (id_column, *term_columns)
    schema = table.schema().as_arrow()
    missing = [c for c in wanted if c not in schema.names]
    if missing:
        raise SynonymTableError(f"{identifier} has no column(s) {missing}; its columns are {schema.names}")
    id_type = schema.field(id_column).type
    if not pa.types.is_integer(id_type):
        raise SynonymTableError(f"{identifier}.{id_column} is {id_type}, expected an integer row id")
    for name in term_columns:
        term_type = schema.field(name).type
        if not (pa.types.is_string(term_type) or pa.types.is_large_string(term_type)):
            raise SynonymTableError(f"{identifier}.{name} is {term_type}, expected a string column")
    data = table.scan(selected_fields=wanted).to_arrow()
    ids = data[id_column].to_pylist()
    columns = [data[name].to_pylist() for name in term_columns]
    rows = []
    for i, row_id in enumerate(ids):
        if row_id is None:
            # The id is the source table's primary key, so the lake never holds a NULL one.
            raise SynonymTableError(f"{identifier}: a row has a NULL {id_column}")
        rows.append(SynonymRow(int(row_id), tuple(column[i] for column in columns)))
    rows.sort(key=lambda r: r.row_id)
    return rows


def render_dictionary(rows: Iterable[SynonymRow]) -> Dictionary:
    """Render rows as a Solr-format synonyms file; rows that cannot be rendered are rejected.

    The result depends only on the rows' ids and terms, never on their order or on the clock.
    Raises `SynonymRowsError` when two rows share an id (the result would depend on their order).
    """
    ordered = sorted(rows, key=lambda r: r.row_id)
    seen_ids: set[int] = set()
    lines: list[str] = []
    rejected: list[Rejected] = []
    for row in ordered:
        if row.row_id in seen_ids:
            raise SynonymRowsError(f"row id {row.row_id} appears more than once")
        seen_ids.add(row.row_id)
        terms, reason = _row_terms(row)
        if reason is not None:
            rejected.append(Rejected(row.row_id, reason))
        else:
            lines.append(", ".join(terms))
    header = f"{HEADER_PREFIX}, {len(lines)} rows"
    text = "\n".join([header, *lines]) + "\n"
    return Dictionary(
        text=text,
        sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        lines=len(lines),
        rejected=tuple(rejected),
    )


def normalize_term(term: str) -> str:
    """A term as the dictionary stores it: NFC, trimmed, inner whitespace runs as one space, lower case.

    NFC because documents and queries are normalised to NFC too (connectors/opensearch/text.py):
    a term typed with a combining accent would otherwise never match the composed form.

    Lower case because the search analyzers lower-case text before their synonym filter, so only
    lower-case dictionary terms can match what reaches the filter. (OpenSearch also parses the
    rules through the filters before the synonym filter, but storing them canonical means a
    case-only edit in the table does not publish a new dictionary version, and duplicates within a
    row are found regardless of case.) `str.lower` rather than `casefold`: Lucene's lowercase
    filter does not fold, e.g. it keeps "ß".
    """
    return " ".join(normalize_text(term).split()).lower()


def term_problem(term: str) -> str | None:
    """Why a normalised term cannot go into a Solr synonyms line, or None if it can."""
    if "," in term:
        return "contains ',' (the format's term separator)"
    if "=>" in term:
        return "contains '=>' (the format's explicit-mapping arrow)"
    if term.startswith("#"):
        # A line whose first character is '#' is a comment; checked for every term, because any
        # term may be written first.
        return "starts with '#' (a comment marker at the start of a line)"
    if "\\" in term:
        return "contains '\\' (the format's escape character)"
    control = _control_problem(term)
    if control is not None:
        return control
    if len(term) > MAX_TERM_CHARS:
        return f"is {len(term)} characters long (at most {MAX_TERM_CHARS})"
    return None


def _row_terms(row: SynonymRow) -> tuple[list[str], str | None]:
    """The row's distinct normalised terms in column order, or the reason the row is rejected."""
    terms: list[str] = []
    problems: list[str] = []
    for position, raw in enumerate(row.terms, start=1):
        if raw is None:
            continue
        # Trim before checking for control characters: a stray newline or tab at either end is an
        # editing artefact that changes nothing once trimmed; one inside the term is rejected.
        trimmed = raw.strip()
        if not trimmed:
            continue
        term = normalize_term(trimmed)
        # Control characters are looked for before whitespace is collapsed, which would turn an
        # inner newline or tab into a space and hide it.
        problem = _control_problem(trimmed) or term_problem(term)
        if problem is not None:
            problems.append(f"term {position} ({_preview(trimmed)}) {problem}")
        elif term not in terms:
            terms.append(term)
    if problems:
        return terms, "; ".join(problems)
    if len(terms) < 2:
        return terms, f"fewer than two distinct non-empty terms ({len(terms)})"
    return terms, None


def _control_problem(text: str) -> str | None:
    """Names the first control character (newline, tab, NUL, ...): the format is line-based."""
    for ch in text:
        if unicodedata.category(ch) == "Cc":
            return f"contains the control character U+{ord(ch):04X}"
    return None


def _preview(term: str, limit: int = 40) -> str:
    """The term for an error message: quoted, escaped, and cut short when long."""
    return repr(term if len(term) <= limit else term[:limit] + "...")
