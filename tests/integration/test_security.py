"""Security: a matrix over every endpoint a worker serves, tenant isolation, Segment's
X-Signature, Faust's own table views switched off, and a scan of every log for secrets
and personal data after a full run.

The endpoint list is not written here: it is every route ``install_routes`` adds (read
from a real aiohttp router) and every path of the OpenAPI document, so a new endpoint
cannot escape the matrix; a served route the document does not describe fails the test.
"""

from __future__ import annotations

import hashlib
import hmac
import types
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from app.account import Accounts
from app.config import load_config_text
from app.metrics import Metrics
from app.web import openapi
from app.web.auth import signature_ok
from tests.integration.stack import (
    ADMIN_TOKEN,
    Response,
    Stack,
    account_config,
    admin,
    basic,
    http,
    wait_for,
)

pytestmark = pytest.mark.integration

RUN = uuid.uuid4().hex[:8]
ALPHA_KEY = f"alpha-key-{RUN}"
BETA_KEY = f"beta-key-{RUN}"
SIGNED_KEY = f"signed-key-{RUN}"
BAD_KEY = f"badcreds-key-{RUN}"
SHARED_SECRET = f"seg-shared-{RUN}"
BAD_CLIENT_SECRET = f"wrong-client-secret-{RUN}"
GOOD_CLIENT_SECRET = "demo-secret"  # what the simulator accepts
SECRETS = [
    ALPHA_KEY,
    BETA_KEY,
    SIGNED_KEY,
    BAD_KEY,
    SHARED_SECRET,
    BAD_CLIENT_SECRET,
    GOOD_CLIENT_SECRET,
    ADMIN_TOKEN,
]
EMAILS: set[str] = set()
"""Every e-mail address the test data holds (the log scan looks for each)."""


def email(tag: str) -> str:
    address = f"{tag}-{RUN}@example.com"
    EMAILS.add(address)
    return address


def rule(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "conditions": [
            {"sequence": 0, "type": "start", "on": "track", "match": 'ecom_event = "Signed Up"'},
            {"sequence": 1, "type": "exit", "trigger": 1234},
        ],
    }


ALPHA_RULE = f"alpha-rule-{RUN}"
BETA_RULE = f"beta-rule-{RUN}"


# --------------------------------------------------------------------------- the endpoints


INTERNAL = [f"/api/accounts/{{account}}{p}" for p in openapi.INTERNAL]
STATIC = "/static/{filename}"


def served_routes() -> set[tuple[str, str]]:
    """(method, path) of every route ``install_routes`` adds, read from a real router.

    ``install_routes`` runs against stand-ins for the Faust app and its topics (it only
    needs names from them), so the list is the worker's own, not a copy."""
    from app.web import routes

    cfg = load_config_text(
        """
accounts:
  x:
    api_keys: [k]
    primary_key: context.traits.email
    emarsys: {api_url: "http://127.0.0.1:1/api/v3", client_id: c, client_secret: s}
""",
        env={},
    )
    web_app = web.Application()
    fake_app = types.SimpleNamespace(web=types.SimpleNamespace(web_app=web_app))
    runtime = types.SimpleNamespace(
        metrics=Metrics(), accounts=Accounts(cfg), config=cfg, broker_url="kafka://x:1"
    )
    services = routes.WebServices(
        outbox=None,  # type: ignore[arg-type]
        live_config=None,  # type: ignore[arg-type]
        dead_letter_topic="dl",
        state=None,  # type: ignore[arg-type]
    )
    routes.install_routes(fake_app, runtime, services)  # type: ignore[arg-type]
    out: set[tuple[str, str]] = set()
    for route in web_app.router.routes():
        if route.method == "HEAD":
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        if "prefix" in info:  # a static directory
            out.add(("GET", STATIC))
            continue
        out.add((route.method, route.resource.canonical))  # type: ignore[union-attr]
    return out


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # as in the OpenAPI document
    kind: str  # admin | ingest | public


def matrix() -> list[Endpoint]:
    """Every documented operation plus the internal routes, with what guards it."""
    out = []
    for path, ops in openapi.document()["paths"].items():
        for method, op in ops.items():
            schemes = {name for req in op.get("security", []) for name in req}
            kind = (
                "admin"
                if "admin" in schemes
                else "ingest"
                if "segmentBasic" in schemes
                else "public"
            )
            out.append(Endpoint(method.upper(), path, kind))
    out += [Endpoint("GET", p, "admin") for p in INTERNAL]
    out.append(Endpoint("GET", STATIC, "public"))
    return out


