"""The synonym dictionary: rendering and validation, the versioned S3 store, and reading the rows
from a lake filled by the real MySQL CDC runner.

The store runs against the moto server of the local stack; the rows come from a MariaDB table
shaped like the world's `SynonymsTable`, synced into a local lake with `sync_source`.
"""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from connectors.lake.config import LakeConfig
from connectors.lake.lake import Lake
from connectors.mysql.config import MySQLSourceConfig
from pipelines.capture.runner import sync_source
from pipelines.capture.sources import open_source
from pipelines.search.synonyms import (
    MAX_TERM_CHARS,
    Dictionary,
    SynonymRow,
    SynonymRowsError,
    SynonymTableError,
    read_synonym_rows,
    render_dictionary,
)
from pipelines.search.synonyms_store import (
    PublishConflictError,
    StoredDictionary,
    SynonymStore,
    SynonymStoreError,
)

SCENARIO = [
    SynonymRow(1, ("danish", "croissant", "pastry")),
    SynonymRow(2, ("tennis shoe", "sneaker", None)),
    SynonymRow(3, ("child's doctor", "pediatrician", None)),
]


def _lines(d: Dictionary) -> list[str]:
    return d.text.splitlines()[1:]


# -- rendering -----------------------------------------------------------------------------------


def test_renders_solr_lines_sorted_by_row_id_with_a_header() -> None:
    d = render_dictionary(list(reversed(SCENARIO)))
    assert d.text == (
        "# lakehouse-cdc synonyms, 3 rows\n"
        "danish, croissant, pastry\n"
        "tennis shoe, sneaker\n"
        "child's doctor, pediatrician\n"
    )
    assert d.lines == 3
    assert d.rejected == ()
    assert d.sha256 == hashlib.sha256(d.text.encode("utf-8")).hexdigest()
    assert d.body == d.text.encode("utf-8")


def test_terms_are_trimmed_collapsed_and_lower_cased() -> None:
    d = render_dictionary(
        [
            SynonymRow(7, ("  Ice    Cream ", "GELATO", "Crème\u00a0\u3000Brûlée")),
            # A newline or carriage return at either end is trimmed like any whitespace.
            SynonymRow(8, ("Pastry\r\n", "\tDanish", None)),
        ]
    )
    assert _lines(d) == ["ice cream, gelato, crème brûlée", "pastry, danish"]


def test_duplicate_terms_within_a_row_are_dropped_keeping_the_first() -> None:
    d = render_dictionary(
        [
            SynonymRow(1, ("Danish", "croissant", " DANISH ")),
            SynonymRow(2, ("ice  cream", "Ice Cream", "gelato")),
        ]
    )
    assert _lines(d) == ["danish, croissant", "ice cream, gelato"]


def test_null_and_empty_terms_are_skipped() -> None:
    d = render_dictionary(
        [
            SynonymRow(1, ("hightop", None, "sneaker")),
            SynonymRow(2, ("", "   ", "lonely")),
            SynonymRow(3, ("alone", None, None)),
            SynonymRow(4, (None, None, None)),
            SynonymRow(5, ("same", "SAME", None)),
        ]
    )
    assert _lines(d) == ["hightop, sneaker"]
    assert [r.row_id for r in d.rejected] == [2, 3, 4, 5]
    assert all("fewer than two distinct non-empty terms" in r.reason for r in d.rejected)
    assert d.text.startswith("# lakehouse-cdc synonyms, 1 rows\n")


@pytest.mark.parametrize(
    ("term", "reason"),
    [
        ("bread, roll", "contains ','"),
        ("bun => roll", "contains '=>'"),
        ("#hashtag", "starts with '#'"),
        ("back\\slash", "contains '\\'"),
        ("two\nlines", "control character U+000A"),
        ("tab\tinside", "control character U+0009"),
        ("bell\x07", "control character U+0007"),
        ("nul\x00byte", "control character U+0000"),
        ("x" * (MAX_TERM_CHARS + 1), f"is {MAX_TERM_CHARS + 1} characters long"),
    ],
)
def test_a_term_that_breaks_the_format_rejects_its_row(term: str, reason: str) -> None:
    d = render_dictionary([SynonymRow(10, ("fine", "also fine", None)), SynonymRow(11, ("base", term, None))])
    assert _lines(d) == ["fine, also fine"]
    assert len(d.rejected) == 1
    assert d.rejected[0].row_id == 11
    assert "term 2" in d.rejected[0].reason
    assert reason in d.rejected[0].reason


