"""Forms behind the flash sale admin.

The change form is the dangerous one: a sale sells while staff look at it, so the values the form
was opened with go stale within milliseconds. It therefore never writes its copy of the stock, and
it carries the `version` it was opened at in a hidden field; `sales.services` applies an edit only
if that version is still current. Only staff edits bump it: a purchase or a restock landing while
the form is open does not make the edit stale.
"""

import copy
from datetime import timedelta

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.utils import timezone
from django.utils.functional import cached_property

from sales import services
from sales.exceptions import InvalidSaleChange, VersionConflict
from sales.models import MAX_HOLD_SECONDS, MAX_JOIN_DIFFICULTY, FlashSale

STALE_EDIT_MESSAGE = (
    "This sale changed while you were editing, reload the page and make your change again. Nothing was saved."
)

# The services report refused fields by their API names.
_FORM_FIELD_FOR = {
    "name": "name",
    "startTime": "start_time",
    "endTime": "end_time",
    "originalStock": "original_stock",
    "startNow": "start_time",
    "maxPerBuyer": "max_per_buyer",
    "maxPerPurchase": "max_per_purchase",
    "holdSeconds": "hold_seconds",
    "waitingRoom": "waiting_room",
    "admitPerSecond": "admit_per_second",
    "admissionSeconds": "admission_seconds",
    "queueOpensAt": "queue_opens_at",
    "admissionPaused": "admission_paused",
    "joinDifficulty": "join_difficulty",
}
# Long enough for any sale staff plan, short enough that start + duration stays a valid date.
MAX_SHORTCUT_MINUTES = 366 * 24 * 60


