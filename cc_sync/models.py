"""The connection to CC (credentials) and the signup outbox."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .fields import EncryptedTextField
from .validators import (
    normalize_email,
    validate_custom_fields,
    validate_no_control_characters,
    validate_street_address,
)

# sign_up_form's field limits (CC's ContactCreateOrUpdateInput schema,
# https://developer.constantcontact.com/api_guide/contacts_create_or_update.html):
# validating to them means CC never rejects what the visitor was told is accepted.
EMAIL_MAX_LENGTH = 50
NAME_MAX_LENGTH = 50
PHONE_MAX_LENGTH = 25


@dataclass(frozen=True)
class Application:
    """The CC application (API key) a connection uses; CC counts its rate limits per API key.

    ``budget`` names its share of :class:`RateLimitState` rows: ``"api"`` and ``"token"`` for the
    application in the settings, ``"api:<key>"`` and ``"token:<key>"`` for any other, so connections that
    share an application share one budget, and a connection with its own application has its own.
    """

    client_id: str
    client_secret: str = field(repr=False, default="")
    own: bool = False

    @property
    def key(self) -> str:
        """A short stable name of the client id (never the secret): the suffix of its budget rows."""
        return hashlib.sha256(self.client_id.encode()).hexdigest()[:12] if self.own else ""

    def budget(self, family: str) -> str:
        """The :class:`RateLimitState` name of this application's ``family`` ("api" or "token") budget."""
        return f"{family}:{self.key}" if self.own else family