def test_characters_that_are_harmless_in_the_middle_of_a_term_are_kept() -> None:
    long_term = "y" * MAX_TERM_CHARS
    d = render_dictionary(
        [
            SynonymRow(1, ("c#", "csharp", "a=b")),
            SynonymRow(2, ("x > y", "bigger", long_term)),
            # Whitespace collapsed before the length check: 200 characters once collapsed.
            SynonymRow(3, ("z" * 100 + "      " + "z" * 99, "short", None)),
        ]
    )
    assert d.rejected == ()
    assert _lines(d) == [
        "c#, csharp, a=b",
        f"x > y, bigger, {long_term}",
        "z" * 100 + " " + "z" * 99 + ", short",
    ]


def test_every_problem_of_a_row_is_reported() -> None:
    d = render_dictionary([SynonymRow(5, ("ok", "a,b", "#c"))])
    assert d.lines == 0
    (rejected,) = d.rejected
    assert rejected.row_id == 5
    assert "term 2 ('a,b') contains ','" in rejected.reason
    assert "term 3 ('#c') starts with '#'" in rejected.reason


def test_rejected_rows_are_listed_by_row_id() -> None:
    d = render_dictionary(
        [
            SynonymRow(30, ("a", "b,c", None)),
            SynonymRow(4, ("only", None, None)),
            SynonymRow(12, ("fine", "good", None)),
        ]
    )
    assert [r.row_id for r in d.rejected] == [4, 30]
    assert _lines(d) == ["fine, good"]


def test_hash_is_stable_across_runs_and_row_order_and_case_only_edits() -> None:
    rows = [SynonymRow(i, (f"term {i}", f"other {i}", None if i % 3 else f"third {i}")) for i in range(50)]
    first = render_dictionary(rows)
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    assert render_dictionary(shuffled) == first
    assert render_dictionary(rows).sha256 == first.sha256
    # A case-only or spacing-only edit renders the same dictionary: nothing to publish.
    edited = [SynonymRow(0, ("TERM   0", " Other 0", "Third 0")), *rows[1:]]
    assert render_dictionary(edited).sha256 == first.sha256


def test_a_deleted_or_changed_row_changes_the_hash() -> None:
    base = render_dictionary(SCENARIO)
    assert render_dictionary(SCENARIO[:2]).sha256 != base.sha256
    changed = [SCENARIO[0], SynonymRow(2, ("tennis shoe", "trainer", None)), SCENARIO[2]]
    assert render_dictionary(changed).sha256 != base.sha256


def test_duplicate_row_ids_are_refused() -> None:
    with pytest.raises(SynonymRowsError, match="row id 2"):
        render_dictionary([SynonymRow(2, ("a", "b", None)), SynonymRow(2, ("c", "d", None))])


def test_an_empty_table_renders_a_header_only_dictionary() -> None:
    d = render_dictionary([])
    assert d.text == "# lakehouse-cdc synonyms, 0 rows\n"
    assert d.lines == 0


# -- the S3 store --------------------------------------------------------------------------------


@pytest.fixture
def s3(aws_client_kwargs: dict[str, str]) -> Any:
    return boto3.client("s3", **aws_client_kwargs)


@pytest.fixture
def store(s3: Any) -> SynonymStore:
    store = SynonymStore(s3, f"synonyms-{uuid.uuid4().hex[:10]}", "analyzers/synonyms.txt")
    store.ensure_bucket()
    return store


def test_ensure_bucket_creates_it_with_versioning_and_is_idempotent(s3: Any) -> None:
    bucket = f"synonyms-{uuid.uuid4().hex[:10]}"
    store = SynonymStore(s3, bucket, "synonyms.txt")
    store.ensure_bucket()
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    store.ensure_bucket()
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert store.current() is None
    assert store.history() == []


def test_ensure_bucket_turns_versioning_on_for_an_existing_bucket(s3: Any) -> None:
    bucket = f"synonyms-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    assert "Status" not in s3.get_bucket_versioning(Bucket=bucket)
    SynonymStore(s3, bucket, "synonyms.txt").ensure_bucket()
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"


def test_first_publish_creates_a_version_with_hash_metadata(store: SynonymStore, s3: Any) -> None:
    d = render_dictionary(SCENARIO)
    stored = store.publish(d)
    assert stored.changed
    assert (stored.bucket, stored.key, stored.sha256, stored.rows) == (store.bucket, store.key, d.sha256, 3)
    assert stored.version_id and stored.version_id != "null"
    head = s3.head_object(Bucket=store.bucket, Key=store.key)
    assert head["Metadata"] == {"sha256": d.sha256, "rows": "3"}
    assert head["ContentType"].startswith("text/plain")
    assert head["VersionId"] == stored.version_id
    assert store.read_text() == d.text
    current = store.current()
    assert current is not None
    assert (current.version_id, current.sha256, current.size, current.changed) == (
        stored.version_id,
        d.sha256,
        len(d.body),
        False,
    )
    assert [v.version_id for v in store.history()] == [stored.version_id]


