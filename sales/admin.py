"""The Django admin for running flash sales: safe to use while a sale sells thousands of units a second.

Every write goes through `sales.services`, never through `ModelAdmin.save_model`'s `obj.save()`:
the admin's copy of a sale is stale as soon as a purchase lands, and saving it would overwrite the
stock. Edits are version-checked (see `admin_forms`); restocking, ending, pausing and resuming a
sale are explicit actions that change the database with F() updates and need no version.
"""

from datetime import timedelta

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.options import IncorrectLookupParameters
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, F, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import formats, timezone
from django.utils.html import format_html
from django.utils.translation import ngettext

from live import pages
from sales import history, queue, selectors, services
from sales.admin_csv import purchases_csv_response
from sales.admin_forms import STALE_EDIT_MESSAGE, AddUnitsForm, FlashSaleAddForm, FlashSaleChangeForm
from sales.exceptions import SalesError, VersionConflict
from sales.models import FlashSale, Purchase, SaleStatus

STATUS_COLOURS = {
    SaleStatus.PENDING: "#8a6d00",
    SaleStatus.ACTIVE: "#1e7e34",
    SaleStatus.COMPLETED: "#5a6268",
}
NEWEST_PURCHASES_SHOWN = 20
# A waiting room's purchases per second are counted over this much of the recent past.
PURCHASE_RATE_WINDOW = timedelta(seconds=10)


def _list_time(moment) -> str:
    """The admin's one date format (flashsale/formats), allowed to wrap only between the date and the
    time: seven columns fit beside the admin's side bars at 1280 px that way."""
    date, _, time = formats.date_format(timezone.localtime(moment), "DATETIME_FORMAT").partition(" ")
    return format_html('<span class="nowrap">{}</span> <span class="nowrap">{}</span>', date, time)


def _plain_time(moment) -> str:
    return formats.date_format(timezone.localtime(moment), "DATETIME_FORMAT")


