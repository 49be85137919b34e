"""Lines drawn before joins numbered themselves (sales.queue) get the sequence a join takes its
position from, starting after the line's last position."""

from django.db import migrations
from django.db.models import Max


def start_sequences(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    FlashSale = apps.get_model("sales", "FlashSale")
    QueuePlace = apps.get_model("sales", "QueuePlace")
    quote = schema_editor.connection.ops.quote_name
    for sale_id in FlashSale.objects.filter(waiting_room=True).exclude(queue_drawn_at=None).values_list("pk", flat=True):
        last = QueuePlace.objects.filter(sale_id=sale_id).aggregate(last=Max("position"))["last"] or 0
        schema_editor.execute(
            f"CREATE SEQUENCE IF NOT EXISTS {quote(f'flashsale_queue_positions_{int(sale_id)}')} START WITH {last + 1}"
        )


class Migration(migrations.Migration):
    dependencies = [("sales", "0009_purchase_function_v4")]

    operations = [migrations.RunPython(start_sequences, migrations.RunPython.noop)]
