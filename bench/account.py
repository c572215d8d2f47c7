"""The bench account: 20 realistic data maps and the contract's example rule."""

from __future__ import annotations

from typing import Any

ACCOUNT = "bench"

DATA_MAPS: list[dict[str, Any]] = [
    {"name": "email", "path": "context.traits.email", "type": "string", "field": 3},
    {"name": "first_name", "path": "traits.firstName", "type": "string", "field": 1},
    {"name": "last_name", "path": "traits.lastName", "type": "string", "field": 2},
    {"name": "birth_date", "path": "traits.birthday", "type": "date", "field": 4},
    {
        "name": "gender",
        "path": "traits.gender",
        "type": "choice",
        "field": 5,
        "choices": {"male": 1, "female": 2},
    },
    {"name": "city", "path": "traits.address.city", "type": "string", "field": 11},
    {"name": "zip", "path": "traits.address.postalCode", "type": "string", "field": 13},
    {
        "name": "country",
        "path": "traits.address.country",
        "type": "choice",
        "field": 14,
        # illustrative ids: Emarsys numbers its countries itself
        "choices": {"AT": 14, "DE": 65, "FR": 73, "GB": 184, "US": 185},
    },
    {"name": "phone", "path": "traits.phone", "type": "string", "field": 15},
    {"name": "company", "path": "traits.company", "type": "string", "field": 18},
    {
        "name": "opt_in",
        "path": "traits.optIn",
        "type": "choice",
        "field": 31,
        "choices": {"true": 1, "false": 2},
    },
    {"name": "language", "path": "context.locale", "type": "string", "field": 35},
    {"name": "signed_up_at", "path": "traits.createdAt", "type": "datetime"},
    {"name": "ecom_event", "path": "event", "type": "string"},
    {"name": "ecom_revenue", "path": "properties.revenue", "type": "numeric"},
    {"name": "cart_id", "path": "properties.cart_id", "type": "string"},
    {"name": "coupon", "path": "properties.coupon", "type": "string"},
    {"name": "product_sku", "path": "properties.sku", "type": "string"},
    {"name": "order_id", "path": "properties.order_id", "type": "string"},
    {"name": "page_path", "path": "context.page.path", "type": "string"},
]

EXAMPLE_RULE: dict[str, Any] = {
    "name": "Coupon entered but did not complete order",
    "lifetime": "48h",
    "multiple_active": False,
    "transaction": "cart_id",
    "enabled": True,
    "conditions": [
        {"sequence": 0, "type": "start", "on": "track", "match": 'ecom_event = "Coupon Entered"'},
        {
            "sequence": 0,
            "type": "exclude",
            "on": "track",
            "match": 'ecom_event = "Order Completed"',
        },
        {
            "sequence": 1,
            "type": "exit",
            "wait": "1h",
            "trigger": 1234,
            "variables": ["coupon", "ecom_revenue"],
        },
    ],
}


def filler_rules(n: int) -> list[dict[str, Any]]:
    """``n`` rules shaped like the example, starting on events the synthetic stream never
    sends: the pipeline runs with 100 rules configured, and the rule index keeps the ones
    an event cannot match from costing anything (``bench.core`` measures matching ones)."""
    return [
        {
            "name": f"bench rule {r:03d}",
            "lifetime": "48h",
            "conditions": [
                {
                    "sequence": 0,
                    "type": "start",
                    "on": "track",
                    "match": f'ecom_event = "Bench Event {r % 10}" and ecom_revenue >= {r}',
                },
                {
                    "sequence": 0,
                    "type": "exclude",
                    "on": "track",
                    "match": 'ecom_event = "Order Completed"',
                },
                {"sequence": 1, "type": "exit", "wait": "1h", "trigger": 1234},
            ],
        }
        for r in range(n)
    ]


def account_dict(emarsys: dict[str, Any] | None = None, rules: int = 100) -> dict[str, Any]:
    """The account section of a config (``emarsys`` defaults to an unused placeholder);
    the example rule plus ``rules - 1`` filler rules."""
    return {
        "api_keys": ["bench-key"],
        "primary_key": "context.traits.email",
        "emarsys": emarsys
        or {
            "api_url": "http://127.0.0.1:9/api/v3",
            "client_id": "bench",
            "client_secret": "bench",
        },
        "data_maps": DATA_MAPS,
        "rules": [EXAMPLE_RULE, *filler_rules(max(0, rules - 1))],
    }
