"""The edgefm guardrails CrossGuard pack: `pulumi preview --policy-pack policies/guardrails`.

Policies are mandatory unless listed otherwise in README.md; per-policy settings (allowed registries and
the like) come from `--policy-pack-config`, see README.md for the schema.
"""

from edgefm_guardrails.crossguard import PACK_NAME, policies
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(name=PACK_NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=policies())
