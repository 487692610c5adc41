"""A backup is logical: the embedded SQLite vault restores into PostgreSQL, which is also
how a small deployment moves to production."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Column, DateTime, Integer, LargeBinary, String

from tests.backup.support import fill, open_vault, run_cli, table_contents, vault_settings
from vault.backup import codec
from vault.migrations import upgrade
from vault.models import StoredBlobChunk

NOT_COPIED = frozenset({"alembic_version", StoredBlobChunk.__tablename__})


def test_an_embedded_sqlite_vault_restores_into_postgresql(tmp_path: Path, fresh_database):
    archive = tmp_path / "vault.vbk"
    (tmp_path / "embedded").mkdir()
    sqlite_url = f"sqlite:///{tmp_path / 'embedded' / 'vault.sqlite3'}"
    upgrade(sqlite_url)
    source = vault_settings(sqlite_url, tmp_path / "embedded")
    with open_vault(source) as vault:
        documents = fill(vault)
    made = run_cli(source, "backup", "create", str(archive))
    assert made.exit_code == 0, made.output
    expected = table_contents(sqlite_url, NOT_COPIED)

    with fresh_database(migrate=False) as target_url:
        target = source.model_copy(update={"database_url": target_url})
        restored = run_cli(target, "restore", "data", str(archive))
        assert restored.exit_code == 0, restored.output
        assert "audit log verified" in restored.output
        assert table_contents(target_url, NOT_COPIED) == expected
        with open_vault(target) as vault:
            for binary_id, (ins_value, content) in documents.items():
                if content:
                    assert vault.download(binary_id, ins_value) == content


instants = st.datetimes(
    min_value=dt.datetime(1900, 1, 1),
    max_value=dt.datetime(2200, 1, 1),
    timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=2)), None]),
)


@given(value=instants, data=st.binary(max_size=64), text=st.text(max_size=20))
def test_values_survive_encoding_and_instants_become_utc(value, data, text):
    when = Column("when", DateTime(timezone=True))
    blob = Column("blob", LargeBinary)
    name = Column("name", String(20))
    number = Column("number", Integer)

    decoded = codec.decode_value(when, codec.encode_value(value))
    naive_means_utc = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
    assert decoded == naive_means_utc
    assert decoded.utcoffset() == dt.timedelta(0)
    assert codec.decode_value(blob, codec.encode_value(data)) == data
    assert codec.decode_value(name, codec.encode_value(text)) == text
    assert codec.decode_value(number, codec.encode_value(7)) == 7
