"""edgefm guardrails: the policy logic of the CrossGuard pack, as plain typed functions.

Each module covers one area and exposes `check_*` functions over `model.Resource` values; `crossguard.py`
wraps them as CrossGuard policies. Nothing here needs the Pulumi engine.
"""