MATRIX = matrix()
ADMIN = [e for e in MATRIX if e.kind == "admin"]
INGEST = [e for e in MATRIX if e.kind == "ingest"]
PUBLIC = [e for e in MATRIX if e.kind == "public"]


def test_every_route_is_in_the_matrix() -> None:
    served = served_routes()
    covered = {(e.method, e.path) for e in MATRIX}
    undocumented = served - covered
    assert not undocumented, f"served but not in the OpenAPI document: {sorted(undocumented)}"
    unserved = covered - served
    assert not unserved, f"documented but not served: {sorted(unserved)}"
    # Every /api/ route is an admin route (the document cannot mark one public by mistake).
    assert all(e.kind == "admin" for e in MATRIX if e.path.startswith("/api/accounts"))
    assert {e.path for e in PUBLIC} == {
        "/health",
        "/ready",
        "/metrics",
        "/api/openapi.json",
        "/",
        STATIC,
    }
    assert len(ADMIN) >= 13 and len(INGEST) == 9


# --------------------------------------------------------------------------- the stack


@dataclass
class People:
    """Who lives in which account (userIds, anonymousIds, e-mails)."""

    users: list[str]
    anons: list[str]
    emails: list[str]

    def markers(self) -> list[str]:
        return [*self.users, *self.anons, *self.emails]


@dataclass
class Sec:
    stack: Stack
    alpha: People
    beta: People
    shared_user: str
    beta_dead_letter_email: str
    bad_email: str


def identify(s: Stack, key: str, user: str, address: str, **extra: Any) -> Response:
    body = {"userId": user, "traits": {"firstName": "F"}, "context": {"traits": {"email": address}}}
    r = s.post("/v1/identify", {**body, **extra}, key=key)
    assert r.status == 200, r.body
    return r


def populate(s: Stack, name: str, key: str) -> People:
    """Identify, track, page + identify (link), alias and delete, each with e-mails."""
    users = [f"{name}-u{i}-{RUN}" for i in range(4)]
    anons = [f"{name}-anon{i}-{RUN}" for i in range(2)]
    emails = [email(f"{name}{i}") for i in range(4)]
    for user, address in zip(users, emails, strict=True):
        identify(s, key, user, address)
        assert s.post("/v1/track", {"userId": user, "event": "Signed Up"}, key=key).status == 200
    # An anonymous visitor who signs in: page, then identify carrying both ids.
    assert s.post("/v1/page", {"anonymousId": anons[0], "name": "Home"}, key=key).status == 200
    identify(s, key, users[0], emails[0], anonymousId=anons[0])
    # An old id aliased to a user.
    alias = {"type": "alias", "previousId": anons[1], "userId": users[1]}
    assert s.post("/v1/alias", alias, key=key).status == 200
    # A person deleted (Segment's user deletion).
    gone, gone_email = f"{name}-gone-{RUN}", email(f"{name}-gone")
    identify(s, key, gone, gone_email)
    wait_for(lambda: s.user(name, userId=gone).status == 200, what=f"{gone}")
    assert s.post("/segment", {"type": "delete", "userId": gone}, key=key).status == 200
    wait_for(lambda: s.user(name, userId=gone).status == 404, what=f"{gone} deleted")
    return People([*users, gone], anons, [*emails, gone_email])


def api(s: Stack, method: str, path: str, body: Any = None, i: int = 0, **kw: Any) -> Response:
    return http(method, f"{s.url(i)}{path}", body, headers=kw.pop("headers", admin()), **kw)


