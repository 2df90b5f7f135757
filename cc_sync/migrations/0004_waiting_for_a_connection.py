# The held status also covers a site that was never connected: its label says so (issue 13).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("cc_sync", "0003_contact_safety"),
    ]

    operations = [
        migrations.AlterField(
            model_name="signup",
            name="status",
            field=models.CharField(
                choices=[
                    ("pending", "Pending"),
                    ("syncing", "Syncing"),
                    ("synced", "Synced"),
                    ("failed", "Failed"),
                    ("waiting_reconnect", "Waiting for a connection"),
                    ("waiting_list", "Waiting for a list"),
                    ("awaiting_confirmation", "Awaiting confirmation"),
                ],
                db_index=True,
                default="pending",
                max_length=30,
                verbose_name="status",
            ),
        ),
    ]
