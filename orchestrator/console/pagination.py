"""Pages and ids of the management API (apart from the views: DRF imports the pagination class
while it loads its own generic views)."""
from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

# Ids in paths and queries: at most 18 digits, so every one fits a 64-bit column (a longer one is a 404).
ID = r"\d{1,18}"


class Pages(LimitOffsetPagination):
    """`?limit=&offset=`: a limit above 500 is cut to 500; an offset past what a column holds is a 400."""

    default_limit = 50
    max_limit = 500

    def get_offset(self, request: Request) -> int:
        offset = super().get_offset(request)
        if offset > 10**15:
            raise ValidationError({"offset": f"an offset of at most 10**15, got {offset}"})
        return offset
