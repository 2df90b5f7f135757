"""Reading a backfill's source: a CSV file or a callable, each row checked with the import's own limits.

Part of :mod:`cc_sync.backfill`, which re-exports these names.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from . import privacy
from .models import Suppression
from .validators import normalize_email, validate_no_control_characters

# CC's import takes at most 25 custom fields per contact (same page).
MAX_CUSTOM_FIELDS = 25
# Length limits of the import's own contact schema (spec build 3.0.161,
# createImportJSONActivity_request_import_data_inner), which differ from sign_up_form's: `phone` takes 50
# characters where sign_up_form's phone_number takes 25. tests/test_conformance.py checks them against the spec.
IMPORT_EMAIL_MAX_LENGTH = 50
IMPORT_TEXT_MAX_LENGTH = 50  # first_name, last_name, job_title, company_name
IMPORT_PHONE_MAX_LENGTH = 50
IMPORT_CUSTOM_FIELD_MAX_LENGTH = 255  # each "cf:<name>" value

#: Source columns / keys, the import_data field each fills, and the import's length limit for it.
TEXT_FIELDS: tuple[tuple[str, str, int], ...] = (
    ("first_name", "first_name", IMPORT_TEXT_MAX_LENGTH),
    ("last_name", "last_name", IMPORT_TEXT_MAX_LENGTH),
    ("job_title", "job_title", IMPORT_TEXT_MAX_LENGTH),
    ("company_name", "company_name", IMPORT_TEXT_MAX_LENGTH),
    ("phone_number", "phone", IMPORT_PHONE_MAX_LENGTH),
)
CONSENT_COLUMN = "consent"
CUSTOM_FIELD_PREFIX = "cf:"  # CC's import takes custom fields as "cf:<custom field name>" keys
KNOWN_COLUMNS = frozenset({"email", CONSENT_COLUMN, *(column for column, _key, _limit in TEXT_FIELDS)})
CONSENT_YES = frozenset({"1", "true", "yes", "y", "x", "on"})


class SourceError(ValueError):
    """The source cannot be used as given (missing file, bad CSV header, no consent rule); nothing was sent."""


# -- reading and checking a source ----------------------------------------------------------------


@dataclass
class Row:
    """One source row: its number (for reports), its email as given, and the contact to send (or why not)."""

    number: int
    email: str
    contact: dict[str, str] | None = None
    problem: str = ""  # why the row is invalid (reported)
    skipped: str = ""  # "no_consent", "duplicate" or "suppressed" (counted, not reported)


@dataclass
class Source:
    """The rows of a CSV file or callable, checked, and the fingerprint that identifies its run."""

    label: str
    rows: list[Row]
    fingerprint: str

    @property
    def sendable(self) -> list[int]:
        return [index for index, row in enumerate(self.rows) if row.contact is not None]

    def count(self, skipped: str) -> int:
        return sum(row.skipped == skipped for row in self.rows)

    @property
    def invalid(self) -> list[Row]:
        return [row for row in self.rows if row.problem]


def read_csv(path: str | Path) -> tuple[list[dict[str, str]], bool]:
    """The rows of a UTF-8 CSV file with a header line, and whether it has a ``consent`` column.

    The header must name ``email``; other columns may be ``first_name``, ``last_name``, ``job_title``,
    ``company_name``, ``phone_number``, ``consent`` and ``cf:<custom field name>``. Anything else is refused
    rather than silently dropped.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in (reader.fieldnames or [])]
            problem = _header_problem(header)
            if problem:
                raise SourceError(problem)
            reader.fieldnames = header
            rows = []
            for record in reader:
                if None in record:
                    raise SourceError(
                        _("Line %(line)d of the CSV file has more fields than its header.")
                        % {"line": reader.line_num}
                    )
                rows.append({name: (value or "") for name, value in record.items()})
    except OSError as err:
        raise SourceError(
            _("Cannot read %(path)s: %(error)s") % {"path": path, "error": err.strerror}
        ) from None
    except (UnicodeDecodeError, csv.Error) as err:
        raise SourceError(
            _("%(path)s is not a UTF-8 CSV file: %(error)s") % {"path": path, "error": err}
        ) from None
    return rows, CONSENT_COLUMN in header


def _header_problem(header: list[str]) -> str:
    if not header:
        return _("The CSV file is empty; its first line must be a header such as email,first_name,last_name.")
    if "email" not in header:
        return _("The CSV header has no email column; it must start like email,first_name,last_name.")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        return _("The CSV header repeats columns: %(columns)s.") % {"columns": ", ".join(duplicates)}
    unknown = [
        name for name in header if name not in KNOWN_COLUMNS and not name.startswith(CUSTOM_FIELD_PREFIX)
    ]
    if unknown:
        return _(
            "The CSV header has unknown columns: %(unknown)s. Known: %(known)s, and cf:<custom field name>."
        ) % {
            "unknown": ", ".join(unknown),
            "known": ", ".join(["email", *(c for c, _k, _l in TEXT_FIELDS), CONSENT_COLUMN]),
        }
    return ""


