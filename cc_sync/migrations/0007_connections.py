"""Connections become rows: the existing connection becomes the default one (slug ``default``).

Nothing is reconnected: its tokens, lists and status stay as they are. Signups, surge batches and backfill
runs that name no connection keep belonging to the default one.
"""

import django.db.models.deletion
from django.core.management.color import no_style
from django.db import migrations, models

import cc_sync.fields


def name_the_existing_connection(apps, schema_editor):
    Connection = apps.get_model("cc_sync", "Connection")
    rows = list(Connection.objects.using(schema_editor.connection.alias).order_by("pk"))
    for position, row in enumerate(rows):
        row.slug = "default" if position == 0 else f"connection-{row.pk}"
        row.name = row.account_name or "Constant Contact"
        row.save(update_fields=["slug", "name"])
    # The single row was created with an explicit primary key (1), which leaves PostgreSQL's sequence behind:
    # the next connection created would collide with it.
    statements = schema_editor.connection.ops.sequence_reset_sql(no_style(), [Connection])
    with schema_editor.connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("cc_sync", "0006_surge"),
    ]

    operations = [
        migrations.AlterModelOptions(
            name="connection",
            options={
                "ordering": ["pk"],
                "verbose_name": "Constant Contact connection",
                "verbose_name_plural": "Constant Contact connections",
            },
        ),
        migrations.AddField(
            model_name="connection",
            name="name",
            field=models.CharField(default="Constant Contact", max_length=100, verbose_name="name"),
        ),
        migrations.AddField(
            model_name="connection",
            name="slug",
            field=models.SlugField(db_index=False, null=True, verbose_name="slug"),
        ),
        migrations.AddField(
            model_name="connection",
            name="client_id",
            field=models.CharField(blank=True, max_length=100, verbose_name="own application's client id"),
        ),
        migrations.AddField(
            model_name="connection",
            name="client_secret",
            field=cc_sync.fields.EncryptedTextField(
                blank=True, verbose_name="own application's client secret"
            ),
        ),
        migrations.AddField(
            model_name="connection",
            name="site_domain",
            field=models.CharField(
                blank=True,
                db_index=True,
                help_text="Forms on this site (its domain, e.g. shop.example.com) go to this account.",
                max_length=255,
                verbose_name="site domain",
            ),
        ),
        migrations.RunPython(name_the_existing_connection, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="connection",
            name="slug",
            field=models.SlugField(
                help_text="How code and settings name this connection (enqueue_signup(connection=...)).",
                unique=True,
                verbose_name="slug",
            ),
        ),
        migrations.AddField(
            model_name="signup",
            name="connection",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="cc_sync.connection",
                verbose_name="connection",
            ),
        ),
        migrations.AddField(
            model_name="surgebatch",
            name="connection",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="cc_sync.connection",
                verbose_name="connection",
            ),
        ),
        migrations.AddField(
            model_name="backfillrun",
            name="connection",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="+",
                to="cc_sync.connection",
                verbose_name="connection",
            ),
        ),
    ]
