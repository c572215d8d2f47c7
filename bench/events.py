"""Synthetic Segment events for the bench: a realistic mix, deterministic for a seed.

identify/track/page over ``users`` distinct users (every user appears when there are at
least as many events as users). Half the users are returning customers known from
earlier sessions (their events carry the userId from the start), 30% browse anonymously
(anonymousId only) for one or two events and then identify, 20% stay anonymous visitors.
Client-side events carry userId and anonymousId; a fifth of the tracks of identified
users come from a server (userId only). E-mails travel in ``context.traits``: always on
identify, on about half of the tracks and pages of identified users. Messages are about
1 KB of JSON, like analytics.js output (library, user agent, page context, campaign).

Event times run from 30 minutes ago to 5 minutes ago, so the contract's example rule (exit
after 1 h) starts instances but fires no trigger while the bench runs.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from typing import Any

from app import keys
from app.envelope import dumps
from app.identity import partition_id

FIRST = ["Ann", "Ben", "Carla", "David", "Eva", "Farid", "Greta", "Hugo", "Ines", "Jonas"]
LAST = ["Müller", "Schmidt", "Novak", "Dubois", "Rossi", "García", "Smith", "Kowalski"]
CITIES = [
    ("Berlin", "10115", "DE"),
    ("Vienna", "1010", "AT"),
    ("Paris", "75001", "FR"),
    ("London", "EC1A 1BB", "GB"),
    ("New York", "10001", "US"),
]
LOCALES = ["de-DE", "en-GB", "en-US", "fr-FR", "de-AT"]
USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
PAGES = [
    ("Home", "/"),
    ("Category", "/c/games"),
    ("Product", "/p/monopoly-3rd-edition"),
    ("Cart", "/cart"),
    ("Checkout", "/checkout"),
    ("Search", "/search"),
]
TRACKS = [
    ("Product Viewed", 35),
    ("Product Added", 18),
    ("Products Searched", 10),
    ("Cart Viewed", 10),
    ("Checkout Started", 9),
    ("Coupon Entered", 9),
    ("Order Completed", 9),
]
PRODUCTS = [
    ("507f1f77bcf86cd799439011", "45790-32", "Monopoly: 3rd Edition", 19.0, "Games"),
    ("505bd76785ebb509fc183733", "46493-32", "Uno Card Game", 3.0, "Games"),
    ("60a1b2c3d4e5f60718293a4b", "11873-05", "Chess Set, Walnut", 64.5, "Games"),
    ("60a1b2c3d4e5f60718293a4c", "22871-11", "Jigsaw 1000 pieces", 14.99, "Puzzles"),
]
COUPONS = ["WELCOME10", "SPRING24", "hasbros", "FREESHIP"]


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class _User:
    __slots__ = ("anon", "anon_steps", "city", "email", "first", "i", "identified", "last", "n")

    def __init__(self, i: int, rng: random.Random) -> None:
        self.i = i
        self.anon = _uuid(rng)
        self.first = rng.choice(FIRST)
        self.last = rng.choice(LAST)
        self.email = f"{self.first.lower()}.{i}@example.com"
        self.city = rng.choice(CITIES)
        r = rng.random()
        # 50% returning customers (known), 30% anonymous for 1-2 events, then identify,
        # 20% anonymous visitors who never identify
        self.identified = r < 0.5
        self.anon_steps = 0 if r < 0.5 else rng.randint(1, 2) if r < 0.8 else 1 << 30
        self.n = 0

    @property
    def user_id(self) -> str:
        return f"user-{self.i:05d}"


def _product(rng: random.Random) -> dict[str, Any]:
    pid, sku, name, price, category = rng.choice(PRODUCTS)
    return {
        "product_id": pid,
        "sku": sku,
        "name": name,
        "price": price,
        "quantity": rng.randint(1, 3),
        "category": category,
        "url": f"https://shop.example.com/p/{sku}",
        "image_url": f"https://cdn.example.com/img/{sku}.jpg",
    }


def _track_properties(name: str, u: _User, rng: random.Random) -> dict[str, Any]:
    cart = f"cart-{u.i}-{u.n // 6}"
    if name in ("Product Viewed", "Product Added"):
        props = _product(rng)
        if name == "Product Added":
            props["cart_id"] = cart
        return props
    if name == "Products Searched":
        return {"query": rng.choice(["monopoly", "chess", "uno", "puzzle 1000"])}
    products = [_product(rng) for _ in range(rng.randint(1, 2))]
    revenue = round(sum(p["price"] * p["quantity"] for p in products), 2)
    props = {"cart_id": cart, "products": products}
    if name in ("Checkout Started", "Coupon Entered", "Order Completed"):
        props.update(revenue=revenue, currency="EUR")
    if name in ("Coupon Entered", "Order Completed"):
        props["coupon"] = rng.choice(COUPONS)
    if name == "Order Completed":
        props.update(order_id=f"o-{u.i}-{u.n}", total=revenue + 4.9, shipping=4.9, tax=0)
    return props


def _message(u: _User, ts: float, rng: random.Random) -> dict[str, Any]:
    if not u.identified and u.n >= u.anon_steps:
        kind = "identify"
    elif not u.identified:
        kind = "page" if rng.random() < 0.6 else "track"
    else:
        r = rng.random()
        kind = "identify" if r < 0.08 else "track" if r < 0.6 else "page"
    city, zip_code, country = u.city
    title, path = rng.choice(PAGES)
    url = f"https://shop.example.com{path}"
    context: dict[str, Any] = {
        "library": {"name": "analytics.js", "version": "4.1.0"},
        "userAgent": USER_AGENT,
        "ip": f"10.{u.i % 250}.{u.i // 250 % 250}.{u.i % 7 + 1}",
        "locale": LOCALES[u.i % len(LOCALES)],
        "timezone": "Europe/Berlin",
        "page": {
            "path": path,
            "referrer": "https://www.google.com/",
            "search": "",
            "title": title,
            "url": url,
        },
    }
    if u.n == 0:
        context["campaign"] = {"name": "spring_sale", "source": "newsletter", "medium": "email"}
    msg: dict[str, Any] = {
        "type": kind,
        "messageId": f"ajs-{_uuid(rng).replace('-', '')}",
        "anonymousId": u.anon,
        "context": context,
        "integrations": {},
        "originalTimestamp": _iso(ts - 0.09),
        "sentAt": _iso(ts + 0.02),
        "receivedAt": _iso(ts + 0.11),
        "timestamp": _iso(ts),
    }
    if kind == "identify":
        u.identified = True
        msg["userId"] = u.user_id
        context["traits"] = {"email": u.email}
        msg["traits"] = {
            "email": u.email,
            "firstName": u.first,
            "lastName": u.last,
            "birthday": f"19{70 + u.i % 30}-{u.i % 12 + 1:02d}-{u.i % 28 + 1:02d}",
            "gender": "female" if u.i % 2 else "male",
            "phone": f"+49 30 {u.i:07d}",
            "company": f"Company {u.i % 97}",
            "optIn": u.i % 3 != 0,
            "createdAt": "2024-03-01T10:00:00Z",
            "address": {"city": city, "postalCode": zip_code, "country": country},
        }
    else:
        if u.identified:
            msg["userId"] = u.user_id
            if rng.random() < 0.5:
                context["traits"] = {"email": u.email}
        if kind == "page":
            msg["name"] = title
            msg["properties"] = {
                "title": title,
                "url": url,
                "path": path,
                "referrer": "https://www.google.com/",
            }
        else:
            names, weights = zip(*TRACKS, strict=True)
            name = rng.choices(names, weights)[0]
            msg["event"] = name
            msg["properties"] = _track_properties(name, u, rng)
            if u.identified and rng.random() < 0.2:  # server-side: userId only
                del msg["anonymousId"]
                context.pop("page", None)
                context["library"] = {"name": "analytics-python", "version": "2.3.2"}
    u.n += 1
    return msg


def generate(
    n: int, users: int = 10_000, *, seed: int = 7, now: float | None = None
) -> list[dict[str, Any]]:
    """``n`` Segment messages over ``users`` users, in event-time order."""
    rng = random.Random(seed)
    users = max(1, min(users, n))
    people = [_User(i, rng) for i in range(users)]
    # every user appears; the anonymous-then-identified ones long enough to identify
    order = [p.i for p in people for _ in range(p.anon_steps + 1 if p.anon_steps < 3 else 1)]
    rng.shuffle(order)
    order = order[:n] + [rng.randrange(users) for _ in range(n - len(order))]
    end = (time.time() if now is None else now) - 300.0
    start = end - 1500.0
    step = (end - start) / max(1, n)
    return [_message(people[u], start + j * step, rng) for j, u in enumerate(order)]


def encode(messages: list[dict[str, Any]], account: str) -> list[tuple[bytes, bytes]]:
    """(key, value) records as the app's ingest writes them: key ``account \\x1f routing id``."""
    out = []
    for msg in messages:
        rid = partition_id(msg)
        assert rid is not None
        out.append((keys.key(account, rid), dumps(msg)))
    return out


def mix(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """What the generated events contain, for the report."""
    types: dict[str, int] = {}
    for m in messages:
        types[m["type"]] = types.get(m["type"], 0) + 1
    return {
        "types": dict(sorted(types.items())),
        "users": len({m["userId"] for m in messages if "userId" in m}),
        "anonymous_only": sum(1 for m in messages if "userId" not in m),
        "with_email": sum(1 for m in messages if "email" in (m["context"].get("traits") or {})),
    }