class Connection(models.Model):
    """One connected CC account: its OAuth credentials (encrypted), its application and the chosen lists.

    The connection with the slug ``default`` is the one used wherever no connection is named; a signup
    whose ``connection`` is empty belongs to it (:meth:`Connection.for_id`).
    """

    class Status(models.TextChoices):
        CONNECTED = "connected", _("Connected")
        NEEDS_RECONNECT = "needs_reconnect", _("Needs reconnect")
        DISCONNECTED = "disconnected", _("Disconnected")

    DEFAULT_SLUG = "default"

    name = models.CharField(_("name"), max_length=100, default="Constant Contact")
    slug = models.SlugField(
        _("slug"),
        max_length=50,
        unique=True,
        help_text=_("How code and settings name this connection (enqueue_signup(connection=...))."),
    )
    # Empty: the application of CC_SYNC["CLIENT_ID"]. Set: this connection's own CC application, with its
    # own rate limits (CC counts per API key).
    client_id = models.CharField(_("own application's client id"), max_length=100, blank=True)
    client_secret = EncryptedTextField(_("own application's client secret"), blank=True)
    # For cc_sync.routing.connection_for_site: the site (its domain) whose forms go to this account.
    site_domain = models.CharField(
        _("site domain"),
        max_length=255,
        blank=True,
        db_index=True,
        help_text=_("Forms on this site (its domain, e.g. shop.example.com) go to this account."),
    )
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.DISCONNECTED)
    access_token = EncryptedTextField(_("access token"), blank=True, editable=False)
    refresh_token = EncryptedTextField(_("refresh token"), blank=True, editable=False)
    expires_at = models.DateTimeField(_("access token expires at"), null=True, blank=True, editable=False)
    scopes = models.CharField(_("scopes"), max_length=255, blank=True, editable=False)
    account_name = models.CharField(_("account name"), max_length=255, blank=True, editable=False)
    account_id = models.CharField(_("account id"), max_length=255, blank=True, editable=False)
    connected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("connected by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    connected_at = models.DateTimeField(_("connected at"), null=True, blank=True, editable=False)
    last_refreshed_at = models.DateTimeField(_("last refresh"), null=True, blank=True, editable=False)
    last_error = models.TextField(_("last error"), blank=True, editable=False)
    last_error_at = models.DateTimeField(_("last error at"), null=True, blank=True, editable=False)
    list_ids = models.JSONField(_("default lists"), default=list, blank=True)
    available_lists = models.JSONField(_("lists in the account"), default=list, blank=True, editable=False)
    lists_checked_at = models.DateTimeField(_("lists fetched at"), null=True, blank=True, editable=False)
    # Lists that CC answered 404 for: signups wait (``waiting_list``) until an admin chooses another.
    missing_list_ids = models.JSONField(_("lists missing at CC"), default=list, blank=True, editable=False)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("Constant Contact connection")
        verbose_name_plural = _("Constant Contact connections")
        ordering = ["pk"]

    def __str__(self) -> str:
        label = self.account_name or self.name or _("Constant Contact")
        if self.account_name and self.name and self.name != self.account_name and not self.is_default:
            label = f"{self.name}: {self.account_name}"
        return f"{label} ({self.get_status_display()})"

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.site_domain = self.site_domain.strip().lower()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        from .conf import app_settings

        if self.client_secret and not self.client_id:
            raise ValidationError({"client_id": _("A client secret needs the client id of its application.")})
        if self.client_id and not self.client_secret and app_settings.OAUTH_FLOW == "authorization_code":
            # PKCE and device-flow applications have no secret; the authorization-code flow needs one.
            raise ValidationError(
                {
                    "client_secret": _(
                        "This application needs its client secret (CC_SYNC['OAUTH_FLOW'] is "
                        '"authorization_code").'
                    )
                }
            )

    @classmethod
    def load(cls) -> Connection:
        """The default connection, created (disconnected) on first use."""
        connection, _created = cls.objects.get_or_create(slug=cls.DEFAULT_SLUG)
        return connection

    @classmethod
    def for_id(cls, pk: int | None) -> Connection:
        """The connection with this primary key; the default connection for ``None``."""
        return cls.load() if pk is None else cls.objects.get(pk=pk)

    @property
    def is_default(self) -> bool:
        return self.slug == self.DEFAULT_SLUG

    def has_own_application(self) -> bool:
        """True for a client id other than ``CC_SYNC["CLIENT_ID"]``: the same id is the same API key to CC."""
        from .conf import app_settings

        return bool(self.client_id) and self.client_id != app_settings.CLIENT_ID

    def application(self) -> Application:
        """The CC application this connection's tokens belong to."""
        from .conf import app_settings

        if self.has_own_application():
            return Application(self.client_id, self.client_secret, own=True)
        return Application(app_settings.CLIENT_ID, app_settings.CLIENT_SECRET)

    def budget(self, family: str) -> str:
        """Its application's budget name (:meth:`Application.budget`), read without decrypting the secret."""
        return Application(self.client_id, own=self.has_own_application()).budget(family)

    def signups(self) -> models.QuerySet[Signup]:
        """The signups that go to this connection's account (the default one's include those naming none)."""
        if self.is_default:
            return Signup.objects.filter(models.Q(connection=self) | models.Q(connection__isnull=True))
        return Signup.objects.filter(connection=self)

    def needs_refresh(self, leeway: float, now: datetime | None = None) -> bool:
        """True if the access token is missing, expired, or expires within ``leeway`` seconds."""
        if not self.access_token or self.expires_at is None:
            return True
        return self.expires_at <= (now or timezone.now()) + timedelta(seconds=leeway)

    def list_names(self) -> dict[str, str]:
        """``{list_id: name}`` of the lists last fetched from the account."""
        return {item["list_id"]: item["name"] for item in self.available_lists}


def connection_field() -> models.ForeignKey[Connection | None]:
    """The ``connection`` of a signup, a surge batch or a backfill run: empty means the default connection.

    PROTECT: a connection whose rows name it cannot be deleted (the admin says why).
    """
    return models.ForeignKey(
        Connection,
        verbose_name=_("connection"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )


def default_deadline() -> datetime:
    """When a signup that keeps failing transiently is given up on (``CC_SYNC["DEADLINE"]`` from now)."""
    from .conf import app_settings

    return timezone.now() + timedelta(seconds=app_settings.DEADLINE)


class SignupQuerySet(models.QuerySet):
    """The outbox's named filters, one definition each for the claim, the sweeper and the admin."""

    @staticmethod
    def due_q(now: datetime) -> models.Q:
        """Pending and due: a worker may claim it."""
        return models.Q(status=Signup.Status.PENDING, next_attempt_at__lte=now)

    @staticmethod
    def lease_expired_q(now: datetime) -> models.Q:
        """Left ``syncing`` by a worker whose lease ran out (a killed worker): claimable again."""
        return models.Q(status=Signup.Status.SYNCING, lease_expires_at__lte=now)

    @staticmethod
    def in_flight_q(now: datetime) -> models.Q:
        """Held by a live worker right now: ``syncing`` with a lease still running."""
        return models.Q(status=Signup.Status.SYNCING, lease_expires_at__gt=now)

    def due(self, now: datetime | None = None) -> SignupQuerySet:
        return self.filter(self.due_q(now or timezone.now()))

    def lease_expired(self, now: datetime | None = None) -> SignupQuerySet:
        return self.filter(self.lease_expired_q(now or timezone.now()))

    def claimable(self, now: datetime | None = None) -> SignupQuerySet:
        """Due, or abandoned by a dead worker."""
        now = now or timezone.now()
        return self.filter(self.due_q(now) | self.lease_expired_q(now))

    def in_flight(self, now: datetime | None = None) -> SignupQuerySet:
        return self.filter(self.in_flight_q(now or timezone.now()))


class Signup(models.Model):
    """One accepted submission: the outbox row that a worker syncs to CC, and its audit record."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SYNCING = "syncing", _("Syncing")
        SYNCED = "synced", _("Synced")
        FAILED = "failed", _("Failed")
        # Held until CC is connected: never connected yet, disconnected, or CC refused the stored grant.
        WAITING_RECONNECT = "waiting_reconnect", _("Waiting for a connection")
        WAITING_LIST = "waiting_list", _("Waiting for a list")
        AWAITING_CONFIRMATION = "awaiting_confirmation", _("Awaiting confirmation")

    #: Statuses that keep a row safe without a deadline running; a row released from one starts afresh.
    HELD_STATUSES = (Status.WAITING_RECONNECT, Status.WAITING_LIST, Status.AWAITING_CONFIRMATION)

    email = models.EmailField(_("email"), max_length=EMAIL_MAX_LENGTH)
    first_name = models.CharField(
        _("first name"), max_length=NAME_MAX_LENGTH, blank=True, validators=[validate_no_control_characters]
    )
    last_name = models.CharField(
        _("last name"), max_length=NAME_MAX_LENGTH, blank=True, validators=[validate_no_control_characters]
    )
    phone_number = models.CharField(
        _("phone number"),
        max_length=PHONE_MAX_LENGTH,
        blank=True,
        validators=[validate_no_control_characters],
    )
    job_title = models.CharField(
        _("job title"), max_length=NAME_MAX_LENGTH, blank=True, validators=[validate_no_control_characters]
    )
    company_name = models.CharField(
        _("company name"), max_length=NAME_MAX_LENGTH, blank=True, validators=[validate_no_control_characters]
    )
    # sign_up_form's custom_fields ([{"custom_field_id", "value"}]) and street_address ({"kind", ...}).
    custom_fields = models.JSONField(_("custom fields"), default=list, blank=True)
    street_address = models.JSONField(_("street address"), null=True, blank=True)
    # Lists picked for this submission (a view, LIST_CHOOSER or enqueue_signup); empty: the configured
    # default lists, read when the signup is sent.
    list_ids = models.JSONField(_("lists"), default=list, blank=True)
    # The submitter is that person (a form behind login): only then are an existing contact's details updated.
    verified = models.BooleanField(_("submitted by the person"), default=False)
    confirmation_sent_at = models.DateTimeField(_("confirmation sent at"), null=True, blank=True)
    confirmed_at = models.DateTimeField(_("confirmed by the person at"), null=True, blank=True)
    # A keyed hash of the normalised email: survives the retention purge and matches the suppression list.
    email_hash = models.CharField(_("email hash"), max_length=64, blank=True, db_index=True, editable=False)

    # No index of its own: the composite index cc_sync_signup_due (status, next_attempt_at) starts with status,
    # so it serves lookups by status alone too.
    status = models.CharField(_("status"), max_length=30, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    next_attempt_at = models.DateTimeField(_("next attempt at"), default=timezone.now, db_index=True)
    lease_expires_at = models.DateTimeField(_("claim expires at"), null=True, blank=True)
    enqueued_at = models.DateTimeField(_("last queued at"), null=True, blank=True)
    deadline_at = models.DateTimeField(_("give up after"), default=default_deadline)
    last_error = models.TextField(_("last error"), blank=True)
    last_error_key = models.CharField(_("last error key"), max_length=100, blank=True)

    contact_id = models.CharField(_("CC contact id"), max_length=64, blank=True)
    created_in_cc = models.BooleanField(_("created in CC"), null=True, blank=True)
    synced_at = models.DateTimeField(_("synced at"), null=True, blank=True)

    consent_given_at = models.DateTimeField(_("consent given at"), null=True, blank=True)
    consent_text = models.TextField(_("consent text"), blank=True)
    consent_version = models.CharField(_("consent version"), max_length=50, blank=True)
    source_url = models.CharField(_("submitted from"), max_length=500, blank=True)
    consent_ip_hash = models.CharField(_("consent IP (keyed hash)"), max_length=64, blank=True)
    consent_user_agent = models.CharField(_("consent user agent"), max_length=255, blank=True)
    personal_data_purged_at = models.DateTimeField(_("personal data removed at"), null=True, blank=True)
    # The CC account this signup goes to.
    connection = connection_field()
    # The bulk import (surge mode) that took this signup. Kept after it ends: a pending row with a batch is
    # one the import sent back to be sent one by one (cc_sync.surge), so it is never taken in bulk again.
    surge_batch = models.ForeignKey(
        "SurgeBatch",
        verbose_name=_("bulk import"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="signups",
        editable=False,
    )

    created_at = models.DateTimeField(_("submitted at"), default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = SignupQuerySet.as_manager()

    class Meta:
        verbose_name = _("signup")
        verbose_name_plural = _("signups")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="cc_sync_signup_due")]

    def __str__(self) -> str:
        return f"{self.email} ({self.get_status_display()})"

    def clean(self) -> None:
        # Normalise here, not in a form, so that every way in (form, enqueue_signup, admin) gets it.
        try:
            self.email = normalize_email(self.email, EMAIL_MAX_LENGTH)
        except ValidationError as err:
            raise ValidationError({"email": err.error_list}) from None
        validate_custom_fields(self.custom_fields)
        validate_street_address(self.street_address)


class RateLimitState(models.Model):
    """Shared request budget of one CC application for one endpoint family, used by every process.

    ``name``: :meth:`Application.budget` ("api" and "token" for the application in the settings).
    """

    name = models.CharField(max_length=20, primary_key=True)
    # Unix time of the next free request slot.
    next_slot = models.FloatField(default=0.0)
    day = models.DateField(null=True, blank=True)
    day_count = models.PositiveIntegerField(default=0)
    # CC's daily quota is believed spent until then (decided from CC's answers, not only from the clock).
    blocked_until = models.DateTimeField(null=True, blank=True)
    # 429s in a row while our own pacing was respected: a sign of the daily quota, whatever CC's error key.
    quota_429s = models.PositiveIntegerField(default=0)
    # Unix time until which every reservation re-reads ``blocked_until`` after its wait: set when CC accepts
    # a probe, since CC's day may not have ended yet.
    watch_until = models.FloatField(default=0.0)

    class Meta:
        verbose_name = _("rate limit state")
        verbose_name_plural = _("rate limit states")

    def __str__(self) -> str:
        return self.name


class Suppression(models.Model):
    """An email that must never be synced again (erased or unsubscribed), kept only as a keyed hash.

    CC's sign_up_form re-subscribes even a contact who unsubscribed (when Confirmed Opt-In is off) and
    restores deleted contacts, so a later submission, possibly by a bot, must not reach it.
    """

    class Reason(models.TextChoices):
        ERASED = "erased", _("Erased on request")
        UNSUBSCRIBED = "unsubscribed", _("Unsubscribed")
        BLOCKED = "blocked", _("Blocked by an admin")

    email_hash = models.CharField(_("email hash"), max_length=64, unique=True)
    reason = models.CharField(_("reason"), max_length=20, choices=Reason.choices)
    created_at = models.DateTimeField(_("added at"), default=timezone.now)

    class Meta:
        verbose_name = _("suppressed email")
        verbose_name_plural = _("suppressed emails")

    def __str__(self) -> str:
        return f"{self.email_hash[:12]}… ({self.get_reason_display()})"


class SuppressionLift(models.Model):
    """The record left when an admin lifts a suppression (``manage.py cc_sync_unsuppress``)."""

    email_hash = models.CharField(_("email hash"), max_length=64, db_index=True)
    original_reason = models.CharField(
        _("suppressed because"), max_length=20, choices=Suppression.Reason.choices
    )
    reason = models.TextField(_("why it was lifted"))
    lifted_by = models.CharField(_("lifted by"), max_length=150)
    lifted_at = models.DateTimeField(_("lifted at"), default=timezone.now)

    class Meta:
        verbose_name = _("lifted suppression")
        verbose_name_plural = _("lifted suppressions")
        ordering = ["-lifted_at"]

    def __str__(self) -> str:
        return f"{self.email_hash[:12]}… ({self.lifted_at:%Y-%m-%d})"


class BackfillRun(models.Model):
    """One bulk import of existing contacts (``manage.py cc_sync_backfill``), resumable after a crash.

    A run is identified by the fingerprint of its source rows and options: running the same command
    again finds it and carries on where it stopped. No email is stored; batches list source row numbers.
    """

    class Status(models.TextChoices):
        RUNNING = "running", _("Running")
        FINISHED = "finished", _("Finished")
        ABANDONED = "abandoned", _("Abandoned")

    fingerprint = models.CharField(_("source fingerprint"), max_length=64, db_index=True)
    # The account imported into (empty: the default connection); part of what identifies the run.
    connection = connection_field()
    source = models.CharField(_("source"), max_length=500)
    list_ids = models.JSONField(_("lists"), default=list)
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.RUNNING)
    rows = models.PositiveIntegerField(_("source rows"), default=0)
    contacts = models.PositiveIntegerField(_("contacts to import"), default=0)
    invalid = models.PositiveIntegerField(_("invalid rows"), default=0)
    skipped = models.PositiveIntegerField(_("skipped rows"), default=0)
    created_at = models.DateTimeField(_("started at"), default=timezone.now)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("backfill run")
        verbose_name_plural = _("backfill runs")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"#{self.pk} {self.source} ({self.get_status_display()})"


class BackfillBatch(models.Model):
    """One ``contacts_json_import`` request of a run and the CC activity it created."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SUBMITTED = "submitted", _("Submitted")
        COMPLETED = "completed", _("Completed")
        FAILED = "failed", _("Failed")

    run = models.ForeignKey(BackfillRun, on_delete=models.CASCADE, related_name="batches")
    number = models.PositiveIntegerField(_("number"))
    # Indexes into the run's source rows (not emails): the contacts are rebuilt from the source on resume.
    rows = models.JSONField(_("source rows"), default=list)
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.PENDING)
    activity_id = models.CharField(_("CC activity id"), max_length=64, blank=True)
    state = models.CharField(_("CC activity state"), max_length=20, blank=True)
    percent_done = models.PositiveSmallIntegerField(_("percent done"), default=0)
    # CC's per-contact errors: [{"index": position in this batch or None, "message": ...}].
    errors = models.JSONField(_("contact errors"), default=list, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    submitted_at = models.DateTimeField(_("submitted at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("backfill batch")
        verbose_name_plural = _("backfill batches")
        ordering = ["run", "number"]
        constraints = [
            models.UniqueConstraint(fields=["run", "number"], name="cc_sync_backfill_batch_number")
        ]

    def __str__(self) -> str:
        return f"{self.run_id}/{self.number} ({self.get_status_display()})"


class SurgeBatch(models.Model):
    """One ``contacts_json_import`` of live signups in surge mode (:mod:`cc_sync.surge`), resumable after a crash.

    The batch stores the CC activity id as soon as CC accepts the import: a worker killed from then on is
    followed by one that polls the same activity, never by a second import of the same signups.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SUBMITTED = "submitted", _("Submitted")
        COMPLETED = "completed", _("Completed")
        FAILED = "failed", _("Failed")

    #: Batches that still need a worker: to be sent, or to be polled until CC has finished them.
    UNFINISHED = (Status.PENDING, Status.SUBMITTED)

    # The account the import goes to (empty: the default connection); all its signups share it.
    connection = connection_field()
    list_ids = models.JSONField(_("lists"), default=list)
    # The signups' ids in request order: CC's per-contact errors point at positions in the request.
    signup_ids = models.JSONField(_("signups"), default=list)
    status = models.CharField(_("status"), max_length=20, choices=Status.choices, default=Status.PENDING)
    activity_id = models.CharField(_("CC activity id"), max_length=64, blank=True)
    state = models.CharField(_("CC activity state"), max_length=20, blank=True)
    percent_done = models.PositiveSmallIntegerField(_("percent done"), default=0)
    # status.cannot_add_to_list_count: contacts CC had as unsubscribed, so not added to the lists.
    cannot_add_to_list_count = models.PositiveIntegerField(_("not added (unsubscribed)"), default=0)
    # CC's per-contact errors: [{"index": position in signup_ids or None, "message": ...}].
    errors = models.JSONField(_("contact errors"), default=list, blank=True)
    last_error = models.TextField(_("last error"), blank=True)
    # The worker that sends or polls this batch holds it until then (renewed on every poll).
    lease_expires_at = models.DateTimeField(_("held by a worker until"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    submitted_at = models.DateTimeField(_("submitted at"), null=True, blank=True)
    finished_at = models.DateTimeField(_("finished at"), null=True, blank=True)

    class Meta:
        verbose_name = _("bulk import of signups")
        verbose_name_plural = _("bulk imports of signups")
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status"], name="cc_sync_surgebatch_status")]

    def __str__(self) -> str:
        return f"#{self.pk} ({self.get_status_display()}, {len(self.signup_ids)} signups)"
