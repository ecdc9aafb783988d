"""The three plans a fresh Tollgate starts with, in the database (migration) and in API Gateway (aws_setup)."""

# (name, requests per DAY, description)
SEED_PLANS = [
    ("10RequestPerDay", 10, "Try things out: ten requests a day."),
    ("20RequestPerDay", 20, "For a small script: twenty requests a day."),
    ("30RequestPerDay", 30, "For daily work: thirty requests a day."),
]
