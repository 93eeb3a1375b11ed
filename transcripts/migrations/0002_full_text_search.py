"""GIN full-text indexes for the call search, on PostgreSQL only (SQLite scans with LIKE).
The expressions match transcripts.search.ToTsvector exactly, so PostgreSQL uses them."""

from django.db import migrations

INDEXES = {
    "transcript_text_fts": "transcripts_transcript",
    "turn_text_fts": "calls_turn",
}


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, table in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON {table} "
            "USING gin (to_tsvector('english'::regconfig, text))"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    dependencies = [
        ("transcripts", "0001_post_call"),
        ("calls", "0004_recording_and_permissions"),
    ]
    operations = [migrations.RunPython(create, drop)]
