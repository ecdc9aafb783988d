"""A plan as the key API lists it (`/api/plan`), for the tests of both backends."""

LIMITS = ("rate_limit", "burst_limit", "token_quota", "max_output_tokens", "budget")


def listed_plan(name: str, quota: int, *, period: str = "DAY", description: str = "", **limits) -> dict:
    """Every field the API lists, the limits not given as null."""
    return {
        "name": name, "quota": quota, "period": period, **dict.fromkeys(LIMITS), **limits, "description": description,
    }  # fmt: skip
