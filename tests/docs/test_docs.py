"""The docs stay true: the API reference is current, links resolve, examples compile."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
GENERATOR = DOCS / "gen_api.py"
API = DOCS / "api.md"
COMPILED_DOCS = ("concepts.md", "guide.md", "operations.md")
"""Docs whose ```python blocks must compile."""

FENCE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)$")
HEADING = re.compile(r" {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def markdown_files() -> list[Path]:
    """README.md and every markdown file of docs/."""
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("taskservice_docs_gen_api", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def split_fences(text: str) -> Iterator[tuple[str | None, str]]:
    """(info string, block) for each fenced block and (None, prose line) for the rest."""
    fence = ""
    info = ""
    block: list[str] = []
    for line in text.splitlines():
        match = FENCE.match(line)
        if not fence:
            if match:
                fence, info, block = match.group(1), match.group(2).strip(), []
            else:
                yield None, line
        elif match and match.group(1).startswith(fence) and not match.group(2).strip():
            yield info, "\n".join(block) + "\n"
            fence = ""
        else:
            block.append(line)
    if fence:
        raise AssertionError(f"unclosed code fence {fence}{info}")


def prose_lines(text: str) -> list[str]:
    return [line for info, line in split_fences(text) if info is None]


def github_slug(heading: str) -> str:
    """GitHub's heading anchor: inline markup dropped, lower case, punctuation removed."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading anchor of a markdown text, repeats numbered as GitHub does."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for line in prose_lines(text):
        match = HEADING.match(line)
        if not match:
            continue
        base = github_slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(text: str) -> list[str]:
    """Targets of the links and images of a markdown text that are not URLs."""
    targets: list[str] = []
    for line in prose_lines(text):
        reference = REFERENCE_LINK.match(line)
        if reference:
            targets.append(reference.group(1))
            continue
        targets.extend(INLINE_LINK.findall(INLINE_CODE.sub("", line)))
    return [target for target in targets if not SCHEME.match(target)]


def python_blocks(text: str) -> list[str]:
    """The fenced blocks marked exactly ```python."""
    return [block for info, block in split_fences(text) if info == "python"]


# -- the API reference --------------------------------------------------------


def test_the_api_reference_is_up_to_date() -> None:
    expected = load_generator().render()
    assert API.exists(), "docs/api.md is missing: run python docs/gen_api.py"
    assert API.read_text(encoding="utf-8") == expected, (
        "docs/api.md is out of date: run python docs/gen_api.py"
    )


def test_the_api_reference_is_the_same_in_another_process() -> None:
    """Hash seeds and import order change nothing: the script is deterministic."""
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    done = subprocess.run(
        [sys.executable, str(GENERATOR), "--stdout"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert done.stdout == API.read_text(encoding="utf-8")


def test_the_api_reference_names_every_public_name() -> None:
    import taskservice

    text = API.read_text(encoding="utf-8")
    for name in taskservice.__all__:
        assert f"## `{name}`" in text, name


# -- links --------------------------------------------------------------------


@pytest.mark.parametrize("path", markdown_files(), ids=lambda path: path.name)
def test_every_relative_link_points_to_an_existing_file(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    broken: list[str] = []
    for target in relative_links(text):
        file_part, _, fragment = target.partition("#")
        destination = (path.parent / unquote(file_part)).resolve() if file_part else path
        if not destination.exists():
            broken.append(f"{target} (no {os.path.relpath(destination, ROOT)})")
            continue
        if (
            fragment
            and destination.suffix == ".md"
            and fragment not in anchors(destination.read_text(encoding="utf-8"))
        ):
            broken.append(f"{target} (no heading #{fragment} in {destination.name})")
    assert not broken, f"{path.name}: broken links: {broken}"


def test_the_index_links_every_doc() -> None:
    index = DOCS / "index.md"
    linked = {
        Path(unquote(target.partition("#")[0])).name
        for target in relative_links(index.read_text(encoding="utf-8"))
    }
    missing = [
        path.name
        for path in DOCS.glob("*.md")
        if path.name != "index.md" and path.name not in linked
    ]
    assert not missing, f"docs/index.md does not link {missing}"


def test_the_link_checker_sees_links() -> None:
    """Guard the parser: a link inside code is ignored, a real one is found."""
    text = "See [a](a.md#x) and `[b](b.md)`.\n\n```sh\n[c](c.md)\n```\n[d]: d.md\n"
    assert relative_links(text) == ["a.md#x", "d.md"]
    assert anchors("# The `Task` API\n## Task\n## Task\n") == {"the-task-api", "task", "task-1"}


# -- examples -----------------------------------------------------------------


@pytest.mark.parametrize("name", COMPILED_DOCS)
def test_every_python_block_compiles(name: str) -> None:
    text = (DOCS / name).read_text(encoding="utf-8")
    blocks = python_blocks(text)
    assert blocks, f"docs/{name} has no ```python block"
    for number, block in enumerate(blocks, 1):
        try:
            compile(block, f"docs/{name} python block {number}", "exec")
        except SyntaxError as error:
            pytest.fail(f"docs/{name} python block {number} does not compile: {error}\n{block}")