def read_callable(dotted_path: str) -> list[dict[str, Any]]:
    """The rows returned by the callable (or iterable, such as a queryset) at ``dotted_path``.

    Each item is a dict or an object (a model instance) with an ``email`` and optionally the other column
    names as keys or attributes. Return only people who consented, in a stable order (``order_by("pk")``):
    the order and content identify the run that a re-run resumes.
    """
    try:
        target = import_string(dotted_path)
    except ImportError as err:
        raise SourceError(
            _("Cannot import %(path)s: %(error)s") % {"path": dotted_path, "error": err}
        ) from None
    items = target() if callable(target) else target
    if isinstance(items, (str, bytes, dict)) or not isinstance(items, Iterable):
        raise SourceError(_("%(path)s must return an iterable of dicts or objects.") % {"path": dotted_path})
    return [_as_dict(item) for item in items]


def _as_dict(item: Any) -> dict[str, Any]:
    if isinstance(item, dict):
        return {str(key): value for key, value in item.items()}
    names = ["email", CONSENT_COLUMN, *(column for column, _key, _limit in TEXT_FIELDS)]
    return {name: getattr(item, name) for name in names if getattr(item, name, None) is not None}


def load_source(
    *,
    csv_path: str | Path | None = None,
    dotted_path: str | None = None,
    list_ids: list[str],
    all_consented: bool = False,
) -> Source:
    """Read, validate and fingerprint a source; mark invalid, non-consenting, duplicate and suppressed rows.

    Consent: a row is sent only if its ``consent`` value is yes (``1``, ``true``, ``yes``, ``y``, ``x``,
    ``on``). A CSV file without a ``consent`` column needs ``all_consented=True``, a declaration that every
    row consented (a ``consent`` column, when present, always decides). A callable is trusted to return
    consenting people; a ``consent`` key is still honoured.
    """
    if csv_path is not None:
        raw, has_consent = read_csv(csv_path)
        if not has_consent and not all_consented:
            raise SourceError(
                _(
                    "The CSV file has no consent column. Add one (yes or no for each row) or, if every "
                    "person in the file agreed to receive email, pass --all-consented."
                )
            )
        label, first_number = f"csv:{Path(csv_path).name}", 2  # row 1 is the header
    elif dotted_path:
        raw, label, first_number = read_callable(dotted_path), f"callable:{dotted_path}", 1
    else:
        raise SourceError(_("Give a CSV file or a callable as the source."))

    digest = hashlib.sha256(json.dumps({"lists": list_ids, "all_consented": all_consented}).encode())
    rows: list[Row] = []
    seen: set[str] = set()
    for number, record in enumerate(raw, start=first_number):
        digest.update(json.dumps(record, sort_keys=True, default=str).encode())
        row = _check(number, record)
        if row.contact is not None:
            key = row.contact["email"].lower()
            if key in seen:
                row.contact, row.skipped = None, "duplicate"
            seen.add(key)
        rows.append(row)
    _mark_suppressed(rows)
    return Source(label=label[:500], rows=rows, fingerprint=digest.hexdigest())


def _check(number: int, record: dict[str, Any]) -> Row:
    email = str(record.get("email") or "").strip()
    row = Row(number=number, email=email)
    if CONSENT_COLUMN in record:  # an explicit "no" wins over --all-consented
        if str(record[CONSENT_COLUMN] or "").strip().lower() not in CONSENT_YES:
            row.skipped = "no_consent"
            return row
    try:
        row.contact = contact_from(record)
    except ValidationError as err:
        row.problem = " ".join(err.messages)
        return row
    row.email = row.contact["email"]
    return row


def contact_from(record: dict[str, Any]) -> dict[str, str]:
    """The ``import_data`` entry for one source row, checked with the signup form's validators and the
    import's own length limits (CC's spec for ``contacts_json_import``)."""
    email = normalize_email(str(record.get("email") or ""), IMPORT_EMAIL_MAX_LENGTH)
    contact = {"email": email}
    for column, key, limit in TEXT_FIELDS:
        value = str(record.get(column) or "").strip()
        if not value:
            continue
        validate_no_control_characters(value)
        if len(value) > limit:
            raise ValidationError(
                _("%(field)s: Constant Contact accepts at most %(limit)d characters.")
                % {"field": column, "limit": limit}
            )
        contact[key] = value
    custom = {
        str(name): str(value).strip()
        for name, value in record.items()
        if str(name).startswith(CUSTOM_FIELD_PREFIX) and value not in (None, "") and str(value).strip()
    }
    if len(custom) > MAX_CUSTOM_FIELDS:
        raise ValidationError(_("Constant Contact imports at most 25 custom fields per contact."))
    for name, value in custom.items():
        validate_no_control_characters(value)
        if len(value) > IMPORT_CUSTOM_FIELD_MAX_LENGTH:
            raise ValidationError(
                _("%(field)s: Constant Contact accepts at most %(limit)d characters.")
                % {"field": name, "limit": IMPORT_CUSTOM_FIELD_MAX_LENGTH}
            )
        contact[name] = value
    return contact


def _mark_suppressed(rows: list[Row]) -> None:
    # Erased or unsubscribed people must never reach CC again (cc_sync.privacy); checked in bulk.
    by_hash = {privacy.email_hash(row.contact["email"]): row for row in rows if row.contact is not None}
    hashes = list(by_hash)
    for start in range(0, len(hashes), 500):
        chunk = hashes[start : start + 500]
        for digest in Suppression.objects.filter(email_hash__in=chunk).values_list("email_hash", flat=True):
            row = by_hash[digest]
            row.contact, row.skipped = None, "suppressed"


# -- batching -------------------------------------------------------------------------------------
