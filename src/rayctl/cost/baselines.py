"""Managed-API baselines for `rayctl cost compare`: the genai-prices wrapper lives in
`rayctl.planning.api_prices` (one copy, shared with the recorded cost of API runs)."""

from __future__ import annotations

from ..planning.api_prices import (  # noqa: F401  (the public names cost/ and its tests use)
    DEFAULT_APIS,
    ApiPrice,
    _providers,
    library_version,
    price,
    split_name,
    suggest,
)
