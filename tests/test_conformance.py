"""Conformance with Constant Contact's own API contract, not only with our sandbox (issue 12, section 5).

The contract is CC's OpenAPI file, "Swagger build version 3.0.161", from CC's SDK repository
``constantcontact/constant-contact-v3api-client-csharp`` (``api/openapi.yaml``), kept at
``../shared/reference/cc-v3-openapi.yaml`` beside the repository. Every request cc_sync sends is built by
cc_sync's own builders and sent by its own client to the sandbox; what goes over the wire is recorded and
validated against the operation's request schema (bodies) or parameters (query strings), and the sandbox's
answer against the operation's response schema for that status. Validation is done by
``openapi-schema-validator`` (a maintained OpenAPI 3.0 schema validator, with its format checker so that
``format: uuid`` and ``format: date-time`` are checked too).

Adding a call cc_sync makes is one entry in ``SCENARIOS``.

Where the spec cannot be used as it stands, it is adjusted here, and only here (see :func:`contract`):

- ``readOnly`` on array *items*: CC marks the items of ``list_memberships`` and ``taggings`` read-only in the
  request schemas of ``POST /contacts`` and ``PUT /contacts/{contact_id}``, although the same operations
  document those arrays as the way to set a contact's lists. OpenAPI 3.0 defines ``readOnly`` for
  properties only, so on items it is dropped; ``readOnly`` on properties (``created_at``, ``updated_at`` ...)
  is kept, and a request that sends one back fails.
- Closed objects: CC's schemas do not say ``additionalProperties: false``, so a misspelt or invented field
  would validate. Every object schema is closed here, because cc_sync must send only the fields the spec
  defines (and the sandbox answer only those). The import's contact schema names its dynamic custom-field
  keys with a placeholder property ``cf:custom_field_name``; it becomes ``patternProperties: {"^cf:": ...}``.
- ``format: csv`` on query parameters (``status``, ``include`` of ``GET /contacts``) is CC's own word for a
  comma-separated list of the enum's values: each value is checked against the enum.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from rig.constants import LIST_ID, SPEC_PATH
from rig.services import IN_CI

SPEC_BUILD = "3.0.161"

if not SPEC_PATH.is_file():
    _absent = (
        f"CC's OpenAPI contract (build {SPEC_BUILD}) is not at {SPEC_PATH}: the conformance tests need it "
        "there (CI has it; a user's checkout usually does not)."
    )
    if IN_CI:
        pytest.fail(_absent, pytrace=False)
    pytest.skip(_absent, allow_module_level=True)

import yaml  # noqa: E402  (only once the spec is known to be there)
from jsonschema import Draft4Validator, validators  # noqa: E402
from openapi_schema_validator import (  # noqa: E402
    OAS30ReadValidator,
    OAS30WriteValidator,
    oas30_format_checker,
)

from cc_sync import backfill, surge, sync  # noqa: E402
from cc_sync.client import ConstantContactClient  # noqa: E402
from cc_sync.models import Signup  # noqa: E402
from cc_sync.sandbox import DEFAULT_LISTS, Sandbox  # noqa: E402

OTHER_LIST = DEFAULT_LISTS[1]["list_id"]
CUSTOM_FIELD_ID = "1618ae62-4752-11e9-9c8a-fa163e6b01c1"

# -- the contract ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def raw_contract() -> dict[str, Any]:
    """CC's spec as published (27,000 lines of YAML: loaded once per test session)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(SPEC_PATH, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=loader)  # noqa: S506 (a safe loader)


@functools.lru_cache(maxsize=1)
def contract() -> dict[str, Any]:
    """The spec with the adjustments listed in the module docstring."""
    spec = copy.deepcopy(raw_contract())
    for schema in spec["components"]["schemas"].values():
        _adjust(schema)
    return spec


