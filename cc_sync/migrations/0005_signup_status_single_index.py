# Signup.status loses its own index: the composite index cc_sync_signup_due (status, next_attempt_at)
# starts with status and serves lookups by status alone (issue 14).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("cc_sync", "0004_waiting_for_a_connection"),
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
                default="pending",
                max_length=30,
                verbose_name="status",
            ),
        ),
    ]