def test_same_content_publishes_nothing(store: SynonymStore) -> None:
    first = store.publish(render_dictionary(SCENARIO))
    again = store.publish(render_dictionary(list(reversed(SCENARIO))))
    assert not again.changed
    assert again.version_id == first.version_id
    assert again.sha256 == first.sha256
    assert len(store.history()) == 1


def test_changed_content_makes_a_new_version_and_keeps_the_old(store: SynonymStore) -> None:
    old = render_dictionary(SCENARIO)
    first = store.publish(old)
    # Deleting a row from the table: a different hash, so a new version.
    new = render_dictionary(SCENARIO[:2])
    assert new.sha256 != old.sha256
    second = store.publish(new)
    assert second.changed
    assert second.version_id != first.version_id
    history = store.history()
    assert [v.version_id for v in history] == [second.version_id, first.version_id]
    assert [v.is_latest for v in history] == [True, False]
    assert [v.size for v in history] == [len(new.body), len(old.body)]
    assert store.read_text() == new.text
    assert store.read_text(first.version_id) == old.text
    current = store.current()
    assert current is not None and current.sha256 == new.sha256 and current.rows == 2


def test_history_ignores_other_keys_sharing_the_prefix(store: SynonymStore, s3: Any) -> None:
    s3.put_object(Bucket=store.bucket, Key=store.key + ".bak", Body=b"x")
    stored = store.publish(render_dictionary(SCENARIO))
    assert [v.version_id for v in store.history()] == [stored.version_id]


def test_an_object_without_hash_metadata_is_replaced(store: SynonymStore, s3: Any) -> None:
    d = render_dictionary(SCENARIO)
    s3.put_object(Bucket=store.bucket, Key=store.key, Body=d.body)  # same bytes, put by hand
    current = store.current()
    assert current is not None and current.sha256 is None
    stored = store.publish(d)
    assert stored.changed
    assert len(store.history()) == 2


def test_publish_refuses_an_unversioned_bucket(s3: Any) -> None:
    bucket = f"synonyms-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    store = SynonymStore(s3, bucket, "synonyms.txt")
    with pytest.raises(SynonymStoreError, match=f"bucket {bucket} has versioning never enabled"):
        store.publish(render_dictionary(SCENARIO))
    assert store.current() is None


def test_errors_name_the_bucket_and_key_and_no_credentials(s3: Any) -> None:
    bucket = f"missing-{uuid.uuid4().hex[:10]}"
    store = SynonymStore(s3, bucket, "synonyms.txt")
    with pytest.raises(SynonymStoreError) as publish_error:
        store.publish(render_dictionary(SCENARIO))
    with pytest.raises(SynonymStoreError) as history_error:
        store.history()
    assert bucket in str(publish_error.value)
    assert f"s3://{bucket}/synonyms.txt" in str(history_error.value)
    for e in (publish_error.value, history_error.value):
        assert "testing" not in str(e)  # the moto access and secret keys


class _StaleStore(SynonymStore):
    """A publisher that read the store before another publisher wrote (its first `current()`
    answers what it saw then)."""

    def __init__(self, s3: Any, bucket: str, key: str, seen: StoredDictionary) -> None:
        super().__init__(s3, bucket, key)
        self._seen: Iterator[StoredDictionary] = iter([seen])

    def current(self) -> StoredDictionary | None:
        return next(self._seen, None) or super().current()


def test_a_racing_publisher_does_not_overwrite_a_newer_dictionary(store: SynonymStore, s3: Any) -> None:
    seen = store.publish(render_dictionary(SCENARIO))
    winner = store.publish(render_dictionary(SCENARIO[:2]))
    late = _StaleStore(s3, store.bucket, store.key, seen)
    with pytest.raises(PublishConflictError, match=store.key):
        late.publish(render_dictionary(SCENARIO[:1]))
    assert [v.version_id for v in store.history()] == [winner.version_id, seen.version_id]
    # The race is harmless when the other publisher stored the very same dictionary.
    same = _StaleStore(s3, store.bucket, store.key, seen)
    result = same.publish(render_dictionary(SCENARIO[:2]))
    assert not result.changed and result.version_id == winner.version_id
    assert len(store.history()) == 2


# -- rows from the lake, through the real MySQL CDC runner ---------------------------------------