def _adjust(schema: Any) -> None:
    if isinstance(schema, list):
        for item in schema:
            _adjust(item)
        return
    if not isinstance(schema, dict):
        return
    items = schema.get("items")
    if isinstance(items, dict):
        items.pop("readOnly", None)
    properties = schema.get("properties")
    if isinstance(properties, dict):
        placeholder = properties.pop("cf:custom_field_name", None)
        if placeholder is not None:
            schema.setdefault("patternProperties", {})["^cf:"] = placeholder
        schema.setdefault("additionalProperties", False)
    for key, value in schema.items():
        if key not in ("example", "examples", "description"):
            _adjust(value)


def operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """``(template, operation)`` of the spec for a request path such as ``/v3/activities/<uuid>``."""
    path = path.removeprefix("/v3")
    paths = contract()["paths"]
    if path in paths and method.lower() in paths[path]:
        return path, paths[path][method.lower()]
    for template, operations in paths.items():
        pattern = "^" + re.sub(r"\\{[^/]+\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, path) and method.lower() in operations:
            return template, operations[method.lower()]
    raise AssertionError(f"{method} {path} is not an operation of CC's spec {SPEC_BUILD}")


# OpenAPI 3.0 has no patternProperties; for the import's "cf:" keys (see the module docstring) the keyword
# is taken from jsonschema's own Draft 4 implementation, which the OAS 3.0 validators build on.
_PATTERN_PROPERTIES = {"patternProperties": Draft4Validator.VALIDATORS["patternProperties"]}
REQUEST_VALIDATOR = validators.extend(OAS30WriteValidator, _PATTERN_PROPERTIES)  # readOnly refused
RESPONSE_VALIDATOR = validators.extend(OAS30ReadValidator, _PATTERN_PROPERTIES)  # writeOnly refused


def _validator(schema: dict[str, Any], *, write: bool) -> Any:
    # The schema's $refs ("#/components/schemas/...") resolve against a root that carries the components.
    root = {**schema, "components": contract()["components"]}
    cls = REQUEST_VALIDATOR if write else RESPONSE_VALIDATOR
    return cls(root, format_checker=oas30_format_checker)


def _messages(errors: Iterator[Any]) -> list[str]:
    return sorted(
        f"{'/'.join(str(p) for p in error.absolute_path) or '(body)'}: {error.message}" for error in errors
    )


def request_problems(
    method: str, path: str, body: Any = None, query: dict[str, list[str]] | None = None
) -> list[str]:
    """What CC's spec refuses in a request: its JSON body, and each query parameter."""
    template, op = operation(method, path)
    problems = []
    content = (op.get("requestBody") or {}).get("content") or {}
    if body is not None:
        schema = (content.get("application/json") or {}).get("schema")
        if schema is None:
            problems.append(f"{method} {template} takes no JSON body")
        else:
            problems += _messages(_validator(schema, write=True).iter_errors(body))
    elif (op.get("requestBody") or {}).get("required"):
        problems.append(f"{method} {template} needs a body")
    parameters = {p["name"]: p for p in op.get("parameters") or [] if p.get("in") == "query"}
    for name, values in (query or {}).items():
        if name not in parameters:
            problems.append(f"query {name!r} is not a parameter of {method} {template}")
            continue
        schema = dict(parameters[name]["schema"])
        for value in values:
            items = value.split(",") if schema.pop("format", None) == "csv" else [value]
            for item in items:
                problems += [
                    f"query {name}: {m}"
                    for m in _messages(_validator(schema, write=True).iter_errors(_typed(item, schema)))
                ]
    return problems


def _typed(value: str, schema: dict[str, Any]) -> Any:
    # Query strings are text; the parameter's schema types them.
    try:
        if schema.get("type") == "integer":
            return int(value)
        if schema.get("type") == "boolean":
            return {"true": True, "false": False}[value]
    except (ValueError, KeyError):
        return value
    return value


def response_problems(method: str, path: str, status: int, body: Any) -> list[str]:
    """What CC's spec refuses in an answer: an undocumented status, or a body outside its schema."""
    template, op = operation(method, path)
    documented = op["responses"].get(str(status))
    if documented is None:
        return [f"{method} {template} has no {status} answer in the spec"]
    schema = ((documented.get("content") or {}).get("application/json") or {}).get("schema")
    if schema is None:
        return [] if body is None else [f"{method} {template} {status} has no JSON body in the spec"]
    return _messages(_validator(schema, write=False).iter_errors(body))


# -- what cc_sync sends ---------------------------------------------------------------------------------


@dataclass
class Exchange:
    """One request cc_sync's client sent to the sandbox, and the answer."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    status: int
    answer: Any


@dataclass
class Recorder:
    exchanges: list[Exchange] = field(default_factory=list)

    def __call__(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        request = response.request
        url = urlsplit(request.url or "")
        if not url.path.startswith("/v3/"):
            return
        raw = request.body.decode() if isinstance(request.body, bytes) else request.body
        try:
            answer = response.json() if response.content else None
        except ValueError:
            answer = response.text
        self.exchanges.append(
            Exchange(
                method=request.method or "",
                path=url.path,
                query=parse_qs(url.query, keep_blank_values=True),
                body=json.loads(raw) if raw else None,
                status=response.status_code,
                answer=answer,
            )
        )


def full_signup(email: str) -> Signup:
    """A signup with every field the form and ``enqueue_signup`` can fill, at the form's limits."""
    return Signup(
        email=email,
        first_name="F" * 50,
        last_name="L" * 50,
        job_title="J" * 50,
        company_name="C" * 50,
        phone_number="+1 555 0100 ext 123456789",  # 25 characters, sign_up_form's limit
        custom_fields=[{"custom_field_id": CUSTOM_FIELD_ID, "value": "V" * 255}],
        street_address={
            "kind": "home",
            "street": "S" * 255,
            "city": "Chicago",
            "state": "Illinois",
            "postal_code": "60609",
            "country": "United States",
        },
        list_ids=[LIST_ID],
    )


def minimal_signup(email: str) -> Signup:
    return Signup(email=email)


def full_import_contact(email: str) -> dict[str, str]:
    """The import entry for a source row with every column the backfill reads, at the import's limits."""
    return backfill.contact_from(
        {
            "email": email,
            "first_name": "F" * 50,
            "last_name": "L" * 50,
            "job_title": "J" * 50,
            "company_name": "C" * 50,
            "phone_number": "5" * 50,
            "cf:favourite_colour": "V" * 255,
        }
    )


@dataclass
class Call:
    """cc_sync's client talking to the sandbox: ``client``, an access ``token``, and the ``sandbox``."""

    client: ConstantContactClient
    token: str
    sandbox: Sandbox


def sign_up_form_full(call: Call) -> None:
    call.client.sign_up_form(call.token, sync.payload_for(full_signup("full@example.com"), [LIST_ID]))


def sign_up_form_minimal(call: Call) -> None:
    call.client.sign_up_form(call.token, sync.payload_for(minimal_signup("minimal@example.com"), [LIST_ID]))


def sign_up_form_lists_only(call: Call) -> None:
    # A deleted contact, or a confirmed re-subscription of an unverified submitter: email and lists only.
    signup = full_signup("lists-only@example.com")
    call.client.sign_up_form(call.token, sync.payload_for(signup, [LIST_ID], details=False))


def create_contact_full(call: Call) -> None:
    call.client.create_contact(
        call.token, sync.create_body_for(full_signup("new-full@example.com"), [LIST_ID])
    )


def create_contact_minimal(call: Call) -> None:
    call.client.create_contact(
        call.token, sync.create_body_for(minimal_signup("new-min@example.com"), [LIST_ID])
    )


def find_contact(call: Call) -> None:
    call.client.create_contact(call.token, sync.create_body_for(full_signup("found@example.com"), [LIST_ID]))
    call.client.find_contact(call.token, "found@example.com")
    call.client.find_contact(call.token, "nobody@example.com")


def add_list_memberships(call: Call) -> None:
    contact_id = call.client.create_contact(
        call.token, sync.create_body_for(minimal_signup("member@example.com"), [LIST_ID])
    )
    assert contact_id, "the sandbox did not create the contact"
    call.client.add_list_memberships(call.token, contact_id, [OTHER_LIST])


def contacts_json_import(call: Call) -> None:
    contacts = [
        full_import_contact("import-full@example.com"),
        backfill.contact_from({"email": "i@example.com"}),
    ]
    call.client.import_contacts_json(call.token, contacts, [LIST_ID, OTHER_LIST])


def surge_import(call: Call) -> None:
    # Surge mode's bodies: a stranger's signup (email only) and verified ones with their details.
    verified = full_signup("verified@example.com")
    verified.verified, verified.custom_fields = True, []
    work = full_signup("work@example.com")
    work.verified, work.custom_fields = True, []
    work.street_address = {**(work.street_address or {}), "kind": "work"}
    contacts = [surge.contact_for(s) for s in (full_signup("stranger@example.com"), verified, work)]
    call.client.import_contacts_json(call.token, contacts, [LIST_ID])


def unsubscribed_contacts(call: Call) -> None:
    # After an import CC could not add some contacts to: the account's unsubscribed contacts. Only the first
    # page's query is cc_sync's; later pages follow CC's own opaque `_links.next.href`, as for the lists.
    call.sandbox.add_contact("gone@example.com", permission_to_send="unsubscribed")
    call.client.contacts_page(call.token, {"status": "unsubscribed", "limit": surge.UNSUBSCRIBED_PAGE_SIZE})


def activity_polling(call: Call) -> None:
    contacts = [backfill.contact_from({"email": "polled@example.com"})]
    activity = call.client.import_contacts_json(call.token, contacts, [LIST_ID])
    for _poll in range(2):  # processing, then completed (the sandbox's import_polls=2)
        call.client.activity(call.token, activity["activity_id"])


def contact_lists(call: Call) -> None:
    call.client.contact_lists(call.token)


def account_summary(call: Call) -> None:
    call.client.account_summary(call.token)


#: Every call cc_sync makes, driven by its own builders and client. One entry per call (or variant).
SCENARIOS = [
    pytest.param(sign_up_form_full, id="sign_up_form-full"),
    pytest.param(sign_up_form_minimal, id="sign_up_form-minimal"),
    pytest.param(sign_up_form_lists_only, id="sign_up_form-lists-only"),
    pytest.param(create_contact_full, id="POST-contacts-full"),
    pytest.param(create_contact_minimal, id="POST-contacts-minimal"),
    pytest.param(find_contact, id="GET-contacts-by-email"),
    pytest.param(add_list_memberships, id="add_list_memberships"),
    pytest.param(contacts_json_import, id="contacts_json_import"),
    pytest.param(surge_import, id="contacts_json_import-surge"),
    pytest.param(unsubscribed_contacts, id="GET-contacts-unsubscribed-pages"),
    pytest.param(activity_polling, id="activity-polling"),
    pytest.param(contact_lists, id="GET-contact_lists"),
    pytest.param(account_summary, id="GET-account-summary"),
]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox("127.0.0.1", 0, api_rate=None, token_rate=None, daily_quota=None) as started:
        yield started


_recorded: dict[str, tuple[list[Exchange], str]] = {}


@pytest.fixture
def exchanges(request: pytest.FixtureRequest, sandbox: Sandbox, db: Any, cc_settings: dict[str, Any]):
    """Run a scenario once against the sandbox (shared by its request and answer tests): what was sent."""

    def run(scenario: Callable[[Call], None]) -> tuple[list[Exchange], str]:
        if scenario.__name__ not in _recorded:
            cc_settings.update(sandbox.cc_sync_settings())
            recorder = Recorder()
            session = requests.Session()
            session.hooks["response"].append(recorder)
            call = Call(
                ConstantContactClient(session=session), sandbox.issue_tokens()["access_token"], sandbox
            )
            failure = ""
            try:
                scenario(call)
            except Exception as err:  # what was sent before it still counts
                failure = f"{type(err).__name__}: {err}"
            _recorded[scenario.__name__] = (recorder.exchanges, failure)
        return _recorded[scenario.__name__]

    return run


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_request_cc_sync_sends_conforms_to_the_spec(exchanges, scenario):
    sent, _failure = exchanges(scenario)

    assert sent, "the scenario sent nothing"
    problems = {f"{e.method} {e.path}": request_problems(e.method, e.path, e.body, e.query) for e in sent}
    assert {call: found for call, found in problems.items() if found} == {}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_sandbox_answer_conforms_to_the_spec(exchanges, scenario):
    sent, failure = exchanges(scenario)

    assert sent, f"the scenario sent nothing ({failure})"
    refused = [f"{e.method} {e.path} -> {e.status}: {e.answer}" for e in sent if e.status >= 300]
    # Every request here is valid by the spec (see the test above): the sandbox must take it.
    assert refused == [], failure
    problems = {
        f"{e.method} {e.path} -> {e.status}": response_problems(e.method, e.path, e.status, e.answer)
        for e in sent
    }
    assert {call: found for call, found in problems.items() if found} == {}
    assert failure == ""


# -- the validator refuses drift ------------------------------------------------------------------------


def sign_up_form_body() -> dict[str, Any]:
    return sync.payload_for(full_signup("full@example.com"), [LIST_ID])


def import_body() -> dict[str, Any]:
    return json.loads(backfill.request_body([full_import_contact("a@example.com")], [LIST_ID]))


def _set(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    target = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


def _drop_and_add(body: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    changed[new] = changed.pop(old)
    return changed


SIGN_UP = ("POST", "/v3/contacts/sign_up_form")
IMPORT = ("POST", "/v3/activities/contacts_json_import")


@pytest.mark.parametrize(
    "call, body, refusal",
    [
        (SIGN_UP, lambda: _set(sign_up_form_body(), ("first_name",), 42), "42 is not of type 'string'"),
        (SIGN_UP, lambda: _set(sign_up_form_body(), ("first_name",), "x" * 51), "is too long"),
        (SIGN_UP, lambda: _set(sign_up_form_body(), ("phone_number",), "5" * 26), "is too long"),
        (
            SIGN_UP,
            lambda: _set(sign_up_form_body(), ("list_memberships",), ["newsletter"]),
            "is not a 'uuid'",
        ),
        (SIGN_UP, lambda: _set(sign_up_form_body(), ("list_memberships",), []), "should be non-empty"),
        (
            SIGN_UP,
            lambda: _set(sign_up_form_body(), ("custom_fields", 0, "custom_field_id"), "favourite_colour"),
            "is not a 'uuid'",
        ),
        (
            SIGN_UP,
            lambda: _drop_and_add(sign_up_form_body(), "phone_number", "phone"),
            "'phone' was unexpected",
        ),
        (
            SIGN_UP,
            lambda: _set(sign_up_form_body(), ("street_address", "zip"), "60609"),
            "'zip' was unexpected",
        ),
        (IMPORT, lambda: _set(import_body(), ("list_ids",), ["list-1"]), "is not a 'uuid'"),
        (IMPORT, lambda: _set(import_body(), ("import_data", 0, "phone"), "5" * 51), "is too long"),
        (
            IMPORT,
            lambda: _set(import_body(), ("import_data", 0, "cf:favourite_colour"), "v" * 256),
            "is too long",
        ),
        (
            IMPORT,
            lambda: _drop_and_add(import_body(), "list_ids", "lists"),
            "'list_ids' is a required property",
        ),
        (
            IMPORT,
            lambda: {**import_body(), "import_data": [{"email": "a@example.com", "phone_number": "555"}]},
            "'phone_number' was unexpected",
        ),
        (
            IMPORT,
            lambda: _set(import_body(), ("import_data", 0, "birthday_month"), "11"),
            "'11' is not of type 'integer'",
        ),
    ],
)
def test_the_validator_refuses_a_body_that_drifts_from_the_spec(call, body, refusal):
    method, path = call

    problems = request_problems(method, path, body())

    assert any(refusal in problem for problem in problems), problems


def test_read_only_properties_stay_refused_in_requests():
    # The items adjustment (module docstring) keeps readOnly where OpenAPI defines it: on properties.
    body = {"email_address": {"address": "a@example.com", "created_at": "2024-01-01T00:00:00Z"}}

    problems = request_problems("PUT", "/v3/contacts/ab7ab702-b935-11e9-8a58-fa163e6b01c1", body)

    assert any("read-only" in problem for problem in problems), problems


def test_the_unmutated_bodies_pass():
    assert request_problems(*SIGN_UP, sign_up_form_body()) == []
    assert request_problems(*IMPORT, import_body()) == []


@pytest.mark.parametrize(
    "query, refusal",
    [
        ({"email": ["a@example.com"], "status": ["everything"]}, "'everything' is not one of"),
        ({"email": ["a@example.com"], "include": ["list_memberships,friends"]}, "'friends' is not one of"),
        ({"email": ["a@example.com"], "limit": ["501"]}, "501 is greater than the maximum of 500"),
        ({"e-mail": ["a@example.com"]}, "'e-mail' is not a parameter"),
    ],
)
def test_the_validator_refuses_a_query_that_drifts_from_the_spec(query, refusal):
    assert request_problems("GET", "/v3/contacts", query={"email": ["a@example.com"]}) == []

    problems = request_problems("GET", "/v3/contacts", query=query)

    assert any(refusal in problem for problem in problems), problems


def test_the_validator_refuses_an_answer_that_drifts_from_the_spec():
    good = {"activity_id": "86b90820-cc52-11ea-9dad-fa163e3d9194", "state": "completed", "percent_done": 100}
    assert response_problems("GET", "/v3/activities/x", 200, good) == []

    assert "'100%' is not of type 'integer'" in " ".join(
        response_problems("GET", "/v3/activities/x", 200, {**good, "percent_done": "100%"})
    )
    assert "'activity-1' is not a 'uuid'" in " ".join(
        response_problems("GET", "/v3/activities/x", 200, {**good, "activity_id": "activity-1"})
    )
    assert "'percent' was unexpected" in " ".join(
        response_problems("GET", "/v3/activities/x", 200, {**good, "percent": 100})
    )
    assert response_problems("GET", "/v3/activities/x", 202, good) == [
        "GET /activities/{activity_id} has no 202 answer in the spec"
    ]


# -- limits that cc_sync keeps in code ------------------------------------------------------------------


def test_the_backfill_import_limits_are_the_specs():
    item = raw_contract()["components"]["schemas"]["createImportJSONActivity_request_import_data_inner"]
    limits = {key: item["properties"][key]["maxLength"] for _column, key, _limit in backfill.TEXT_FIELDS}

    assert limits == {key: limit for _column, key, limit in backfill.TEXT_FIELDS}
    assert item["properties"]["email"]["maxLength"] == backfill.IMPORT_EMAIL_MAX_LENGTH
    assert item["properties"]["cf:custom_field_name"]["maxLength"] == backfill.IMPORT_CUSTOM_FIELD_MAX_LENGTH
    request = raw_contract()["components"]["schemas"]["createImportJSONActivity_request"]
    assert request["properties"]["list_ids"]["maxItems"] == 50
    assert (
        "up to 25 custom fields"
        in raw_contract()["paths"]["/activities/contacts_json_import"]["post"]["description"]
    )
    assert backfill.MAX_CUSTOM_FIELDS == 25


def test_the_spec_is_the_build_the_project_follows():
    assert raw_contract()["info"]["description"] == f"Swagger build version {SPEC_BUILD}"
