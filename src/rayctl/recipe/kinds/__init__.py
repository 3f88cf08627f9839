"""The one definition of every workload kind's `workload:` fields (JSON Schema fragments).

Imported by the recipe validator (client side) and by the runners (on the cluster);
it imports only the standard library and its siblings here, never the launcher side.
"""

from __future__ import annotations

from . import batch_infer, serve, train, tune
from .base import COMMON_FIELDS, USER_CODE, USER_CODE_KEYS, describe, with_defaults, workload_schema

KINDS = {m.KIND: m for m in (train, tune, batch_infer, serve)}

__all__ = ["COMMON_FIELDS", "KINDS", "USER_CODE", "USER_CODE_KEYS", "describe", "with_defaults", "workload_schema"]
