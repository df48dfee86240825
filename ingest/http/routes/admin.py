"""Admin API: conversion goals (PVTLNK reference) and tracking links. Bearer admin key required.

Every write returns once the configuration store made it durable and applied it on this edge, so the
answer's goal / link is usable at once here and, through the shared store, shortly on every edge.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from ingest.errors import Rejected, bad_request
from ingest.formats.admin_models import (
    GoalCreate,
    GoalPatch,
    LinkCreate,
    LinkPatch,
    goal_answer,
    link_answer,
    new_goal,
    new_id,
    new_link,
    new_signing_secret,
    new_token,
    others_losing_default,
    patched_goal,
    patched_link,
    refused_destination,
    refused_postback,
    rotated_goal,
    unwrap,
    validation_rejection,
)
from ingest.http.answers import GoalAnswer, GoalCreated, Goals, LinkAnswer, Links, SecretRotated
from ingest.http.api import Answer, Body, Endpoint, Handler, Param
from ingest.http.auth import require_admin
from ingest.http.common import OUTBOUND, json_response
from ingest.http.request_info import config_store, decode_json_object, public_base, read_body
from schemas.config import ConfigRecord as Record
from schemas.config import ConfigStore, ConfigStoreError, Goal, Link, goal_key, goal_record, link_record


async def _write(store: ConfigStore, records: list[Record]) -> None:
    try:
        await store.write(records)
    except ConfigStoreError as exc:
        if exc.retriable:
            raise Rejected(503, "config_unavailable", str(exc), headers={"Retry-After": "1"}) from None
        raise


def _project_filter(request: web.Request) -> str | None:
    unknown = set(request.rel_url.query) - {"project"}
    if unknown:
        raise bad_request("invalid_query", f"unknown parameter(s): {', '.join(sorted(unknown))}")
    project = request.rel_url.query.get("project")
    return project.strip() if project and project.strip() else None


M = TypeVar("M", bound=BaseModel)


def _check_goal_url(request: web.Request, goal: Goal) -> None:
    if goal.postback_url is not None:
        refused = refused_destination("postback_url", goal.postback_url, request.app[OUTBOUND].allow_list)
        if refused is not None:
            raise refused


def _check_link(request: web.Request, link: Link) -> None:
    refused = refused_postback(link, request.app[OUTBOUND].allow_list)
    if refused is not None:
        raise refused


def _check_link_goal(store: ConfigStore, goal_id: str | None, project: str) -> None:
    if goal_id is not None:
        goal = store.state.goal(goal_id)
        if goal is None:
            raise bad_request("invalid_field", f"goal: {goal_id!r} is not a known goal")
        if goal.project != project:
            raise bad_request("invalid_field", f"goal: {goal_id!r} belongs to project {goal.project!r}")


def _goal_or_404(store: ConfigStore, goal_id: str) -> Goal:
    goal = store.state.goal(goal_id)
    if goal is None:
        raise Rejected(404, "unknown_goal", f"no goal with id {goal_id[:80]!r}")
    return goal


def _link_or_404(store: ConfigStore, link_id: str) -> Link:
    link = store.state.link(link_id)
    if link is None:
        raise Rejected(404, "unknown_link", f"no link with id {link_id[:80]!r}")
    return link


async def _body(request: web.Request, wrapper: str) -> dict[str, object]:
    return unwrap(decode_json_object(await read_body(request), f"a {wrapper} object"), wrapper)


async def _parsed(request: web.Request, model: type[M], wrapper: str) -> M:
    """The request body as ``model`` (``{wrapper: {...}}`` or flat); a bad one is a 400 naming the field."""
    try:
        return model.model_validate(await _body(request, wrapper))
    except ValidationError as exc:
        raise validation_rejection(exc) from None


async def create_goal(request: web.Request) -> web.Response:
    require_admin(request)
    store = config_store(request)
    spec = await _parsed(request, GoalCreate, "goal")
    now = datetime.now(UTC)
    goal_id = new_id()
    while store.state.goal(goal_id) is not None:  # 72 random bits: practically never loops
        goal_id = new_id()
    secret = new_signing_secret()
    goal = new_goal(spec, now, goal_id, new_token(), secret)
    _check_goal_url(request, goal)
    records = [goal_record(g) for g in others_losing_default(store.state, goal, now)] + [goal_record(goal)]
    await _write(store, records)
    answer = goal_answer(goal, public_base(request))
    answer["signing_secret"] = secret.text  # the only answer that ever shows it
    return json_response(answer, status=201)


async def list_goals(request: web.Request) -> web.Response:
    require_admin(request)
    store = config_store(request)
    base = public_base(request)
    goals = store.state.goals(_project_filter(request))
    return json_response({"goals": [goal_answer(g, base) for g in goals]})


async def get_goal(request: web.Request) -> web.Response:
    require_admin(request)
    store = config_store(request)
    goal = _goal_or_404(store, request.match_info["goal_id"])
    return json_response(goal_answer(goal, public_base(request)))


async def patch_goal(request: web.Request) -> web.Response:
    require_admin(request)
    store = config_store(request)
    goal = _goal_or_404(store, request.match_info["goal_id"])
    patch = await _parsed(request, GoalPatch, "goal")
    now = datetime.now(UTC)
    updated = patched_goal(goal, patch, now)
    if "postback_url" in patch.model_fields_set:
        _check_goal_url(request, updated)
    records = [goal_record(g) for g in others_losing_default(store.state, updated, now)]
    await _write(store, [*records, goal_record(updated)])
    return json_response(goal_answer(updated, public_base(request)))


async def rotate_secret(request: web.Request) -> web.Response:
    require_admin(request)
    store = config_store(request)
    goal = _goal_or_404(store, request.match_info["goal_id"])
    if request.rel_url.query:
        raise bad_request("invalid_query", "this call takes no parameters")
    secret = new_signing_secret()
    now = datetime.now(UTC)
    updated = rotated_goal(goal, secret, now, request.app[OUTBOUND].secret_grace)
    await _write(store, [goal_record(updated)])
    previous = updated.signing_keys[1].expires_at if len(updated.signing_keys) > 1 else None
    body = {"goal_id": goal.id, "signing_secret": secret.text, "previous_expires_at": previous}
    return json_response(SecretRotated.model_validate(body).model_dump(mode="json"))


async def delete_goal(request: web.Request) -> web.Response:
    require_admin(request)
    store = config_store(request)
    goal = _goal_or_404(store, request.match_info["goal_id"])
    await _write(store, [Record(goal_key(goal.id), None)])
    return web.Response(status=204)


async def create_link(request: web.Request) -> web.Response:
    require_admin(request)
    store = config_store(request)
    spec = await _parsed(request, LinkCreate, "link")
    _check_link_goal(store, spec.goal, spec.project)
    link_id = new_id()
    while store.state.link(link_id) is not None:
        link_id = new_id()
    link = new_link(spec, datetime.now(UTC), link_id)
    _check_link(request, link)
    await _write(store, [link_record(link)])
    return json_response(link_answer(link, public_base(request)), status=201)


async def list_links(request: web.Request) -> web.Response:
    require_admin(request)
    store = config_store(request)
    base = public_base(request)
    return json_response(
        {"links": [link_answer(ln, base) for ln in store.state.links(_project_filter(request))]}
    )


async def get_link(request: web.Request) -> web.Response:
    require_admin(request)
    store = config_store(request)
    link = _link_or_404(store, request.match_info["link_id"])
    return json_response(link_answer(link, public_base(request)))


async def patch_link(request: web.Request) -> web.Response:
    require_admin(request)
    store = config_store(request)
    link = _link_or_404(store, request.match_info["link_id"])
    patch = await _parsed(request, LinkPatch, "link")
    updated = patched_link(link, patch, datetime.now(UTC))
    if "goal" in patch.model_fields_set:
        _check_link_goal(store, updated.goal, updated.project)
    _check_link(request, updated)
    await _write(store, [link_record(updated)])
    return json_response(link_answer(updated, public_base(request)))


_GOALS = "/api/v1/conversions/goals"
_GOAL = "/api/v1/conversions/goals/{goal_id}"
_GOAL_ID = Param("goal_id", "goal id", where="path")
_LINK_ID = Param("link_id", "link id", where="path")
_PROJECT = Param("project", "only this project's (no other parameter is accepted)")
_THE_GOAL = Answer(200, "the goal", GoalAnswer)


def _admin(
    method: str,
    path: str,
    handler: Handler,
    summary: str,
    answer: Answer,
    *errors: int,
    body: Body | None = None,
    params: tuple[Param, ...] = (),
) -> Endpoint:
    return Endpoint(
        method,
        (path,),
        handler,
        summary,
        "admin",
        answer,
        errors,
        auth="admin",
        body=body,
        params=params,
        allow_head=False,
    )


ENDPOINTS = (
    _admin(
        "POST",
        _GOALS,
        create_goal,
        'Create a goal (body flat or {"goal": {...}})',
        Answer(201, "created; signing_secret is shown in this answer only", GoalCreated),
        *(400, 408, 413),
        body=Body(GoalCreate, wrapper="goal"),
    ),
    _admin("GET", _GOALS, list_goals, "List goals", Answer(200, "goals", Goals), 400, params=(_PROJECT,)),
    _admin("GET", _GOAL, get_goal, "One goal", _THE_GOAL, 404, params=(_GOAL_ID,)),
    _admin(
        "PATCH",
        _GOAL,
        patch_goal,
        "Change a goal (project and token are fixed)",
        _THE_GOAL,
        *(400, 404, 408, 413),
        body=Body(GoalPatch, wrapper="goal"),
        params=(_GOAL_ID,),
    ),
    _admin(
        "POST",
        _GOAL + "/secret/rotate",
        rotate_secret,
        "New webhook signing secret (shown once); the previous one signs for the grace period too",
        Answer(200, "the new secret", SecretRotated),
        *(400, 404),
        params=(_GOAL_ID,),
    ),
    _admin(
        "DELETE",
        _GOAL,
        delete_goal,
        "Delete a goal (its token stops working)",
        Answer(204, "deleted", media_type=None),
        404,
        params=(_GOAL_ID,),
    ),
    _admin(
        "POST",
        "/api/v1/links",
        create_link,
        'Create a tracking link (body flat or {"link": {...}})',
        Answer(201, "created", LinkAnswer),
        *(400, 408, 413),
        body=Body(LinkCreate, wrapper="link"),
    ),
    _admin(
        "GET", "/api/v1/links", list_links, "List links", Answer(200, "links", Links), 400, params=(_PROJECT,)
    ),
    _admin(
        "GET",
        "/api/v1/links/{link_id}",
        get_link,
        "One link",
        Answer(200, "the link", LinkAnswer),
        404,
        params=(_LINK_ID,),
    ),
    _admin(
        "PATCH",
        "/api/v1/links/{link_id}",
        patch_link,
        "Change a link (project is fixed; null clears an optional field)",
        Answer(200, "the link", LinkAnswer),
        *(400, 404, 408, 413),
        body=Body(LinkPatch, wrapper="link"),
        params=(_LINK_ID,),
    ),
)
