"""Config problems: one line each, naming the stack, the exact key path and what is wrong."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import ValidationError

from edgefm.model.fields import PATTERN_WORDS

# A user fixes problems top to bottom; past this many, the rest are counted rather than listed.
SHOWN_PROBLEMS: Final = 20
Loc = tuple[int | str, ...]


@dataclass(frozen=True, order=True)
class Problem:
    stack: str
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        # One line, whatever the message quotes (YAML errors, file names).
        return " ".join(f"{self.stack}: {where}{self.message}".split())


def summary(problems: Sequence[Problem], limit: int = SHOWN_PROBLEMS) -> list[str]:
    """The problems as lines, the first `limit` of them, then one line counting the rest."""
    lines = [str(p) for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"… and {len(problems) - limit} more problem(s)")
    return lines


class ConfigError(Exception):
    """Raised with every problem found, so a user fixes them all in one pass."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__("\n".join(summary(self.problems)))


class KeyedError(ValueError):
    """Raised by a model validator with problems at exact keys below the model (`nodes[1].address`), so each
    is reported where it is rather than at the model's own key."""

    def __init__(self, problems: Sequence[tuple[Loc, str]]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(message for _, message in self.problems))


def loc_to_path(prefix: str, loc: Loc) -> str:
    path = prefix
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.startswith("[") or part in ("", "__root__"):
            continue
        else:
            path += f".{part}" if path else str(part)
    return path


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(err: Any) -> str:
    """pydantic's message, in this project's words where pydantic's would puzzle a user."""
    kind, value = err["type"], err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern"))
        words = PATTERN_WORDS.get(pattern, f"does not match the pattern {pattern}")
        return f"{words}; got {_shown(value)}"
    if kind in ("int_type", "int_from_float", "int_parsing"):
        if isinstance(value, bool):
            return f"must be an integer, got the boolean {str(value).lower()} (YAML reads yes/no/on/off as booleans)"
        return f"must be an integer, got {_shown(value)}"
    if kind == "bool_type":
        return f"must be true or false, got {_shown(value)}"
    if kind == "string_type":
        hint = "; quote it" if isinstance(value, int | float | bool) else ""
        return f"must be a string, got {_shown(value)}{hint}"
    if kind in ("list_type", "dict_type", "model_type", "model_attributes_type"):
        expected = "a list" if kind == "list_type" else "a mapping"
        return f"must be {expected}, got {_shown(value)}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}, got {_shown(value)}"
    return str(err["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")


def from_validation_error(stack: str, prefix: str, error: ValidationError) -> list[Problem]:
    """Turns pydantic's error list into problems whose paths use the YAML key names."""
    problems: list[Problem] = []
    errors = error.errors(include_url=False)
    # An optional key (`str | None`) fails both branches; "should be None" adds nothing to the other one.
    located = {tuple(e["loc"][:-1]) for e in errors if e["type"] != "none_required" and len(e["loc"]) > 1}
    for err in errors:
        if err["type"] == "none_required" and tuple(err["loc"][:-1]) in located:
            continue
        # Drop the union-branch and function-validator tags pydantic inserts into `loc`.
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-"))))
        raised = (err.get("ctx") or {}).get("error")
        if isinstance(raised, KeyedError):
            problems += [Problem(stack, loc_to_path(prefix, loc + sub), message) for sub, message in raised.problems]
            continue
        problems.append(Problem(stack, loc_to_path(prefix, loc), _message(err)))
    return problems
