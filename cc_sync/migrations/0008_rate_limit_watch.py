"""``RateLimitState.watch_until``: after CC accepts a probe, reservations re-read the block after their wait."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("cc_sync", "0007_connections"),
    ]

    operations = [
        migrations.AddField(
            model_name="ratelimitstate",
            name="watch_until",
            field=models.FloatField(default=0.0),
        ),
    ]
