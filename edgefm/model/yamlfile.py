"""Reading config files strictly: any file that cannot be read, decoded or parsed is one line saying why, and
YAML that means something other than it seems (a key given twice, aliases) is refused rather than guessed at."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any, Final

import yaml

# Stack and placement files are a few kilobytes; anything this large is not one.
MAX_BYTES: Final = 1 << 20
# YAML allows UTF-8, UTF-16 and UTF-32; the byte-order mark says which (UTF-32 first: its LE mark starts
# with UTF-16's).
_BOMS: Final = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


class FileProblem(ValueError):
    """Why a file could not be read; the message is one line."""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (YAML says they are an error; PyYAML keeps the last) and
    aliases (a file of nested aliases expands to gigabytes)."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise yaml.composer.ComposerError(
                None, None, f"aliases (*{event.anchor}) are not allowed in config files", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a plain value, not a list or mapping", key_node.start_mark
                ) from None
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} is given twice (first on line {seen[key].start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _mapping(loader: _StrictLoader, node: yaml.Node) -> dict[Any, Any]:
    if not isinstance(node, yaml.MappingNode):
        raise yaml.constructor.ConstructorError(None, None, "expected a mapping", node.start_mark)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def decode(data: bytes) -> str:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data[len(bom) :].decode(encoding)
            except UnicodeDecodeError as exc:
                raise FileProblem(f"is not valid {encoding.upper()} text (at byte {exc.start + len(bom)})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileProblem(
            f"is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} (save it as UTF-8)"
        ) from None


def yaml_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        return f"is not valid YAML: {what}{context} at line {mark.line + 1}, column {mark.column + 1}"
    return f"is not valid YAML: {exc}"


def parse(text: str) -> Any:
    """YAML text → data, strictly; FileProblem says what is wrong, on one line."""
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise FileProblem(" ".join(yaml_problem(exc).split())) from None
    except RecursionError:
        raise FileProblem("is not valid YAML: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as exc:
        # PyYAML's own constructors raise these for values that look typed but are not (a date 2023-02-30).
        raise FileProblem(" ".join(f"is not valid YAML: {exc}".split())) from None


def read(path: Path) -> Any:
    """A YAML file's data; FileProblem for a file that is missing, unreadable, too large, not text or not YAML."""
    try:
        if path.is_dir():
            raise FileProblem("is a directory, not a file")
        with path.open("rb") as f:
            data = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise FileProblem("not found") from None
    except PermissionError:
        raise FileProblem("cannot be read: permission denied") from None
    except OSError as exc:
        raise FileProblem(f"cannot be read: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise FileProblem(f"is larger than {MAX_BYTES // 1024} KiB; a config file is a few kilobytes")
    return parse(decode(data))
