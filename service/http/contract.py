"""Validation and the OpenAPI document, both generated from the models in ``service.http.schemas``.

spectree was chosen over flask-openapi3 and apispec: it decorates ordinary Flask views in ordinary
blueprints (flask-openapi3 replaces ``Flask`` and ``Blueprint`` with its own classes), it validates
requests *and* responses against the same pydantic models (apispec only documents), and it writes
OpenAPI 3.1. Routes that take no body (pages, image files, probes) are listed too, so the document
covers every route.

A request that fails validation raises ``ApiError`` here, so it gets the same JSON error body as
every other error (``service.http.errors``), with the field at fault named.
"""
from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable

from flask import Response as FlaskResponse
from flask import current_app, jsonify, request
from pydantic import BaseModel, ValidationError
from spectree import Response, SecurityScheme, SpecTree
from spectree.model_adapter.pydantic_adapter import PydanticModelAdapter
from spectree.models import SecuritySchemeData

from service.http import schemas
from service.http.auth import CSRF_HEADER, SESSION_COOKIE, authenticate, require_write
from service.http.errors import ApiError


class _ModelAdapter(PydanticModelAdapter):
    """spectree's pydantic adapter, minus the offending input in its error list: spectree turns that
    list into JSON before our hook runs, and an uploaded file in it is not JSON."""

    def validation_errors(self, err: ValidationError):
        return err.errors(include_context=False, include_input=False, include_url=False)


api = SpecTree(
    "flask",
    title="With Sense",
    version="1.0.0",
    description="Photo search by description. Every error is JSON: "
                '{"error", "status", "field"?}; see docs/api.md.',
    page_templates={},  # no Swagger/ReDoc pages: they load scripts from CDNs this service cannot assume
    annotations=False,
    # Every schema under its class's plain name, nested ones too (spectree's default prefixes a
    # nested model with its parent's name, so SearchState would be two schemas): client generators
    # make one class per schema. The names in service.http.schemas are unique.
    naming_strategy=lambda model: model.__name__,
    nested_naming_strategy=lambda _parent, child: child,
    model_adapter=_ModelAdapter(),
    validation_error_status=400,
    validation_error_model=schemas.ErrorBody,
    security_schemes=[
        SecurityScheme(name="bearerToken", data=SecuritySchemeData(type="http", scheme="bearer")),
        # The web page's sign-in (POST /api/session); a change made with it also needs X-CSRF-Token.
        SecurityScheme(name="sessionCookie", data=SecuritySchemeData(
            type="apiKey", name=SESSION_COOKIE, field_in="cookie",
            description=f"from POST /api/session; changes also send the session's {CSRF_HEADER} header")),
    ],
)

BEARER = [{"bearerToken": []}, {"sessionCookie": []}]  # either one

# A photo id in a route: PostgreSQL bigint, from 1. Anything else matches no route (404); the
# bounds are written into the rule so that the OpenAPI document states them.
PHOTO_ID = f"<int(min=1, max={2**63 - 1}):photo_id>"

# Answers an operation may give for reasons outside its own inputs, added where they apply.
DATABASE_ERRORS = (503,)  # the database unreachable (Retry-After)
BODY_ERRORS = (413, 415)  # body over WITHSENSE_MAX_UPLOAD_MB; wrong content type
RATE_LIMITED = (429,)  # WITHSENSE_RATE_LIMIT, _WRITE_RATE_LIMIT, _KEY_FAILURE_LIMIT (Retry-After)
# PATCH and DELETE /api/photos/<id> share their path with GET: for an id outside 1..2**63-1
# werkzeug notes the other routes' methods before it checks the id, so it answers 405, not 404.
ID_OUT_OF_RANGE = (405,)


def responses(ok: dict[int, type[BaseModel] | None], errors: Iterable[int] = ()) -> Response:
    """A spectree ``Response``: the success bodies (``None``: not JSON) and each error status with ``ErrorBody``."""
    codes = {f"HTTP_{status}": model for status, model in ok.items()}
    for status in sorted(set(errors)):
        codes[f"HTTP_{status}"] = schemas.ErrorBody
    without_body = [code for code, model in codes.items() if model is None]
    response = Response(*without_body, **{code: model for code, model in codes.items() if model is not None})
    response.json_success = any(model is not None for model in ok.values())
    return response


def reply(body: schemas.Reply, status: int = 200, headers: dict | None = None) -> FlaskResponse:
    """A response model as the JSON answer. Only the fields the view set are written, so a key the
    contract leaves out when it does not apply (``explain``, ``notice``, ``attempts``...) stays out
    rather than coming back as null."""
    return current_app.response_class(body.model_dump_json(exclude_unset=True), status=status, headers=headers,
                                      mimetype="application/json")