def _duration(span) -> str:
    minutes = int(span.total_seconds() // 60)
    return ngettext("%(count)d minute", "%(count)d minutes", minutes) % {"count": minutes}


def _purchase_time(moment) -> str:
    """When a purchase was made, to the second: purchases of one minute are told apart by it."""
    return formats.date_format(timezone.localtime(moment), "Y-m-d H:i:s T")


def _line_figures(sale) -> dict:
    """A waiting room's line as staff watch it (the change page and its live JSON)."""
    line = queue.line_summary(sale)
    now = timezone.now()
    rate = selectors.purchases_per_second(sale.pk, over=PURCHASE_RATE_WINDOW, moment=now)
    if sale.end_time <= now or sale.current_stock == 0:
        admission = "closed"
    elif sale.admission_paused:
        admission = "admission paused"
    else:
        admission = f"admitting {sale.admit_per_second}/s"
    return {
        "queueLength": line.queue_length,
        "admittedThrough": line.admitted_through,
        "admittedNotBought": line.admitted_not_bought,
        "purchasesPerSecond": f"{rate:.1f}",
        "admitPerSecond": sale.admit_per_second,
        "admissionPaused": sale.admission_paused,
        "admission": admission,
    }


def _purchases_text(count: int) -> str:
    return ngettext("%(count)d purchase", "%(count)d purchases", count) % {"count": count}


def _units(count: int) -> str:
    return ngettext("%(count)d unit", "%(count)d units", count) % {"count": count}


class StaffRunsSales:
    """Any active staff member runs sales: the same rule as the API's staff endpoints (IsAdminUser),
    with no per-model permission grants to manage."""

    def _is_staff(self, request) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_module_permission(self, request):
        return self._is_staff(request)

    def has_view_permission(self, request, obj=None):
        return self._is_staff(request)

    def has_add_permission(self, request, *args):
        return self._is_staff(request)

    def has_change_permission(self, request, obj=None):
        return self._is_staff(request)

    def has_delete_permission(self, request, obj=None):
        return self._is_staff(request)


class ReadOnly:
    """Purchases are a record: rows are only ever inserted by `sales.purchase.purchase`."""

    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class SaleStatusFilter(admin.SimpleListFilter):
    """Status is derived from the clock and the stock, so it is filtered with the same querysets
    that decide it everywhere else, evaluated at the moment of the request."""

    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return SaleStatus.choices

    def queryset(self, request, queryset):
        now = timezone.now()
        match self.value():
            case SaleStatus.PENDING:
                return queryset.pending(now)
            case SaleStatus.ACTIVE:
                return queryset.active(now)
            case SaleStatus.COMPLETED:
                return queryset.completed(now)
        return queryset


class _EditRefused(Exception):
    """A service refused the write in `save_model`, after the form had validated (a purchase landed
    in between). Raised through the admin's transaction so that nothing of the save is kept."""

    def __init__(self, error: SalesError):
        super().__init__(error.message)
        self.error = error


class NewestPurchasesFormSet(BaseInlineFormSet):
    """A read-only window onto the newest purchases, not all of them (a sale can have millions; the
    full list is the Purchase admin, filtered by sale).

    It is never bound to the submitted sale form: it has nothing to save, and by the time the form
    comes back the purchases it showed may have left the window (new ones keep arriving). So it
    always shows the window as it is now, and always validates.
    """

    def __init__(self, data=None, files=None, *args, **kwargs):
        super().__init__(None, None, *args, **kwargs)

    def get_queryset(self):
        if not hasattr(self, "_newest"):
            self._newest = super().get_queryset()[:NEWEST_PURCHASES_SHOWN]
        return self._newest

    def is_valid(self):
        return True

    def save(self, commit=True):
        self.new_objects, self.changed_objects, self.deleted_objects = [], [], []
        return []


class PurchaseInline(ReadOnly, StaffRunsSales, admin.TabularInline):
    model = Purchase
    formset = NewestPurchasesFormSet
    # A read-only table that says "None yet." when empty and that admin_live_stock.js refills live.
    template = "admin/sales/flashsale/newest_purchases.html"
    fields = ("purchase", "bought_at", "buyer", "quantity", "status")
    readonly_fields = fields
    ordering = ("-created_at", "-id")
    extra = 0
    can_delete = False
    verbose_name_plural = f"Newest purchases (up to {NEWEST_PURCHASES_SHOWN})"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user")

    @admin.display(description="purchase")
    def purchase(self, purchase):
        url = reverse("admin:sales_purchase_change", args=[quote(purchase.pk)])
        return format_html('<a href="{}">#{}</a>', url, purchase.pk)

    @admin.display(description="buyer")
    def buyer(self, purchase):
        return format_html("{} <small>({})</small>", purchase.user.email, purchase.user.name)

    @admin.display(description="bought at")
    def bought_at(self, purchase):
        return _purchase_time(purchase.created_at)


@admin.register(FlashSale)
class FlashSaleAdmin(StaffRunsSales, admin.ModelAdmin):
    form = FlashSaleChangeForm
    add_form = FlashSaleAddForm
    list_display = ("name", "starts", "ends", "status_badge", "stock_bar", "units_sold", "purchases", "buyer_page")
    list_display_links = ("name",)
    list_filter = (SaleStatusFilter,)
    search_fields = ("name",)
    date_hierarchy = "start_time"
    ordering = ("-start_time", "-id")
    list_per_page = 50
    actions = ["end_now", "clone_selected", "pause_now", "resume_now"]
    inlines = [PurchaseInline]
    readonly_fields = (
        "status_badge",
        "stock_summary",
        "purchases_link",
        "version",
        "paused",
        "created_at",
        "waiting_room_summary",
    )
    add_fieldsets = (
        (None, {"fields": ("name", "start_time", "end_time", "original_stock")}),
        (
            "Or set the times in minutes",
            {
                "fields": ("starts_in_minutes", "duration_minutes"),
                "description": "Leave start or end empty above and say when it starts and how long it runs.",
            },
        ),
        ("Limits", {"fields": ("max_per_buyer", "max_per_purchase", "hold_seconds")}),
        ("Waiting room", {"fields": services.WAITING_ROOM_FIELDS}),
    )
    change_fieldsets = (
        (None, {"fields": ("name", "start_time", "end_time", "expected_version", "start_now")}),
        ("Stock", {"fields": ("original_stock", "stock_summary", "purchases_link")}),
        ("Limits", {"fields": ("max_per_buyer", "max_per_purchase", "hold_seconds")}),
        ("Waiting room", {"fields": ("waiting_room_summary", *services.WAITING_ROOM_FIELDS)}),
        ("State", {"fields": ("status_badge", "paused", "version", "created_at")}),
    )

    class Media:
        # Files, not inline code: a Content-Security-Policy without 'unsafe-inline' keeps them working.
        css = {"all": ["sales/admin.css"]}
        js = ["live/socket.js", "sales/admin_live_stock.js"]

    # --- queries ---------------------------------------------------------------------------

    def get_queryset(self, request):
        # Counted per listed row by a correlated subquery (one query for the whole page, no N+1,
        # and no GROUP BY over every purchase of every sale).
        purchases = (
            Purchase.objects.filter(sale=OuterRef("pk"))
            .order_by()
            .values("sale")
            .annotate(count=Count("*"))
            .values("count")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                purchase_count=Coalesce(Subquery(purchases, output_field=IntegerField()), Value(0)),
                sold=F("original_stock") - F("current_stock"),
            )
        )

    # --- columns ---------------------------------------------------------------------------

    @admin.display(description="starts", ordering="start_time")
    def starts(self, sale):
        return _list_time(sale.start_time)

    @admin.display(description="ends", ordering="end_time")
    def ends(self, sale):
        return _list_time(sale.end_time)

    @admin.display(description="status")
    def status_badge(self, sale):
        status = sale.status_at(timezone.now())
        return format_html(
            '<span style="display:inline-block;padding:1px 8px;border-radius:8px;color:#fff;'
            'background:{};font-weight:600;font-size:11px;text-transform:uppercase">{}</span>',
            STATUS_COLOURS[status],
            SaleStatus(status).label,
        )

    @admin.display(description="stock left", ordering="current_stock")
    def stock_bar(self, sale):
        left = round(100 * sale.current_stock / sale.original_stock) if sale.original_stock else 0
        colour = "#1e7e34" if left > 25 else "#d39e00" if left > 0 else "#bd2130"
        return format_html(
            # The classes are admin_live_stock.js' hooks: it keeps the sale list's stock live.
            '<div class="stock-bar" title="{} of {} units left" style="min-width:6em" data-socket-port="{}">'
            '<span class="nowrap stock-bar-numbers">{} / {}</span>'
            '<div style="height:5px;background:#e1e1e1;border-radius:3px;margin-top:2px">'
            '<div class="stock-bar-fill" style="width:{}%;height:5px;background:{};border-radius:3px"></div>'
            "</div></div>",
            sale.current_stock,
            sale.original_stock,
            settings.WEBSOCKET_PORT or "",
            sale.current_stock,
            sale.original_stock,
            left,
            colour,
        )

    @admin.display(description="sold", ordering="sold")
    def units_sold(self, sale):
        return sale.units_sold

    @admin.display(description="purchases", ordering="purchase_count")
    def purchases(self, sale):
        return sale.purchase_count

    @admin.display(description="")
    def buyer_page(self, sale):
        # The page buyers see, as an arrow in a column with no header: a wider column would not fit at 1280 px.
        return format_html(
            '<a href="{}" target="_blank" rel="noopener" title="Open the buyer page of “{}”"'
            ' aria-label="Buyer page of “{}”">↗</a>',
            self.view_on_site(sale),
            sale.name,
            sale.name,
        )

    def view_on_site(self, sale):
        """The buyer page (the change page's "View on site" button links here)."""
        return reverse("live-sale-detail", args=[sale.pk])

    @admin.display(description="stock")
    def stock_summary(self, sale):
        # sales/static/sales/admin_live_stock.js keeps this live from the sale's WebSocket feed
        # (the live page's ws/sales/<id>/), so staff watching a sale see purchases land.
        left = round(100 * sale.current_stock / sale.original_stock) if sale.original_stock else 0
        colour = "#1e7e34" if left > 25 else "#d39e00" if left > 0 else "#bd2130"
        return format_html(
            '<div class="live-stock" data-live-stock data-sale-id="{}" data-stock-version="{}" data-socket-port="{}"'
            ' data-live-url="{}" data-state="loaded">'
            '<span class="live-stock-numbers">{} / {}</span> <small class="live-stock-note">as loaded</small>'
            '<div class="live-stock-bar"><div class="live-stock-fill" style="width:{}%;background:{}"></div></div>'
            '<small class="live-stock-sold">{} sold</small></div>',
            sale.pk,
            sale.stock_version,
            # Set when sockets are served on another port than pages (./scripts/serve), as on the live page.
            settings.WEBSOCKET_PORT or "",
            # The rest of the page (purchase count, newest purchases, version) is read from here on a push.
            reverse("admin:sales_flashsale_live", args=[quote(sale.pk)], current_app=self.admin_site.name),
            sale.current_stock,
            sale.original_stock,
            left,
            colour,
            _units(sale.units_sold),
        )

    @admin.display(description="Line")
    def waiting_room_summary(self, sale):
        # admin_live_stock.js keeps the figures live from the page's JSON (live_view) whenever the
        # sale's socket tells of a change (queue_advanced, purchases) and every few seconds; tick
        # "Admission paused" or change the rate and save to steer the line.
        if not sale.waiting_room:
            return "No waiting room."
        line = _line_figures(sale)
        return format_html(
            '<div class="waiting-room-summary" data-waiting-room>'
            '<span class="line-length">{}</span> in line'
            ' · admitted through <span class="line-admitted-through">{}</span>'
            ' · <span class="line-admitted-not-bought">{}</span> admitted, not yet bought'
            ' · <span class="line-purchase-rate">{}</span> purchases/s'
            ' · <span class="line-admission">{}</span></div>',
            line["queueLength"],
            line["admittedThrough"],
            line["admittedNotBought"],
            line["purchasesPerSecond"],
            line["admission"],
        )

    @admin.display(description="purchases")
    def purchases_link(self, sale):
        query = f"?sale__id__exact={sale.pk}"
        return format_html(
            '<span class="live-purchase-count">{}</span>: <a href="{}">{}</a>, <a href="{}" download>export CSV</a>',
            _purchases_text(sale.purchase_count),
            reverse("admin:sales_purchase_changelist") + query,
            # The same words for any count: admin_live_stock.js updates only the count.
            "see the list",
            # The export of the purchase list with the same filter: a CSV file, not a page.
            reverse("admin:sales_purchase_export") + query,
        )

    def has_delete_permission(self, request, obj=None):
        # A live sale is ended, never deleted (services.delete_sale refuses it too). Sales with
        # purchases are protected by the database (on_delete=PROTECT) anyway.
        return super().has_delete_permission(request, obj) and (obj is None or not obj.is_live_at(timezone.now()))

    def get_actions(self, request):
        # The bulk delete would not ask has_delete_permission about each sale.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    # --- forms -----------------------------------------------------------------------------

    def get_fieldsets(self, request, obj=None):
        return self.add_fieldsets if obj is None else self.change_fieldsets

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = self.add_form
        return super().get_form(request, obj, change, **kwargs)

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    def save_model(self, request, obj, form, change):
        if not change:
            sale = services.create_sale(**{field: form.cleaned_data[field] for field in services.EDITABLE_FIELDS})
        elif form.sale_changes or form.starts_now:
            try:
                sale = services.update_sale(
                    sale_id=obj.pk,
                    expected_version=form.cleaned_data["expected_version"],
                    changes=form.sale_changes,
                    start_now=form.starts_now,
                )
            except SalesError as refused:
                raise _EditRefused(refused) from refused
        else:
            sale = obj
        # The form wrote its (partly stale) values into obj; the admin's messages and log must
        # show what the database now holds.
        obj.pk = sale.pk
        obj.refresh_from_db()
        obj._state.adding = False

    def construct_change_message(self, request, form, formsets, add=False):
        # The history says old → new (sales.history), the same words as for edits through the API.
        if add:
            return history.describe_sale(form.instance)
        changed = history.describe_changes(form.stored_sale, form.instance)
        return changed or super().construct_change_message(request, form, formsets, add)

    def delete_model(self, request, obj):
        # Through the service, so home pages showing the sale move on to the next one.
        services.delete_sale(sale=obj)

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        form = context["adminform"].form
        if getattr(form, "stored_sale", None) is not None:
            # A refused form holds the submitted values in obj; title and breadcrumbs name the
            # sale as stored.
            context["original"] = obj = form.stored_sale
            context["subtitle"] = str(obj)
        context["sale_is_live"] = obj is not None and obj.is_live_at(timezone.now())
        context["sale_is_pending"] = obj is not None and obj.start_time > timezone.now()
        context["sale_can_pause"] = obj is not None and not obj.paused and obj.end_time > timezone.now()
        return super().render_change_form(request, context, add, change, form_url, obj)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except _EditRefused as refused:
            # The admin's transaction has rolled back; show why and the sale as it now is.
            error = refused.error
            messages.error(request, STALE_EDIT_MESSAGE if isinstance(error, VersionConflict) else error.message)
            return HttpResponseRedirect(request.get_full_path())

    # --- stock actions: add units, end now ------------------------------------------------

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        # Before the default URLs: their "<path:object_id>/" would swallow these.
        return [
            path(
                "<path:object_id>/add-units/",
                self.admin_site.admin_view(self.add_units_view),
                name="{}_{}_add_units".format(*info),
            ),
            path(
                "<path:object_id>/end/",
                self.admin_site.admin_view(self.end_sale_view),
                name="{}_{}_end".format(*info),
            ),
            path(
                "<path:object_id>/clone/",
                self.admin_site.admin_view(self.clone_sale_view),
                name="{}_{}_clone".format(*info),
            ),
            path(
                "<path:object_id>/preview/",
                self.admin_site.admin_view(self.preview_view),
                name="{}_{}_preview".format(*info),
            ),
            path(
                "<path:object_id>/live/",
                self.admin_site.admin_view(self.live_view),
                name="{}_{}_live".format(*info),
            ),
            path(
                "<path:object_id>/pause/",
                self.admin_site.admin_view(self.pause_sale_view),
                name="{}_{}_pause".format(*info),
            ),
            path(
                "<path:object_id>/resume/",
                self.admin_site.admin_view(self.resume_sale_view),
                name="{}_{}_resume".format(*info),
            ),
        ] + super().get_urls()

    def _sale_for_action(self, request, object_id):
        sale = self.get_object(request, unquote(object_id))
        if sale is not None and not self.has_change_permission(request, sale):
            raise PermissionDenied
        return sale

    def _change_url(self, sale) -> str:
        return reverse("admin:sales_flashsale_change", args=[quote(sale.pk)], current_app=self.admin_site.name)

    def _action_page(self, request, sale, template: str, title: str, **context):
        return TemplateResponse(
            request,
            template,
            {
                **self.admin_site.each_context(request),
                "opts": self.opts,
                "original": sale,
                "title": title,
                "change_url": self._change_url(sale),
                "stock": self.stock_bar(sale),
                **context,
            },
        )

    def add_units_view(self, request, object_id):
        sale = self._sale_for_action(request, object_id)
        if sale is None:
            # Django's own "no such object" answer; private, so not in django-stubs.
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)  # type: ignore[attr-defined]
        form = AddUnitsForm(request.POST if request.method == "POST" else None)
        if form.is_valid():
            units = form.cleaned_data["units"]
            try:
                sale = services.add_units(sale_id=sale.pk, units=units)
            except SalesError as refused:
                messages.error(request, refused.message)
            else:
                self.log_change(
                    request,
                    sale,
                    f"Added {_units(units)}: original stock {sale.original_stock - units} → {sale.original_stock}.",
                )
                messages.success(
                    request,
                    f"Added {_units(units)} to “{sale}”: stock is now {sale.current_stock} / {sale.original_stock}.",
                )
                return redirect(self._change_url(sale))
        return self._action_page(
            request, sale, "admin/sales/flashsale/add_units.html", f"Add units to “{sale}”", form=form
        )

    def end_sale_view(self, request, object_id):
        sale = self._sale_for_action(request, object_id)
        if sale is None:
            # Django's own "no such object" answer; private, so not in django-stubs.
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)  # type: ignore[attr-defined]
        if request.method == "POST":
            try:
                sale = services.end_sale_now(sale_id=sale.pk)
            except SalesError as refused:
                messages.error(request, refused.message)
            else:
                self.log_change(request, sale, "Ended the sale now.")
                messages.success(request, f"“{sale}” has ended: {_units(sale.current_stock)} left unsold.")
            return redirect(self._change_url(sale))
        return self._action_page(
            request,
            sale,
            "admin/sales/flashsale/end_sale.html",
            f"End “{sale}” now?",
            is_live=sale.is_live_at(timezone.now()),
        )

    # --- clone and preview -------------------------------------------------------------------

    def clone_sale_view(self, request, object_id):
        sale = self._sale_for_action(request, object_id)
        if sale is None:
            # Django's own "no such object" answer; private, so not in django-stubs.
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)  # type: ignore[attr-defined]
        if request.method == "POST":
            copy = self._clone(request, sale)
            messages.success(
                request,
                f"Cloned “{sale}” as “{copy}”, pending: it starts {_plain_time(copy.start_time)}. "
                "Set its start and end below.",
            )
            return redirect(self._change_url(copy))
        return self._action_page(
            request,
            sale,
            "admin/sales/flashsale/clone_sale.html",
            f"Clone “{sale}”?",
            copy_name=services.clone_name(sale.name),
            duration=_duration(sale.end_time - sale.start_time),
        )

    def _clone(self, request, sale):
        copy = services.clone_sale(sale_id=sale.pk)
        self.log_addition(request, copy, f"Cloned from “{sale}” (#{sale.pk}). {history.describe_sale(copy)}")
        return copy

    @admin.action(description="Clone selected sales (as new pending sales)", permissions=["add"])
    def clone_selected(self, request, queryset):
        copies = [self._clone(request, sale) for sale in queryset.order_by("start_time", "id")]
        count = ngettext("%(count)d sale", "%(count)d sales", len(copies)) % {"count": len(copies)}
        names = ", ".join(f"“{copy}”" for copy in copies)
        messages.success(request, f"Cloned {count} as new pending sales: {names}. Set their times before they start.")

    def preview_view(self, request, object_id):
        """The buyer page of a sale that has not started, as buyers will see it once it does."""
        sale = self._sale_for_action(request, object_id)
        if sale is None:
            # Django's own "no such object" answer; private, so not in django-stubs.
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)  # type: ignore[attr-defined]
        if sale.start_time <= timezone.now():
            # Started: the real page is the preview.
            return redirect(self.view_on_site(sale))
        return pages.preview_sale(request, sale, change_url=self._change_url(sale))

    def live_view(self, request, object_id):
        """The change page's live parts as JSON, read by admin_live_stock.js when the sale's socket says
        it changed: the socket carries no buyer's email, and a purchase burst is coalesced on it."""
        sale = self._sale_for_action(request, object_id)
        if sale is None:
            raise Http404("No flash sale with this id.")
        newest = selectors.recent_purchases(sale=sale, limit=NEWEST_PURCHASES_SHOWN)
        return JsonResponse(
            {
                "saleId": sale.pk,
                "version": sale.version,
                "currentStock": sale.current_stock,
                "originalStock": sale.original_stock,
                "purchaseCount": sale.purchase_count,
                "purchaseCountText": _purchases_text(sale.purchase_count),
                "waitingRoom": _line_figures(sale) if sale.waiting_room else None,
                "purchases": [
                    {
                        "id": purchase.pk,
                        "url": reverse("admin:sales_purchase_change", args=[quote(purchase.pk)]),
                        "boughtAt": _purchase_time(purchase.created_at),
                        "buyerEmail": purchase.user.email,
                        "buyerName": purchase.user.name,
                        "quantity": purchase.quantity,
                        "status": purchase.get_status_display(),
                    }
                    for purchase in newest
                ],
            }
        )

    @admin.action(description="End selected sales now", permissions=["change"])
    def end_now(self, request, queryset):
        if request.POST.get("post") != "yes":
            confirmation = self._confirm_end_selected(request, queryset)
            if confirmation is not None:
                return confirmation
        ended, refused = [], []
        for sale in queryset:
            try:
                services.end_sale_now(sale_id=sale.pk)
            except SalesError:
                refused.append(sale.name)
            else:
                self.log_change(request, sale, "Ended the sale now.")
                ended.append(sale.name)
        if ended:
            count = ngettext("%(count)d sale", "%(count)d sales", len(ended)) % {"count": len(ended)}
            messages.success(request, f"Ended {count}: {', '.join(ended)}.")
        if refused:
            messages.warning(request, f"Not live, left alone: {', '.join(refused)}.")

    def _confirm_end_selected(self, request, queryset):
        """The page that asks before the bulk action ends live sales (None when none is live: ending
        nothing needs no confirmation)."""
        now = timezone.now()
        sales = list(queryset.order_by("end_time", "id"))
        live = [sale for sale in sales if sale.is_live_at(now)]
        if not live:
            return None
        return TemplateResponse(
            request,
            "admin/sales/flashsale/end_selected_confirmation.html",
            {
                **self.admin_site.each_context(request),
                "title": "End the selected sales now?",
                "opts": self.opts,
                "queryset": sales,
                "live": live,
                "not_live": [sale for sale in sales if not sale.is_live_at(now)],
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "media": self.media,
            },
        )

    # --- pause and resume: POST only, from the change page's buttons or the list's actions ----

    def pause_sale_view(self, request, object_id):
        return self._pause_view(request, object_id, pause=True)

    def resume_sale_view(self, request, object_id):
        return self._pause_view(request, object_id, pause=False)

    def _pause_view(self, request, object_id, *, pause: bool):
        sale = self._sale_for_action(request, object_id)
        if sale is None:
            # Django's own "no such object" answer; private, so not in django-stubs.
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)  # type: ignore[attr-defined]
        if request.method != "POST":
            return redirect(self._change_url(sale))
        try:
            sale = services.pause_sale(sale_id=sale.pk) if pause else services.resume_sale(sale_id=sale.pk)
        except SalesError as refused:
            messages.error(request, refused.message)
        else:
            done = "Paused" if pause else "Resumed"
            self.log_change(request, sale, f"{done} the sale.")
            messages.success(
                request,
                f"“{sale}” is paused: purchases are refused until you resume it."
                if pause
                else f"“{sale}” sells again.",
            )
        return redirect(self._change_url(sale))

    @admin.action(description="Pause selected sales", permissions=["change"])
    def pause_now(self, request, queryset):
        self._pause_all(request, queryset, pause=True)

    @admin.action(description="Resume selected sales", permissions=["change"])
    def resume_now(self, request, queryset):
        self._pause_all(request, queryset, pause=False)

    def _pause_all(self, request, queryset, *, pause: bool):
        done, refused = [], []
        for sale in queryset:
            try:
                services.pause_sale(sale_id=sale.pk) if pause else services.resume_sale(sale_id=sale.pk)
            except SalesError:
                refused.append(sale.name)
            else:
                self.log_change(request, sale, "Paused the sale." if pause else "Resumed the sale.")
                done.append(sale.name)
        if done:
            count = ngettext("%(count)d sale", "%(count)d sales", len(done)) % {"count": len(done)}
            messages.success(request, f"{'Paused' if pause else 'Resumed'} {count}: {', '.join(done)}.")
        if refused:
            messages.warning(request, f"Already ended, left alone: {', '.join(refused)}.")


