"""The call search document, with a GIN index on PostgreSQL (SQLite searches its text with LIKE)."""

import django.contrib.postgres.search
import django.db.models.deletion
from django.db import migrations, models


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE INDEX IF NOT EXISTS call_search_document "
            "ON transcripts_callsearch USING gin (document)"
        )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS call_search_document")


class Migration(migrations.Migration):

    dependencies = [
        ('calls', '0004_recording_and_permissions'),
        ('transcripts', '0001_post_call'),
    ]

    operations = [
        migrations.CreateModel(
            name='CallSearch',
            fields=[
                ('call', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='search', serialize=False, to='calls.call')),
                ('text', models.TextField()),
                ('document', django.contrib.postgres.search.SearchVectorField(null=True)),
            ],
        ),
        migrations.RunPython(create_index, drop_index),
    ]
