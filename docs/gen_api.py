"""Generate docs/api.md from the docstrings of taskservice's public API.

    python docs/gen_api.py            # rewrite docs/api.md
    python docs/gen_api.py --check    # exit 1 if docs/api.md is out of date
    python docs/gen_api.py --stdout   # print the reference instead of writing it

The reference covers every name in `taskservice.__all__`, the public methods
and properties of its classes, and the objects reached through them
(`service.view` is a `Views`, `ctx.task` a `TaskHandle`). Signatures come from
`inspect`, text from the docstrings, attributes from the assignments in
`__init__` (and `TaskService._setup`) with the docstring that follows them.
The output depends only on the source: no addresses, no dates, no versions.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import re
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec

import taskservice
from taskservice.context import TaskHandle
from taskservice.storage.views import Views

OUTPUT = Path(__file__).resolve().parent / "api.md"
WIDTH = 88
"""Signatures longer than this are written one parameter per line."""

LEAD = ("TaskService", "TaskRun", "task", "TaskDefinition", "TaskContext")
"""Names of `__all__` documented first, in this order; the others follow by kind."""

REACHED: dict[str, tuple[type[Any], str]] = {
    "TaskContext": (TaskHandle, "`ctx.task`"),
    "TaskService": (Views, "`service.view`"),
}
"""Classes outside `__all__` documented after the class that hands them out."""

INIT_METHODS = ("__init__", "_setup")
"""Methods whose `self.<name>` assignments are listed as attributes."""

CONSTRUCTED = ("TaskDefinition",)
"""Classes (besides Structs and errors) whose constructor is API; the others are handed out."""


class _Text:
    """A value whose repr is the given text (for annotations and defaults)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def heading_anchors(markdown: str) -> dict[str, str]:
    """Heading text → anchor, numbering repeats as GitHub does (`task`, `task-1`)."""
    anchors: dict[str, str] = {}
    seen: dict[str, int] = {}
    fence = ""
    for line in markdown.splitlines():
        marker = re.match(r" {0,3}(`{3,}|~{3,})", line)
        if marker:
            if not fence:
                fence = marker.group(1)
            elif marker.group(1).startswith(fence):
                fence = ""
            continue
        heading = re.match(r"#{1,6} +(.*?) *#* *$", line)
        if fence or not heading:
            continue
        base = slug(heading.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        anchors.setdefault(heading.group(1), base if count == 0 else f"{base}-{count}")
    return anchors


def _doc(obj: Any) -> str:
    """The object's own docstring, cleaned; never one inherited from a base class."""
    raw = obj.__dict__.get("__doc__") if isinstance(obj, type) else getattr(obj, "__doc__", None)
    return inspect.cleandoc(raw) if isinstance(raw, str) and raw.strip() else ""


def _annotation(annotation: Any) -> str:
    if isinstance(annotation, str):
        return annotation
    return inspect.formatannotation(annotation)


def _default(value: Any) -> str:
    if inspect.isfunction(value) or inspect.isbuiltin(value) or isinstance(value, type):
        return value.__qualname__
    text = repr(value)
    if " at 0x" in text:  # an object without a stable repr
        return f"<{type(value).__qualname__}>"
    return text


def _clean(parameter: inspect.Parameter) -> inspect.Parameter:
    changes: dict[str, Any] = {}
    if parameter.annotation is not inspect.Parameter.empty:
        changes["annotation"] = _Text(_annotation(parameter.annotation))
    if parameter.default is not inspect.Parameter.empty:
        changes["default"] = _Text(_default(parameter.default))
    return parameter.replace(**changes)


def _parameter_texts(signature: inspect.Signature) -> list[str]:
    """Each parameter as text, with the `/` and `*` markers where Python puts them."""
    texts: list[str] = []
    positional_only = False
    keyword_marker_due = True
    for parameter in signature.parameters.values():
        kind = parameter.kind
        if kind is inspect.Parameter.POSITIONAL_ONLY:
            positional_only = True
        elif positional_only:
            texts.append("/")
            positional_only = False
        if kind is inspect.Parameter.VAR_POSITIONAL:
            keyword_marker_due = False
        elif kind is inspect.Parameter.KEYWORD_ONLY and keyword_marker_due:
            texts.append("*")
            keyword_marker_due = False
        texts.append(str(_clean(parameter)))
    if positional_only:
        texts.append("/")
    return texts


def signature_text(
    name: str, obj: Callable[..., Any], drop_first: bool = False, constructor: bool = False
) -> str:
    """`name(params) -> return`, wrapped one parameter per line when long.

    `drop_first` leaves out `self`/`cls`; a `constructor` has no return annotation.
    """
    signature = inspect.signature(obj)
    if drop_first:
        parameters = list(signature.parameters.values())[1:]
        signature = signature.replace(parameters=parameters)
    params = _parameter_texts(signature)
    returns = ""
    if signature.return_annotation is not inspect.Signature.empty and not constructor:
        returns = f" -> {_annotation(signature.return_annotation)}"
    line = f"{name}({', '.join(params)}){returns}"
    if len(line) <= WIDTH or not params:
        return line
    body = "".join(f"    {param},\n" for param in params)
    return f"{name}(\n{body}){returns}"


def _code(text: str) -> str:
    return f"```python\n{text}\n```\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _attributes(cls: type[Any]) -> list[tuple[str, str, str]]:
    """(name, annotation, docstring) of each public `self.<name>` set in the init methods."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return []
    classdef = ast.parse(source).body[0]
    assert isinstance(classdef, ast.ClassDef)
    found: dict[str, tuple[str, str, str]] = {}
    for node in classdef.body:
        if not isinstance(node, ast.FunctionDef) or node.name not in INIT_METHODS:
            continue
        body = node.body
        arguments = node.args
        parameters = {arg.arg for arg in [*arguments.args, *arguments.kwonlyargs]} - {"self"}
        for index, statement in enumerate(body):
            annotation = ""
            if isinstance(statement, ast.AnnAssign):
                target: ast.expr = statement.target
                annotation = ast.unparse(statement.annotation)
            elif isinstance(statement, ast.Assign) and len(statement.targets) == 1:
                target = statement.targets[0]
            else:
                continue
            if not (
                isinstance(target, ast.Attribute)
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
                and not target.attr.startswith("_")
            ):
                continue
            doc = ""
            value = statement.value
            if node.name == "__init__" and isinstance(value, ast.Name) and value.id in parameters:
                doc = f"The `{value.id}` argument, as given."
            following = body[index + 1] if index + 1 < len(body) else None
            if (
                isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                doc = inspect.cleandoc(following.value.value)
            held = found.get(target.attr)
            if held is None:
                found[target.attr] = (target.attr, annotation, doc)
            elif not (held[1] and held[2]):
                found[target.attr] = (target.attr, held[1] or annotation, held[2] or doc)
    return list(found.values())


def _render_attributes(owner: str, cls: type[Any]) -> Iterator[str]:
    attributes = _attributes(cls)
    if not attributes:
        return
    yield "| attribute | type | description |\n|---|---|---|\n"
    for name, annotation, doc in attributes:
        text = _cell(doc) if doc else "(undocumented)"
        yield f"| `{owner}.{name}` | {f'`{_cell(annotation)}`' if annotation else ''} | {text} |\n"
    yield "\n"


def _members(cls: type[Any]) -> Iterator[tuple[str, Any]]:
    """Public methods and properties defined in the class itself, in source order."""
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(value, classmethod | staticmethod | property) or inspect.isfunction(value):
            yield name, value


def _render_member(owner: str, name: str, value: Any) -> Iterator[str]:
    qualified = f"{owner}.{name}"
    if isinstance(value, property):
        yield f"### `{qualified}`\n\n"
        returns = ""
        if value.fget is not None:
            hint = inspect.signature(value.fget).return_annotation
            if hint is not inspect.Signature.empty:
                returns = f": {_annotation(hint)}"
        yield _code(f"{qualified}{returns}  # property")
        doc = _doc(value.fget) if value.fget is not None else ""
    else:
        function = value.__func__ if isinstance(value, classmethod | staticmethod) else value
        prefix = (
            "@classmethod\n"
            if isinstance(value, classmethod)
            else "@staticmethod\n"
            if isinstance(value, staticmethod)
            else ""
        )
        is_async = inspect.iscoroutinefunction(function) or inspect.isasyncgenfunction(function)
        keyword = "async " if is_async else ""
        drop_first = not isinstance(value, staticmethod)
        yield f"### `{qualified}`\n\n"
        yield _code(prefix + keyword + signature_text(qualified, function, drop_first))
        doc = _doc(function)
    yield "\n" + (doc if doc else "(undocumented)") + "\n\n"


def _render_struct(name: str, cls: type[msgspec.Struct]) -> Iterator[str]:
    annotations: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        if issubclass(base, msgspec.Struct) and base is not msgspec.Struct:
            annotations.update(inspect.get_annotations(base))
    config = cls.__struct_config__
    traits = ["A msgspec `Struct`"]
    if config.frozen:
        traits.append("frozen")
    if config.omit_defaults:
        traits.append("encodes without default values")
    kinds = {parameter.kind for parameter in inspect.signature(cls).parameters.values()}
    if kinds == {inspect.Parameter.KEYWORD_ONLY}:
        traits.append("built with keyword arguments only")
    yield f"*{', '.join(traits)}.*\n\n"
    yield "| field | type | default |\n|---|---|---|\n"
    for field in msgspec.structs.fields(cls):
        hint = _annotation(annotations.get(field.name, field.type))
        if field.default is not msgspec.NODEFAULT:
            default = f"`{_cell(_default(field.default))}`"
        elif field.default_factory is not msgspec.NODEFAULT:
            default = f"`{_cell(_default(field.default_factory))}()`"
        else:
            default = "required"
        yield f"| `{field.name}` | `{_cell(hint)}` | {default} |\n"
    yield "\n"


def _heading_of_class(name: str, cls: type[Any]) -> str:
    bases = [base.__name__ for base in cls.__bases__ if base is not object]
    bases = [base for base in bases if base not in ("Generic", "Struct")]
    return f"class {name}({', '.join(bases)})" if bases else f"class {name}"


def render_class(name: str, cls: type[Any], reached_as: str | None = None) -> Iterator[str]:
    """One class: heading, declaration, docstring, fields or attributes, then its members."""
    yield f"## `{name}`\n\n"
    if reached_as:
        yield f"Reached as {reached_as}.\n\n"
    is_struct = issubclass(cls, msgspec.Struct)
    own_init = "__init__" in vars(cls) and not is_struct
    if own_init and issubclass(cls, BaseException):
        declaration = _heading_of_class(name, cls)
        init = signature_text(name, cls.__init__, drop_first=True, constructor=True)
        yield _code(f"{declaration}\n{init}")
    elif own_init and name in CONSTRUCTED:
        yield _code(signature_text(name, cls, constructor=True))
    else:
        yield _code(_heading_of_class(name, cls))
    doc = _doc(cls)
    yield "\n" + (doc if doc else "(undocumented)") + "\n\n"
    if is_struct:
        yield from _render_struct(name, cls)
    else:
        yield from _render_attributes(_owner_name(name, cls), cls)
    for member, value in _members(cls):
        yield from _render_member(name, member, value)


def _owner_name(name: str, cls: type[Any]) -> str:
    """How an instance is usually called in the attribute table."""
    return {
        "TaskContext": "ctx",
        "TaskDefinition": "definition",
        "TaskHandle": "ctx.task",
        "TaskRun": "run",
        "TaskService": "service",
        "Views": "service.view",
    }.get(name, name)


def render_instance(name: str, obj: Any) -> Iterator[str]:
    """A module-level object (`task`): its type's docstring and public methods."""
    cls = type(obj)
    yield f"## `{name}`\n\n"
    yield _code(f"{name}: {cls.__name__}  # a module-level object")
    doc = _doc(cls)
    yield "\n" + (doc if doc else "(undocumented)") + "\n\n"
    for member, value in _members(cls):
        yield from _render_member(name, member, value)


def _group(name: str, obj: Any) -> str:
    if isinstance(obj, type) and issubclass(obj, BaseException):
        return "Errors"
    if isinstance(obj, type) and issubclass(obj, msgspec.Struct):
        return "Records and messages"
    return "Service, definitions and context"


GROUPS = ("Service, definitions and context", "Records and messages", "Errors")


def _ordered_names() -> dict[str, list[str]]:
    names = list(taskservice.__all__)
    lead = [name for name in LEAD if name in names]
    rest = [name for name in names if name not in lead]
    grouped: dict[str, list[str]] = {group: [] for group in GROUPS}
    for name in lead + rest:
        grouped[_group(name, getattr(taskservice, name))].append(name)
    return grouped


def render() -> str:
    """The whole reference as markdown."""
    grouped = _ordered_names()
    sections: list[tuple[str, list[str]]] = []
    for group in GROUPS:
        entries: list[str] = []
        for name in grouped[group]:
            entries.append(name)
            if name in REACHED:
                entries.append(REACHED[name][0].__name__)
        sections.append((group, entries))

    head: list[str] = [
        "# API reference\n\n",
        "<!-- Generated by docs/gen_api.py from the docstrings; do not edit by hand. -->\n\n",
        "Generated from the docstrings by [`gen_api.py`](gen_api.py) "
        "(`python docs/gen_api.py` rewrites this file; a test fails when it is out of date). "
        "It covers every name `from taskservice import ...` offers, plus `Views` "
        "(`service.view`) and `TaskHandle` (`ctx.task`). Attributes marked "
        "*(undocumented)* are set by the code but have no docstring. For what the "
        "calls mean together, read [concepts.md](concepts.md); the map of the docs is "
        "[index.md](index.md).\n\n",
    ]
    package_doc = _doc(taskservice)
    if package_doc:
        head.append(package_doc + "\n\n")
    body: list[str] = []
    for group, entries in sections:
        body.append(f"# {group}\n\n")
        for entry in entries:
            if entry in taskservice.__all__:
                obj = getattr(taskservice, entry)
                if isinstance(obj, type):
                    body.extend(render_class(entry, obj))
                else:
                    body.extend(render_instance(entry, obj))
            else:
                owner = next(key for key, (cls, _) in REACHED.items() if cls.__name__ == entry)
                cls, reached_as = REACHED[owner]
                body.extend(render_class(entry, cls, reached_as))
    anchors = heading_anchors("".join([*head, "## Contents\n\n", *body]))
    contents: list[str] = ["## Contents\n\n"]
    for group, entries in sections:
        links = ", ".join(f"[`{entry}`](#{anchors[f'`{entry}`']})" for entry in entries)
        contents.append(f"- {group}: {links}\n")
    contents.append("\n")
    text = "".join([*head, *contents, *body])
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or check, or print) docs/api.md; returns the exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--check", action="store_true", help="fail if docs/api.md is stale")
    action.add_argument("--stdout", action="store_true", help="print instead of writing")
    args = parser.parse_args(argv)
    text = render()
    if args.stdout:
        sys.stdout.write(text)
        return 0
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT} is out of date: run python docs/gen_api.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
