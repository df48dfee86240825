"""Admin API of alert rules (issue 14): create, list, read, change (snooze: ``snoozed_until``), delete,
rotate the webhook signing secret. Bearer admin key required.

Rules are configuration: they live in the configuration store beside goals and links (key
``alert/<id>``), so every write returns once it is durable and applied on this edge and reaches every
edge through the shared store. The rule's live state (normal, pending, firing) is not part of these
answers. Channel URLs go through the SSRF guard when saved, as a goal's ``postback_url`` does.
"""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from ingest.errors import Rejected, bad_request
from ingest.formats.admin_models import new_id, new_signing_secret
from ingest.formats.alert_models import (
    AlertCreate,
    alert_answer,
    new_alert,
    patched_alert,
    rotated_alert,
    rule_problem,
)
from ingest.http.answers import AlertCreated, Alerts, AlertSecretRotated, AlertWithStatus
from ingest.http.api import Answer, Body, Param
from ingest.http.auth import require_admin
from ingest.http.common import OUTBOUND, json_response
from ingest.http.request_info import config_store
from ingest.http.routes.admin import _admin, _parsed, _project_filter, _write
from schemas.alerts import AlertRule, AlertRulePatch, AlertStates
from schemas.config import ConfigRecord, ConfigStore, StoredAlertRule, alert_key, alert_record


def _alert_or_404(store: ConfigStore, alert_id: str) -> StoredAlertRule:
    rule = store.state.alert(alert_id)
    if rule is None:
        raise Rejected(404, "unknown_alert", f"no alert rule with id {alert_id[:80]!r}")
    return rule


def _check(request: web.Request, store: ConfigStore, rule: AlertRule, *, scope: bool, channels: bool) -> None:
    problem = rule_problem(
        rule, store.state, request.app[OUTBOUND].allow_list, scope=scope, channels=channels
    )
    if problem is not None:
        raise problem


async def create_alert(request: web.Request) -> web.Response:
    require_admin(request)
    store = config_store(request)
    spec = await _parsed(request, AlertCreate, "alert")
    now = datetime.now(UTC)
    alert_id = new_id()
    # 72 random bits: a clash practically never happens; no leading "-" (a CLI argument, not an option)
    while store.state.alert(alert_id) is not None or alert_id.startswith("-"):
        alert_id = new_id()
    secret = new_signing_secret()
    rule = new_alert(spec, now, alert_id, secret)
    _check(request, store, rule, scope=True, channels=True)
    await _write(store, [alert_record(rule)])
    answer = alert_answer(rule)
    answer["signing_secret"] = secret.text  # the only answer that ever shows it
    return json_response(answer, status=201)


ALERT_STATES = web.AppKey("alert_states", AlertStates)


async def _with_status(request: web.Request, rules: list[StoredAlertRule]) -> list[dict[str, object]]:
    """The rules as answered, each with ``status`` (its state and last transitions) when this process
    evaluates them (the embedded mode), else ``null``."""
    states = request.app.get(ALERT_STATES)
    found = await states.status([r.id for r in rules]) if states is not None and rules else {}
    out = []
    for r in rules:
        status = found.get(r.id)
        out.append({**alert_answer(r), "status": None if status is None else status.model_dump(mode="json")})
    return out


async def list_alerts(request: web.Request) -> web.Response:
    require_admin(request)
    rules = config_store(request).state.alerts(_project_filter(request))
    return json_response({"alerts": await _with_status(request, rules)})


async def get_alert(request: web.Request) -> web.Response:
    require_admin(request)
    rule = _alert_or_404(config_store(request), request.match_info["alert_id"])
    return json_response((await _with_status(request, [rule]))[0])


async def patch_alert(request: web.Request) -> web.Response:
    require_admin(request)
    store = config_store(request)
    rule = _alert_or_404(store, request.match_info["alert_id"])
    patch = await _parsed(request, AlertRulePatch, "alert")
    updated = patched_alert(rule, patch, datetime.now(UTC))
    given = patch.model_fields_set
    _check(request, store, updated, scope="scope" in given, channels="channels" in given)
    await _write(store, [alert_record(updated)])
    return json_response(alert_answer(updated))


async def rotate_alert_secret(request: web.Request) -> web.Response:
    require_admin(request)
    store = config_store(request)
    rule = _alert_or_404(store, request.match_info["alert_id"])
    if request.rel_url.query:
        raise bad_request("invalid_query", "this call takes no parameters")
    secret = new_signing_secret()
    updated = rotated_alert(rule, secret, datetime.now(UTC), request.app[OUTBOUND].secret_grace)
    await _write(store, [alert_record(updated)])
    previous = updated.signing_keys[1].expires_at if len(updated.signing_keys) > 1 else None
    body = {"alert_id": rule.id, "signing_secret": secret.text, "previous_expires_at": previous}
    return json_response(AlertSecretRotated.model_validate(body).model_dump(mode="json"))


async def delete_alert(request: web.Request) -> web.Response:
    require_admin(request)
    store = config_store(request)
    rule = _alert_or_404(store, request.match_info["alert_id"])
    await _write(store, [ConfigRecord(alert_key(rule.id), None)])
    return web.Response(status=204)


_ALERTS = "/api/v1/alerts"
_ALERT = "/api/v1/alerts/{alert_id}"
_ALERT_ID = Param("alert_id", "alert rule id", where="path")
_PROJECT = Param("project", "only this project's (no other parameter is accepted)")
_THE_RULE = Answer(200, "the rule", AlertRule)
_THE_RULE_NOW = Answer(200, "the rule and where it stands", AlertWithStatus)

ENDPOINTS = (
    _admin(
        "POST",
        _ALERTS,
        create_alert,
        'Create an alert rule (body flat or {"alert": {...}})',
        Answer(201, "created; signing_secret is shown in this answer only", AlertCreated),
        *(400, 408, 413),
        body=Body(AlertCreate, wrapper="alert"),
    ),
    _admin(
        "GET", _ALERTS, list_alerts, "List alert rules", Answer(200, "rules", Alerts), 400, params=(_PROJECT,)
    ),
    _admin("GET", _ALERT, get_alert, "One alert rule", _THE_RULE_NOW, 404, params=(_ALERT_ID,)),
    _admin(
        "PATCH",
        _ALERT,
        patch_alert,
        "Change an alert rule (project is fixed; null clears an optional field; snooze: snoozed_until)",
        _THE_RULE,
        *(400, 404, 408, 413),
        body=Body(AlertRulePatch, wrapper="alert"),
        params=(_ALERT_ID,),
    ),
    _admin(
        "POST",
        _ALERT + "/secret/rotate",
        rotate_alert_secret,
        "New webhook signing secret of the rule (shown once); the previous one signs for the grace period",
        Answer(200, "the new secret", AlertSecretRotated),
        *(400, 404),
        params=(_ALERT_ID,),
    ),
    _admin(
        "DELETE",
        _ALERT,
        delete_alert,
        "Delete an alert rule",
        Answer(204, "deleted", media_type=None),
        404,
        params=(_ALERT_ID,),
    ),
)
