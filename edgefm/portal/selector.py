"""Kubernetes label selector text (`tier=production,wave in (1,2),!legacy`) → the placement LabelSelector."""

from __future__ import annotations

import re
from typing import Literal

from edgefm.model.placement import LabelSelector, LabelSelectorRequirement

_KEY = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_VALUE = r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
_SET = re.compile(rf"^(?P<key>{_KEY})\s+(?P<op>in|notin)\s+\((?P<values>[^()]*)\)$")
_EQ = re.compile(rf"^(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})$")
_EXISTS = re.compile(rf"^(?P<neg>!?)\s*(?P<key>{_KEY})$")


class SelectorError(ValueError):
    pass


def _terms(text: str) -> list[str]:
    """Splits on commas outside parentheses."""
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            terms.append(text[start:i].strip())
            start = i + 1
    terms.append(text[start:].strip())
    return [t for t in terms if t]


def parse_selector(text: str) -> LabelSelector:
    """Parses selector text; an empty text selects every site. Raises SelectorError naming the bad term."""
    labels: dict[str, str] = {}
    expressions: list[LabelSelectorRequirement] = []
    for term in _terms(text.strip()):
        if m := _SET.match(term):
            values = [v.strip() for v in m["values"].split(",") if v.strip()]
            bad = [v for v in values if not re.fullmatch(_VALUE, v)]
            if not values or bad:
                raise SelectorError(f"selector term {term!r}: give one or more label values inside ( )")
            op: Literal["In", "NotIn"] = "In" if m["op"] == "in" else "NotIn"
            expressions.append(LabelSelectorRequirement(key=m["key"], operator=op, values=values))
        elif m := _EQ.match(term):
            if m["op"] == "!=":
                expressions.append(LabelSelectorRequirement(key=m["key"], operator="NotIn", values=[m["value"]]))
            else:
                labels[m["key"]] = m["value"]
        elif m := _EXISTS.match(term):
            exists: Literal["DoesNotExist", "Exists"] = "DoesNotExist" if m["neg"] else "Exists"
            expressions.append(LabelSelectorRequirement(key=m["key"], operator=exists))
        else:
            raise SelectorError(
                f"selector term {term!r} is not key=value, key!=value, key in (a,b), key notin (a,b), key or !key"
            )
    return LabelSelector(match_labels=labels, match_expressions=expressions)