@admin.register(Purchase)
class PurchaseAdmin(ReadOnly, StaffRunsSales, admin.ModelAdmin):
    # expires_at is on the change page and in the CSV: the list fits 1280 px beside the side bars.
    list_display = ("id", "bought_at", "sale_link", "buyer_email", "quantity", "status")
    list_filter = ("status", "sale")
    search_fields = ("user__email",)
    search_help_text = "Search by buyer email."
    list_select_related = ("user", "sale")
    ordering = ("-created_at", "-id")
    list_per_page = 100
    # A count of the whole table on every page load is slow on a big sale; filtered counts stay.
    show_full_result_count = False
    actions = ["export_selected"]

    class Media:
        css = {"all": ["sales/admin.css"]}

    @admin.display(description="bought at", ordering="created_at")
    def bought_at(self, purchase):
        # Wraps between the date and the time only, like the sale list's times.
        date, _, time = _purchase_time(purchase.created_at).partition(" ")
        return format_html('<span class="nowrap">{}</span> <span class="nowrap">{}</span>', date, time)

    @admin.display(description="sale", ordering="sale__name")
    def sale_link(self, purchase):
        url = reverse("admin:sales_flashsale_change", args=[quote(purchase.sale_id)])
        return format_html('<a href="{}">{}</a>', url, purchase.sale.name)

    @admin.display(description="buyer", ordering="user__email")
    def buyer_email(self, purchase):
        # The name beside the email, as on a sale's page: one column fewer, so status fits at 1280 px.
        return format_html("{} <small>({})</small>", purchase.user.email, purchase.user.name)

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [
            path("export.csv", self.admin_site.admin_view(self.export_view), name="{}_{}_export".format(*info)),
        ] + super().get_urls()

    def export_view(self, request):
        """Every purchase the changelist shows with the same filters and search, as CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)
        except IncorrectLookupParameters:
            return redirect(reverse("admin:sales_purchase_changelist") + "?e=1")
        return purchases_csv_response(request, changelist.queryset, self._export_filename())

    @admin.action(description="Export selected purchases as CSV", permissions=["view"])
    def export_selected(self, request, queryset):
        return purchases_csv_response(request, queryset.order_by("-created_at", "-id"), self._export_filename())

    def _export_filename(self) -> str:
        return f"purchases-{timezone.now():%Y%m%dT%H%M%SZ}.csv"