class SynonymWorld:
    """A MariaDB `SynonymsTable` like the world's, a fresh local lake, and the runner between them."""

    def __init__(self, db: Any, lake_root: Path) -> None:
        self.db = db
        self.conn = db.admin_connect()
        self.config = MySQLSourceConfig(
            name="syn",
            host=db.host,
            port=db.port,
            user=db.cdc_user,
            password=db.cdc_password,
            database=db.name,
            tables=("SynonymsTable",),
            server_id=random.randint(10_000, 2**31),
        )
        self.lake = Lake(LakeConfig(root=str(lake_root)))
        self.lake_table = f"{db.name}__synonymstable".lower()
        self.sql(
            """CREATE TABLE SynonymsTable (
                SynID      INT AUTO_INCREMENT PRIMARY KEY,
                Base_Term  VARCHAR(255) NOT NULL,
                Synonym_1  VARCHAR(255) NULL,
                Synonym_2  VARCHAR(255) NULL
            ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"""
        )

    def sql(self, statement: str, params: Any = None, many: bool = False) -> None:
        with self.conn.cursor() as cur:
            if many:
                cur.executemany(statement, params)
            else:
                cur.execute(statement, params)
        self.conn.commit()

    def sync(self) -> None:
        source = open_source(self.config)
        try:
            sync_source(self.lake, source)
        finally:
            source.close()

    def rows(self) -> list[SynonymRow]:
        return read_synonym_rows(self.lake, self.config.name, lake_table=self.lake_table)


INSERT = "INSERT INTO SynonymsTable (Base_Term, Synonym_1, Synonym_2) VALUES (%s, %s, %s)"


@pytest.fixture
def synonym_world(mysql_db: Any, tmp_path: Path) -> SynonymWorld:
    return SynonymWorld(mysql_db, tmp_path / "lake")


def test_rows_follow_the_source_table_through_cdc_into_a_new_version(
    synonym_world: SynonymWorld, store: SynonymStore
) -> None:
    w = synonym_world
    w.sql(
        INSERT,
        [("danish", "croissant", "pastry"), ("Tennis Shoe", "hightop", None), ("Crème brûlée", "flan", None)],
        many=True,
    )
    w.sync()  # the initial snapshot
    assert w.rows() == [
        SynonymRow(1, ("danish", "croissant", "pastry")),
        SynonymRow(2, ("Tennis Shoe", "hightop", None)),
        SynonymRow(3, ("Crème brûlée", "flan", None)),
    ]
    first = store.publish(render_dictionary(w.rows()))
    assert first.changed

    # Changes stream from the binlog: an insert, an update to NULL, a delete, a bad row.
    w.sql(INSERT, ("gelato", "ice cream", "sorbet"))
    w.sql("UPDATE SynonymsTable SET Synonym_2 = NULL WHERE SynID = 1")
    w.sql("DELETE FROM SynonymsTable WHERE SynID = 3")
    w.sql(INSERT, ("lonely", None, None))
    w.sync()
    rows = w.rows()
    assert rows == [
        SynonymRow(1, ("danish", "croissant", None)),
        SynonymRow(2, ("Tennis Shoe", "hightop", None)),
        SynonymRow(4, ("gelato", "ice cream", "sorbet")),
        SynonymRow(5, ("lonely", None, None)),
    ]
    d = render_dictionary(rows)
    assert _lines(d) == ["danish, croissant", "tennis shoe, hightop", "gelato, ice cream, sorbet"]
    assert [r.row_id for r in d.rejected] == [5]
    second = store.publish(d)
    assert second.changed and second.version_id != first.version_id
    assert "crème brûlée" not in store.read_text()

    # A sync that brings nothing new renders the same dictionary: no new version.
    w.sync()
    assert not store.publish(render_dictionary(w.rows())).changed
    assert len(store.history()) == 2


def test_read_errors_name_the_table_and_columns(synonym_world: SynonymWorld) -> None:
    w = synonym_world
    with pytest.raises(SynonymTableError, match=f"syn.{w.lake_table} does not exist"):
        w.rows()  # nothing synced yet
    w.sql(INSERT, ("danish", "croissant", None))
    w.sync()
    with pytest.raises(SynonymTableError, match=r"has no column\(s\) \['Synonym_3'\]"):
        read_synonym_rows(w.lake, "syn", w.lake_table, term_columns=("Base_Term", "Synonym_3"))
    with pytest.raises(SynonymTableError, match="Base_Term is .*expected an integer"):
        read_synonym_rows(w.lake, "syn", w.lake_table, id_column="Base_Term")
    with pytest.raises(SynonymTableError, match="SynID is .*expected a string"):
        read_synonym_rows(w.lake, "syn", w.lake_table, id_column="SynID", term_columns=("SynID",))


def test_publish_after_the_object_was_deleted_makes_a_new_version(store: SynonymStore, s3: Any) -> None:
    first = store.publish(render_dictionary(SCENARIO))
    s3.delete_object(Bucket=store.bucket, Key=store.key)  # leaves a delete marker as latest
    assert store.current() is None
    again = store.publish(render_dictionary(SCENARIO))
    assert again.changed and again.version_id != first.version_id
    assert [v.version_id for v in store.history()] == [again.version_id, first.version_id]