def endpoint(*, json: type[BaseModel] | None = None, form: type[BaseModel] | None = None,
             resp: Response, write: str | None = None, signed_in: bool = False, **options):
    """Validate the body (``json`` and/or ``form``) and the response; the view reads
    ``request.context.json`` / ``request.context.form``. ``write`` endpoints name their action
    (``service.accounts.roles.ACTIONS``) and need a bearer key whose role may do it, checked before
    the body is read, so a refused client never uploads for nothing; ``signed_in`` ones need a key."""

    def decorate(view):
        validated = api.validate(json=json, form=form, resp=resp, security=BEARER if write or signed_in else None,
                                 **options)(view)
        # Pages, image files and the metrics text have no JSON to check: spectree only documents
        # them (its response check would read a streamed file into memory).
        speaks_json = json is not None or form is not None or resp.json_success
        call = validated if speaks_json else view

        @functools.wraps(view)
        def checked(*args, **kwargs):
            if write:
                require_write(write)
            elif signed_in:
                authenticate()
            if json is not None or form is not None:
                _check_body_kind(takes_json=json is not None, takes_form=form is not None)
            return call(*args, **kwargs)

        checked.__wrapped__ = validated  # where spectree finds the operation for the document
        return checked

    return decorate


def _check_body_kind(*, takes_json: bool, takes_form: bool) -> None:
    """415 for a body of a kind the endpoint does not take; 400 for JSON that is not an object.

    spectree would read a non-JSON body as ``{}`` and report the required fields as missing, which
    hides the real mistake (a wrong Content-Type), so the kind is checked first.
    """
    if takes_form and request.mimetype == "multipart/form-data":
        return
    if takes_json and request.is_json:
        try:
            body = request.get_json(silent=True)
        except RecursionError:  # nested thousands of levels deep: the parser gives up, and so do we
            raise ApiError("the body is not a JSON object (nested too deeply)") from None
        if not isinstance(body, dict):
            raise ApiError("the body is not a JSON object")
        return
    if takes_json:
        raise ApiError("send a JSON body with Content-Type: application/json", 415)
    raise ApiError("send the request as multipart/form-data", 415)


_MODELS = {cls.__name__: cls for cls in vars(schemas).values()
           if isinstance(cls, type) and issubclass(cls, (schemas.Body, schemas.Form))}


def _bounds(model: type[BaseModel] | None, field: str) -> tuple | None:
    if model is None:
        return None
    prop = model.model_json_schema().get("properties", {}).get(field, {})
    for option in [prop, *prop.get("anyOf", [])]:
        if "minimum" in option or "maximum" in option:
            return option.get("minimum"), option.get("maximum")
    return None


def _problem(model: type[BaseModel] | None, error: dict) -> tuple[str | None, str]:
    """(field, message) in plain words for one pydantic error."""
    kind = error["type"]
    if kind == "fields_conflict":  # a rule across fields (``schemas.fields_conflict``) names its field
        return error["ctx"]["field"], error["msg"]
    field = ".".join(str(part) for part in error["loc"]) or None
    name = f"'{field}'"
    if kind == "missing" or (kind.endswith("_type") and error.get("input", "") is None):
        return field, f"{name} is required"
    if kind == "extra_forbidden":
        known = list(model.model_fields) if model else []
        close = difflib.get_close_matches(str(field), known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else f"; the fields are {', '.join(known)}"
        return field, f"{name} is not a field of this request{hint}"
    if kind in ("int_type", "int_parsing", "int_from_float"):
        return field, f"{name} must be an integer"
    if kind in ("float_type", "float_parsing", "finite_number"):
        return field, f"{name} must be a finite number"
    if kind in ("bool_type", "bool_parsing"):
        return field, f"{name} must be true or false"
    if kind == "string_type":
        return field, f"{name} must be a string"
    if kind == "string_too_long":
        return field, f"{name} is {len(error['input'])} characters; at most {error['ctx']['max_length']}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bounds = _bounds(model, str(field))
        if bounds and None not in bounds:
            return field, f"{name} must be between {bounds[0]} and {bounds[1]}"
    return field, f"{name} {error['msg']}"


def _raise_validation_error(_req, _resp, error: ValidationError | None, _instance, _adapter) -> None:
    """spectree's ``before`` hook: a failed validation becomes an ``ApiError`` (400, the field named)."""
    if error is None:
        return
    model = _MODELS.get(error.title)
    problems = [_problem(model, e) for e in error.errors()]
    field, message = problems[0]
    raise ApiError(message, 400, field=field,
                   problems=[{"field": f, "error": m} for f, m in problems] if len(problems) > 1 else None)


api.before = _raise_validation_error


def init_app(app) -> None:
    # What SpecTree.register does, with the document at /api/openapi.json: spectree leaves routes
    # under its own doc path out of the document, and the API's routes live under /api.
    api.app = app
    app.add_url_rule("/api/openapi.json", endpoint="api_document", view_func=_openapi)


@endpoint(resp=responses({200: None}))
def _openapi():
    """This document (OpenAPI 3.1)."""
    return jsonify(api.spec)

