"""Forms behind the flash sale admin.

The change form is the dangerous one: a sale sells while staff look at it, so the values the form
was opened with go stale within milliseconds. It therefore never writes its copy of the stock, and
it carries the `version` it was opened at in a hidden field; `sales.services` applies an edit only
if that version is still current. Only staff edits bump it: a purchase or a restock landing while
the form is open does not make the edit stale.
"""

import copy

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.utils.functional import cached_property

from sales import services
from sales.exceptions import InvalidSaleChange, VersionConflict
from sales.models import MAX_HOLD_SECONDS, FlashSale

STALE_EDIT_MESSAGE = (
    "This sale changed while you were editing, reload the page and make your change again. Nothing was saved."
)

# The services report refused fields by their API names.
_FORM_FIELD_FOR = {
    "name": "name",
    "startTime": "start_time",
    "endTime": "end_time",
    "originalStock": "original_stock",
    "maxPerBuyer": "max_per_buyer",
    "maxPerPurchase": "max_per_purchase",
    "holdSeconds": "hold_seconds",
}


class FlashSaleAddForm(forms.ModelForm):
    original_stock = forms.IntegerField(
        label="Original stock",
        min_value=1,
        initial=200,
        error_messages={"min_value": "A sale needs at least one unit."},
        help_text="Units on offer. Current stock starts here.",
    )
    max_per_buyer = forms.IntegerField(
        label="Most units per buyer", required=False, min_value=1, error_messages={"min_value": "At least 1."}
    )
    max_per_purchase = forms.IntegerField(
        label="Most units per purchase", required=False, min_value=1, error_messages={"min_value": "At least 1."}
    )
    hold_seconds = forms.IntegerField(
        label="Hold (seconds)", initial=0, required=False, min_value=0, max_value=MAX_HOLD_SECONDS
    )

    class Meta:
        model = FlashSale
        fields = (
            "name",
            "start_time",
            "end_time",
            "original_stock",
            "max_per_buyer",
            "max_per_purchase",
            "hold_seconds",
        )
        help_texts = {
            "start_time": "UTC.",
            "end_time": "UTC. Must be after the start.",
            "hold_seconds": "0: a purchase is final at once. Above 0: purchases are held this long, to be "
            "confirmed (paid) or released; unconfirmed holds come back to the stock.",
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Read per form so the help follows the settings in force.
        self.fields[
            "max_per_buyer"
        ].help_text = f"Empty: the setting MAX_UNITS_PER_USER ({settings.MAX_UNITS_PER_USER})."
        self.fields["max_per_purchase"].validators.append(MaxValueValidator(settings.MAX_PURCHASE_QUANTITY))
        self.fields[
            "max_per_purchase"
        ].help_text = (
            f"Empty: the setting MAX_PURCHASE_QUANTITY ({settings.MAX_PURCHASE_QUANTITY}), also the most it can be."
        )

    def clean_hold_seconds(self):
        # Left empty (or absent from an older form): no hold, as before holds existed.
        return self.cleaned_data.get("hold_seconds") or 0

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        start, end = cleaned.get("start_time"), cleaned.get("end_time")
        if start and end:
            try:
                services.check_window(start, end)
            except InvalidSaleChange as refused:
                self.add_error("end_time", refused.message)
        return cleaned


class FlashSaleChangeForm(FlashSaleAddForm):
    """Edits name, window and original stock of an existing sale, guarded by its version.

    After `is_valid()`, `sale_changes` holds the fields that really differ from the sale as read
    when the form was submitted; that dict, not the form's copy of the sale, is what gets saved.
    """

    expected_version = forms.IntegerField(widget=forms.HiddenInput, required=False, min_value=1)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # ModelForm validation overwrites self.instance with the submitted values; keep the sale as
        # it was read, to compare against and to validate the edit with.
        self.stored_sale = copy.copy(self.instance)
        self.fields["expected_version"].initial = self.instance.version
        self.fields["original_stock"].help_text = (
            "Changing it moves current stock by the same amount, in the database. It cannot go below "
            "the units already sold. To restock a live sale, use “Add units”: it needs no reload."
        )
        self.sale_changes: dict = {}

    def clean_start_time(self):
        return self._keep_stored_precision("start_time")

    def clean_end_time(self):
        return self._keep_stored_precision("end_time")

    def _keep_stored_precision(self, field: str):
        # The admin's time widget shows whole seconds. A time the user left alone comes back
        # without the stored microseconds; it is not an edit (and for a live sale it would read as
        # moving the start or shortening the sale).
        value = self.cleaned_data.get(field)
        stored = getattr(self.stored_sale, field)
        if value is not None and stored is not None and value == stored.replace(microsecond=0):
            return stored
        return value

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        self.sale_changes = {
            field: cleaned[field]
            for field in services.EDITABLE_FIELDS
            if field in cleaned and cleaned[field] != getattr(self.stored_sale, field)
        }
        if not self.sale_changes:
            # Nothing to write, so nothing can be overwritten: a stale version does not matter.
            return cleaned
        expected_version = cleaned.get("expected_version")
        if expected_version is None:
            raise ValidationError(STALE_EDIT_MESSAGE, code="stale")
        try:
            services.check_sale_update(
                sale=self.stored_sale, expected_version=expected_version, changes=self.sale_changes
            )
        except VersionConflict:
            raise ValidationError(STALE_EDIT_MESSAGE, code="stale") from None
        except InvalidSaleChange as refused:
            fields = [_FORM_FIELD_FOR[key] for key in refused.details if key in _FORM_FIELD_FOR]
            if not fields:
                raise ValidationError(refused.message, code="refused") from None
            for field in fields:
                self.add_error(field, refused.message)
        return cleaned

    @cached_property
    def changed_data(self):
        # Django compares raw widget data, which reports untouched times as changed (see above).
        if hasattr(self, "cleaned_data") and not self.errors:
            return list(self.sale_changes)
        return super().changed_data


class AddUnitsForm(forms.Form):
    units = forms.IntegerField(
        min_value=1,
        max_value=1_000_000,
        error_messages={"min_value": "Add at least one unit."},
        help_text="Original and current stock both grow by this many units, safely during a live sale.",
    )