def exercise_admin_api(s: Stack, sec: Sec) -> None:
    """The admin API used the way the console does (lookups by e-mail included)."""
    for i in range(len(s.live())):
        for acct, people in (("alpha", sec.alpha), ("beta", sec.beta)):
            for u in people.users[:2]:
                api(s, "GET", f"/api/accounts/{acct}/users?userId={u}", i=i)
            q = urllib.parse.quote(people.emails[0])
            api(s, "GET", f"/api/accounts/{acct}/users?primaryKey={q}", i=i)
            api(s, "GET", f"/api/accounts/{acct}/deliveries?primaryKey={q}", i=i)
            api(s, "GET", f"/api/accounts/{acct}/users?anonymousId={people.anons[0]}", i=i)
            api(s, "GET", f"/api/accounts/{acct}/deliveries", i=i)
            api(s, "GET", f"/api/accounts/{acct}/dead-letters", i=i)
            api(s, "GET", f"/api/accounts/{acct}/rules", i=i)
            api(s, "GET", f"/api/accounts/{acct}/config?format=yaml", i=i)
        api(s, "GET", "/api/accounts/badcreds/deliveries?failed=1", i=i)
        # The catalog of an account whose credentials Emarsys refuses: logged, not leaked.
        assert api(s, "GET", "/api/accounts/badcreds/emarsys/fields", i=i).status == 502
    cfg = api(s, "GET", "/api/accounts/alpha/config").json()["config"]
    edit = {"data_maps": cfg["data_maps"], "rules": cfg["rules"]}
    assert api(s, "POST", "/api/accounts/alpha/config/validate", edit).json()["valid"] is True
    assert api(s, "POST", "/api/accounts/alpha/replay", edit).status == 200


@pytest.fixture(scope="module")
def sec(broker, simulator, tmp_path_factory) -> Any:
    accounts = {
        "alpha": account_config(simulator, api_keys=[ALPHA_KEY], rules=[rule(ALPHA_RULE)]),
        "beta": account_config(simulator, api_keys=[BETA_KEY], rules=[rule(BETA_RULE)]),
        "signed": account_config(simulator, api_keys=[SIGNED_KEY], shared_secret=SHARED_SECRET),
        "badcreds": account_config(
            simulator, api_keys=[BAD_KEY], emarsys={"client_secret": BAD_CLIENT_SECRET}
        ),
    }
    s = Stack(broker.url, tmp_path_factory.mktemp("security"), accounts, partitions=4)
    s.start_worker()
    s.start_worker()
    s.wait_assigned()
    try:
        alpha = populate(s, "alpha", ALPHA_KEY)
        beta = populate(s, "beta", BETA_KEY)
        # The same userId in both accounts, each with its own e-mail.
        shared = f"shared-{RUN}"
        identify(s, ALPHA_KEY, shared, email("shared-alpha"))
        identify(s, BETA_KEY, shared, email("shared-beta"))
        # A dead letter in beta carrying an e-mail: a batch with one invalid message.
        dl_email = email("beta-deadletter")
        batch = {
            "batch": [
                {
                    "type": "track",
                    "userId": beta.users[2],
                    "context": {"traits": {"email": dl_email}},
                },
                {"type": "track", "userId": beta.users[2], "event": "Valid"},
            ]
        }
        r = s.post("/v1/batch", batch, key=BETA_KEY)
        assert r.status == 200 and len(r.json()["rejected"]) == 1
        # An account whose Emarsys credentials are wrong: failures get logged.
        bad_email = email("badcreds")
        identify(s, BAD_KEY, f"bad-{RUN}", bad_email)
        # A signed request (the account with a shared secret).
        body = (
            b'{"type":"identify","userId":"signed-'
            + RUN.encode()
            + b'","context":{"traits":{"email":"'
            + email("signed").encode()
            + b'"}}}'
        )
        sig = hmac.new(SHARED_SECRET.encode(), body, hashlib.sha1).hexdigest()
        r = http(
            "POST",
            f"{s.url()}/v1/identify",
            raw=body,
            headers={**basic(SIGNED_KEY), "X-Signature": sig},
        )
        assert r.status == 200, r.body
        for acct, people in (("alpha", alpha), ("beta", beta)):
            for u in people.users[:4]:
                wait_for(lambda a=acct, u=u: s.user(a, userId=u).status == 200, what=u)
        for acct in ("alpha", "beta"):
            wait_for(lambda a=acct: s.user(a, userId=shared).status == 200, what="shared user")
        wait_for(
            lambda: any(
                not d["ok"]
                for d in api(s, "GET", "/api/accounts/badcreds/deliveries").json()["deliveries"]
            ),
            timeout=60,
            what="a failed delivery of the account with wrong credentials",
        )
        wait_for(
            lambda: any(
                d.get("contact") == beta.emails[0]
                for d in api(s, "GET", "/api/accounts/beta/deliveries").json()["deliveries"]
            ),
            what="beta's deliveries",
        )
        state = Sec(s, alpha, beta, shared, dl_email, bad_email)
        exercise_admin_api(s, state)
        yield state
    finally:
        s.stop()


