"""Reading the request log: every reader starts from `request_log_of`, so it sees one user's rows."""

import csv
import io
from collections.abc import AsyncIterable, AsyncIterator
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from activity.models import RequestLog
from activity.serializers import FIELDS

# A cell that starts like a formula is run by spreadsheets; a leading quote keeps it text.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def request_log_of(*, user: AbstractBaseUser) -> QuerySet[RequestLog]:
    return RequestLog.objects.filter(key__owner=user)


def csv_cell(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


async def request_log_csv(rows: AsyncIterable[dict], *, chunk_chars: int = 64 * 1024) -> AsyncIterator[str]:
    """The CSV of `rows` (dicts with the FIELDS), a header line first, in pieces of about
    `chunk_chars`: one message per row would cost more than the rows."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(FIELDS)
    async for row in rows:
        writer.writerow([csv_cell(row[name]) for name in FIELDS])
        if out.tell() >= chunk_chars:
            yield out.getvalue()
            out.seek(0)
            out.truncate()
    yield out.getvalue()