class FlashSaleAddForm(forms.ModelForm):
    original_stock = forms.IntegerField(
        label="Original stock",
        min_value=1,
        max_value=services.MAX_STOCK,
        initial=200,
        error_messages={"min_value": "A sale needs at least one unit."},
        help_text="Units on offer. Current stock starts here.",
    )
    # Shortcuts for the usual "starts in 10 minutes, runs for an hour": they fill start and end.
    starts_in_minutes = forms.IntegerField(
        label="Starts in (minutes)",
        required=False,
        min_value=0,
        max_value=MAX_SHORTCUT_MINUTES,
        help_text="Fills the start: this many minutes from when you save (0: at once). Replaces a start typed above.",
    )
    duration_minutes = forms.IntegerField(
        label="Runs for (minutes)",
        required=False,
        min_value=1,
        max_value=MAX_SHORTCUT_MINUTES,
        help_text="Fills the end: this long after the start. Replaces an end typed above.",
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
    admit_per_second = forms.IntegerField(
        label="Admit per second",
        initial=20,
        required=False,
        min_value=1,
        max_value=100_000,
        help_text="Buyers the waiting room lets through a second; it may change while the sale runs.",
    )
    admission_seconds = forms.IntegerField(
        label="Admission (seconds)",
        initial=120,
        required=False,
        min_value=30,
        max_value=MAX_HOLD_SECONDS,
        help_text="How long an admitted buyer may buy.",
    )
    join_difficulty = forms.IntegerField(
        label="Join difficulty",
        initial=0,
        required=False,
        min_value=0,
        max_value=MAX_JOIN_DIFFICULTY,
        help_text="0: joining the line takes no proof of work. Above 0: the page solves a challenge of this many "
        "key derivations on average before it may join (docs/performance.md “Join challenge” has what it costs).",
    )

    class Meta:
        model = FlashSale
        fields = services.EDITABLE_FIELDS
        help_texts = {
            "waiting_room": "Buyers take places in a line and buy when the sale clock admits them.",
            "queue_opens_at": "UTC. Empty: 15 minutes before the start.",
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
        if "starts_in_minutes" in self.fields:
            # Either a time or its shortcut; clean() says which is missing.
            self.fields["start_time"].required = False
            self.fields["end_time"].required = False

    def _fill_times_from_shortcuts(self, cleaned: dict) -> None:
        starts_in, runs_for = cleaned.get("starts_in_minutes"), cleaned.get("duration_minutes")
        if starts_in is not None:
            cleaned["start_time"] = timezone.now().replace(microsecond=0) + timedelta(minutes=starts_in)
        elif cleaned.get("start_time") is None and "start_time" not in self.errors:
            self.add_error("start_time", "Give a start, or the minutes until it starts below.")
        if runs_for is not None and cleaned.get("start_time") is not None:
            cleaned["end_time"] = cleaned["start_time"] + timedelta(minutes=runs_for)
        elif cleaned.get("end_time") is None and "end_time" not in self.errors and runs_for is None:
            self.add_error("end_time", "Give an end, or how many minutes the sale runs below.")

    def clean_hold_seconds(self):
        # Left empty (or absent from an older form): no hold, as before holds existed.
        return self.cleaned_data.get("hold_seconds") or 0

    def clean_admit_per_second(self):
        # Left empty (or absent from an older form): the model's default.
        value = self.cleaned_data.get("admit_per_second")
        return FlashSale._meta.get_field("admit_per_second").default if value is None else value

    def clean_admission_seconds(self):
        value = self.cleaned_data.get("admission_seconds")
        return FlashSale._meta.get_field("admission_seconds").default if value is None else value

    def clean_join_difficulty(self):
        return self.cleaned_data.get("join_difficulty") or 0

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        if "starts_in_minutes" in self.fields:
            self._fill_times_from_shortcuts(cleaned)
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
    # Hidden until a past start is refused; ticking it is the explicit "start now" (see clean()).
    start_now = forms.BooleanField(required=False, widget=forms.HiddenInput)
    # The add form's shortcuts; a started sale's times are edited as times.
    starts_in_minutes = None  # type: ignore[assignment]
    duration_minutes = None  # type: ignore[assignment]

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
        self.starts_now = False

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
        # "Start now" replaces whatever start was typed: the sale starts when it is saved.
        self.starts_now = bool(cleaned.get("start_now"))
        if self.starts_now:
            self.sale_changes.pop("start_time", None)
            self._show_start_now_box()
        if not self.sale_changes and not self.starts_now:
            # Nothing to write, so nothing can be overwritten: a stale version does not matter.
            return cleaned
        expected_version = cleaned.get("expected_version")
        if expected_version is None:
            raise ValidationError(STALE_EDIT_MESSAGE, code="stale")
        now = timezone.now()
        typed_past_start = (
            self.stored_sale.start_time > now
            and "start_time" in self.sale_changes
            and self.sale_changes["start_time"] <= now
        )
        try:
            services.check_sale_update(
                sale=self.stored_sale,
                expected_version=expected_version,
                changes=self.sale_changes,
                start_now=self.starts_now,
            )
        except VersionConflict:
            raise ValidationError(STALE_EDIT_MESSAGE, code="stale") from None
        except InvalidSaleChange as refused:
            if typed_past_start and "startTime" in refused.details:
                self._offer_start_now()
                return cleaned
            fields = [_FORM_FIELD_FOR[key] for key in refused.details if key in _FORM_FIELD_FOR]
            if not fields:
                raise ValidationError(refused.message, code="refused") from None
            for field in fields:
                self.add_error(field, refused.message)
        return cleaned

    def _offer_start_now(self) -> None:
        """Refuse a start typed in the past, and show the box that starts the sale now, naming it.

        Saving the typed time would launch the sale at once: one typo must not do that, so it takes
        a second, explicit step (the box, which the form hides until then)."""
        name = str(self.stored_sale)
        self._show_start_now_box()
        self.add_error(
            "start_time",
            f"This start is in the past: saving it would start “{name}” at once. To start it now, tick "
            f"“Yes, start “{name}” now” and save again; otherwise give a start in the future.",
        )

    def _show_start_now_box(self) -> None:
        # Also once ticked: a form sent back for another error must not carry the choice unseen.
        name = str(self.stored_sale)
        field = self.fields["start_now"]
        field.widget = forms.CheckboxInput()
        field.label = f"Yes, start “{name}” now"
        field.help_text = "The sale goes live for buyers as soon as you save."
        # Validation already made the bound field, which copied the label and help text.
        bound = self["start_now"]
        bound.label, bound.help_text = field.label, field.help_text

    @cached_property
    def changed_data(self):
        # Django compares raw widget data, which reports untouched times as changed (see above).
        if hasattr(self, "cleaned_data") and not self.errors:
            return [*self.sale_changes, *(["start_time"] if self.starts_now else [])]
        return super().changed_data


class AddUnitsForm(forms.Form):
    units = forms.IntegerField(
        min_value=1,
        max_value=services.MAX_STOCK,
        error_messages={"min_value": "Add at least one unit."},
        help_text="Original and current stock both grow by this many units, safely during a live sale.",
    )