# --------------------------------------------------------------------------- helpers


def concrete(path: str, account: str = "alpha") -> str:
    return path.replace("{account}", account).replace("{filename}", "console.css")


def request_body(e: Endpoint) -> Any:
    if e.path.endswith("/dead-letters/retry"):
        return {"ids": ["0:0"]}
    if e.method in ("PUT", "POST"):
        return {}
    return None


BAD_ADMIN_AUTH = {
    "none": {},
    "wrong token": {"Authorization": "Bearer not-the-token"},
    "token + suffix": {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
    "token prefix": {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
    "empty bearer": {"Authorization": "Bearer "},
    "no scheme": {"Authorization": ADMIN_TOKEN},
    "other scheme": {"Authorization": f"Token {ADMIN_TOKEN}"},
    "API key as Basic": basic(ALPHA_KEY),
    "API key as Bearer": {"Authorization": f"Bearer {ALPHA_KEY}"},
    "token as Basic user": basic(ADMIN_TOKEN),
    "token in a cookie": {"Cookie": f"token={ADMIN_TOKEN}"},
    "token in X-Api-Key": {"X-Api-Key": ADMIN_TOKEN},
}


# --------------------------------------------------------------------------- admin: 401


@pytest.mark.parametrize("endpoint", ADMIN, ids=lambda e: f"{e.method} {e.path}")
def test_admin_endpoint_refuses_every_wrong_credential(sec: Sec, endpoint: Endpoint) -> None:
    s = sec.stack
    version = api(s, "GET", "/api/accounts/alpha/config").json()["version"]
    for account in ("alpha", "beta", "no-such-account"):
        url = f"{s.url()}{concrete(endpoint.path, account)}"
        for name, headers in BAD_ADMIN_AUTH.items():
            r = http(endpoint.method, url, request_body(endpoint), headers=headers)
            assert r.status == 401, (name, account, r.status, r.body[:200])
            assert sec.beta.emails[0].encode() not in r.body
        # A token in the query string is not a token.
        q = f"{url}?token={ADMIN_TOKEN}&access_token={ADMIN_TOKEN}"
        assert http(endpoint.method, q, request_body(endpoint)).status == 401
    # Refused writes changed nothing.
    assert api(s, "GET", "/api/accounts/alpha/config").json()["version"] == version
    # With the token it answers (not 401, never 5xx); an unknown account is 404.
    url = f"{s.url(1)}{concrete(endpoint.path)}"
    body = request_body(endpoint)
    if endpoint.method == "PUT":
        cfg = api(s, "GET", "/api/accounts/alpha/config").json()["config"]
        body = {"data_maps": cfg["data_maps"], "rules": cfg["rules"]}
    r = http(endpoint.method, url, body, headers=admin(), timeout=60)
    assert r.status < 500 and r.status != 401, (r.status, r.body[:300])
    if endpoint.method == "PUT":  # applied asynchronously: let every worker see it
        for i in range(len(s.live())):
            wait_for(
                lambda i=i: (
                    api(s, "GET", "/api/accounts/alpha/config", i=i).json()["version"] > version
                ),
                what="the config edit applied",
            )
    if endpoint.path != "/api/accounts":
        r = http(
            endpoint.method, f"{s.url()}{concrete(endpoint.path, 'nope')}", body, headers=admin()
        )
        assert r.status == 404


def test_retry_of_an_empty_selection_answers(sec: Sec) -> None:
    r = api(sec.stack, "POST", "/api/accounts/alpha/dead-letters/retry", {"ids": []})
    assert r.status == 200 and r.json() == {"retried": 0, "skipped": []}


# --------------------------------------------------------------------------- ingest


def message_for(path: str, user: str) -> dict[str, Any]:
    kind = path.rsplit("/", 1)[-1]
    msg: dict[str, Any] = {"type": "identify", "userId": user, "traits": {"firstName": "I"}}
    if kind in ("track", "page", "screen", "group", "alias"):
        msg = {"type": kind, "userId": user, "event": "E", "groupId": "g", "name": "N"}
    if kind == "alias":
        msg["previousId"] = f"{user}-old"
    if kind in ("batch", "import"):
        return {"batch": [msg]}
    return msg


@pytest.mark.parametrize("endpoint", INGEST, ids=lambda e: f"{e.method} {e.path}")
def test_ingest_needs_a_key_and_lands_only_in_its_account(sec: Sec, endpoint: Endpoint) -> None:
    s = sec.stack
    user = f"ingest-{endpoint.path.rsplit('/', 1)[-1]}-{RUN}"
    body = message_for(endpoint.path, user)
    url = f"{s.url()}{endpoint.path}"
    for name, headers in {
        "none": {},
        "unknown key": basic("no-such-key"),
        "key with a suffix": basic(ALPHA_KEY + "x"),
        "key prefix": basic(ALPHA_KEY[:-1]),
        "admin token as Basic": basic(ADMIN_TOKEN),
        "admin token as Bearer": admin(),
        "key as Bearer": {"Authorization": f"Bearer {ALPHA_KEY}"},
    }.items():
        r = http("POST", url, body, headers=headers)
        assert r.status == 401, (name, r.status, r.body[:200])
    assert http("POST", url, {**body, "writeKey": "no-such-key"}).status == 401
    # Alpha's key, with a header that tries to name beta: lands in alpha only.
    r = http("POST", url, body, headers={**basic(ALPHA_KEY), "emd-account": "beta"})
    assert r.status == 200, r.body
    wait_for(lambda: s.user("alpha", userId=user).status == 200, what=f"{user} in alpha")
    assert s.user("beta", userId=user).status == 404
    # writeKey in the body works the same way.
    user_b = f"{user}-wk"
    r = http("POST", url, {**message_for(endpoint.path, user_b), "writeKey": BETA_KEY})
    assert r.status == 200, r.body
    wait_for(lambda: s.user("beta", userId=user_b).status == 200, what=f"{user_b} in beta")
    assert s.user("alpha", userId=user_b).status == 404


def test_segment_signature(sec: Sec) -> None:
    s = sec.stack
    # Segment's reference vector.
    ref = hmac.new(b"abc123", b'{"cool":true}', hashlib.sha1).hexdigest()
    assert ref == "5099cab379b3be52908387457007040cc934ef86"
    assert signature_ok(b'{"cool":true}', "abc123", "5099cab379b3be52908387457007040cc934ef86")
    user = f"signed-ok-{RUN}"
    body = f'{{"type":"identify","userId":"{user}","traits":{{"firstName":"S"}}}}'.encode()

    def sign(data: bytes, secret: str = SHARED_SECRET) -> str:
        return hmac.new(secret.encode(), data, hashlib.sha1).hexdigest()

    url = f"{s.url()}/v1/identify"
    for name, sig in {
        "unsigned": None,
        "empty": "",
        "wrong": "0" * 40,
        "another body's": sign(body + b" "),
        "another secret's": sign(body, "abc123"),
        "sha256": hmac.new(SHARED_SECRET.encode(), body, hashlib.sha256).hexdigest(),
        "truncated": sign(body)[:-1],
    }.items():
        headers = basic(SIGNED_KEY)
        if sig is not None:
            headers["X-Signature"] = sig
        r = http("POST", url, raw=body, headers=headers)
        assert r.status == 401, (name, r.status)
    # The same through writeKey instead of Basic: the signature is still required.
    wk = body[:-1] + f',"writeKey":"{SIGNED_KEY}"}}'.encode()
    assert http("POST", url, raw=wk).status == 401
    assert http("POST", url, raw=wk, headers={"X-Signature": sign(wk)}).status == 200
    # Correct: 200, and it lands. Upper-case hex is the same signature.
    r = http("POST", url, raw=body, headers={**basic(SIGNED_KEY), "X-Signature": sign(body)})
    assert r.status == 200, r.body
    r = http(
        "POST", url, raw=body, headers={**basic(SIGNED_KEY), "X-Signature": sign(body).upper()}
    )
    assert r.status == 200
    wait_for(lambda: s.user("signed", userId=user).status == 200, what="the signed message")
    # A correctly signed body that is not a message: authenticated, then 400 (not 401).
    cool = b'{"cool":true}'
    r = http(
        "POST",
        f"{s.url()}/segment",
        raw=cool,
        headers={**basic(SIGNED_KEY), "X-Signature": sign(cool)},
    )
    assert r.status == 400
    # Accounts without a shared secret ignore the header.
    r = http(
        "POST",
        url,
        message_for("/v1/identify", f"plain-{RUN}"),
        headers={**basic(ALPHA_KEY), "X-Signature": "0" * 40},
    )
    assert r.status == 200


# --------------------------------------------------------------------------- isolation


def _text(r: Response) -> str:
    return r.body.decode("utf-8", "replace")


def assert_no_beta(sec: Sec, r: Response, what: str) -> None:
    text = _text(r)
    leaked = [
        m
        for m in [*sec.beta.markers(), sec.beta_dead_letter_email, BETA_RULE, BETA_KEY]
        if m in text
    ]
    assert not leaked, f"{what} shows beta's {leaked}"
    assert email("shared-beta") not in text, what


def test_nothing_of_beta_is_reachable_under_alpha(sec: Sec) -> None:
    s, beta = sec.stack, sec.beta
    # Positive control: beta's data exists and beta's views show it.
    assert s.user("beta", userId=beta.users[0]).status == 200
    dl = api(s, "GET", "/api/accounts/beta/dead-letters").json()["dead_letters"]
    assert any(sec.beta_dead_letter_email in str(d) for d in dl)
    for i in range(len(s.live())):
        base = "/api/accounts/alpha"
        # Persons by every kind of lookup, and the internal lookups behind them.
        for u in beta.users:
            for path in (f"{base}/users?userId={u}", f"{base}/deliveries?userId={u}"):
                r = api(s, "GET", path, i=i)
                assert r.status == 404, (path, r.status)
                assert_no_beta(sec, r, path)
            r = api(s, "GET", f"{base}/_person?p=u:{u}", i=i)
            assert r.status == 404
        for a in beta.anons:
            r = api(s, "GET", f"{base}/users?anonymousId={a}", i=i)
            assert r.status == 404
            r = api(s, "GET", f"{base}/_link?id={a}", i=i)
            assert r.status == 200 and r.json()["userId"] is None
            r = api(s, "GET", f"{base}/_person?p=a:{a}", i=i)
            assert r.status == 404
        for e in beta.emails:
            q = urllib.parse.quote(e)
            r = api(s, "GET", f"{base}/users?primaryKey={q}", i=i)
            assert r.status == 404
            r = api(s, "GET", f"{base}/_pk?pk={q}", i=i)
            assert r.status == 200 and r.json()["person"] is None
        # The same userId in both accounts: alpha sees alpha's person only.
        r = api(s, "GET", f"{base}/users?userId={sec.shared_user}", i=i)
        assert r.status == 200 and r.json()["primaryKey"] == email("shared-alpha")
        assert_no_beta(sec, r, "alpha's shared user")
        # Account-wide views.
        for path in (
            f"{base}/deliveries",
            f"{base}/deliveries?failed=1",
            f"{base}/deliveries?local=1",
            f"{base}/dead-letters?limit=1000",
            f"{base}/rules",
            f"{base}/rules?local=1",
            f"{base}/config",
            f"{base}/config?format=yaml",
            "/api/accounts",
        ):
            r = api(s, "GET", path, i=i)
            assert r.status == 200, (path, r.status)
            assert_no_beta(sec, r, path)
    # Alpha's own deliveries are there (the views are not just empty).
    alpha_dlv = api(s, "GET", "/api/accounts/alpha/deliveries").json()["deliveries"]
    assert any(d.get("contact") in sec.alpha.emails for d in alpha_dlv)
    # The config view holds no credentials of any account.
    for acct in ("alpha", "beta", "signed", "badcreds"):
        text = _text(api(s, "GET", f"/api/accounts/{acct}/config"))
        assert not [x for x in SECRETS if x in text], acct


def test_replay_and_retry_stay_in_their_account(sec: Sec) -> None:
    s = sec.stack
    cfg = api(s, "GET", "/api/accounts/alpha/config").json()["config"]
    r = api(s, "POST", "/api/accounts/alpha/replay", {"rules": cfg["rules"]}, timeout=60)
    assert r.status == 200
    assert_no_beta(sec, r, "alpha's replay")
    # Control: the replay does see alpha's people.
    assert any(e in _text(r) for e in sec.alpha.emails)
    # Beta's dead letters cannot be retried (or read) through alpha.
    dl = api(s, "GET", "/api/accounts/beta/dead-letters").json()["dead_letters"]
    ids = [d["id"] for d in dl]
    assert ids
    r = api(s, "POST", "/api/accounts/alpha/dead-letters/retry", {"ids": ids})
    assert r.status == 200 and r.json()["retried"] == 0
    assert {x["id"] for x in r.json()["skipped"]} == set(ids)
    assert_no_beta(sec, r, "alpha's retry answer")
    # Config edits of alpha cannot reach beta: unknown keys are refused, beta unchanged.
    before = api(s, "GET", "/api/accounts/beta/config").json()
    for edit in (
        {"accounts": {"beta": {"rules": []}}},
        {"api_keys": ["stolen"]},
        {"emarsys": {"api_url": "http://evil.invalid"}},
        {"shared_secret": None},
    ):
        r = api(s, "PUT", "/api/accounts/alpha/config", edit)
        assert r.status == 400, edit
    assert api(s, "GET", "/api/accounts/beta/config").json() == before


# --------------------------------------------------------------------------- public views


@pytest.mark.parametrize("endpoint", PUBLIC, ids=lambda e: f"{e.method} {e.path}")
def test_public_endpoints_leak_nothing(sec: Sec, endpoint: Endpoint) -> None:
    for i in range(len(sec.stack.live())):
        r = http(endpoint.method, f"{sec.stack.url(i)}{concrete(endpoint.path)}")
        assert r.status == 200, (endpoint, r.status)
        text = _text(r)
        people = [*sec.alpha.markers(), *sec.beta.markers(), *EMAILS]
        assert not [p for p in people if p in text], endpoint
        assert not [x for x in SECRETS if x in text], endpoint


def test_static_files_stay_in_their_directory(sec: Sec) -> None:
    url = sec.stack.url()
    for path in (
        "/static/../auth.py",
        "/static/%2e%2e/auth.py",
        "/static/..%2fauth.py",
        "/static/%2e%2e%2f%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/static/",
    ):
        r = http("GET", f"{url}{path}")
        assert r.status in (403, 404), (path, r.status)
        assert b"hmac" not in r.body and b"[project]" not in r.body


def test_faust_table_and_router_views_are_not_served(sec: Sec) -> None:
    """Faust's own views serve table contents (personal data) without authentication."""
    key = urllib.parse.quote(f"alpha\x1fu:{sec.alpha.users[0]}")
    for i in range(len(sec.stack.live())):
        url = sec.stack.url(i)
        for path in (
            "/table/",
            "/table/persons/",
            f"/table/persons/{key}/",
            "/table/links/",
            "/table/pkindex/",
            "/router/",
            "/router/persons/",
            f"/router/persons/{key}/",
            "/stats/",
            "/graph/",
            "/signal/",
        ):
            r = http("GET", f"{url}{path}")
            assert r.status == 404, (path, r.status)


# --------------------------------------------------------------------------- logs (last)


def test_zz_logs_hold_no_secret_and_no_email(sec: Sec, simulator) -> None:
    """After the full run above (and everything every test of this module did)."""
    exercise_admin_api(sec.stack, sec)
    # The e-mails went all the way (to Emarsys), so the workers handled every one of them.
    assert simulator.contact(sec.alpha.emails[0]) and simulator.contact(sec.beta.emails[0])
    assert all("Worker ready" in w.log_text() for w in sec.stack.workers)
    # Errors were logged (the account with wrong credentials), so there was something to leak.
    logs = {f"worker {w.index}": w.log_text() for w in sec.stack.workers}
    assert any("401" in text or "invalid_client" in text for text in logs.values())
    with open(simulator.log.name, errors="replace") as f:
        logs["simulator"] = f.read()
    needles = {x: "secret" for x in SECRETS}
    for address in EMAILS:
        for form in {address, urllib.parse.quote(address), urllib.parse.quote_plus(address)}:
            needles[form] = "e-mail"
    assert len(EMAILS) >= 12
    found = [
        (where, kind, needle)
        for where, text in logs.items()
        for needle, kind in needles.items()
        if needle in text
    ]
    assert not found, found
