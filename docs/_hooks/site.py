"""MkDocs hooks for the documentation site (mkdocs.yml `hooks:`; not a page, see `exclude_docs`).

* Links from a page to a file of the repository outside `docs/` (`../examples/trio_app.py`)
  become links to that file on GitHub, so that they work on the site as in a checkout.  A link
  to a file that does not exist is a warning, which fails `mkdocs build --strict`.
* The docstrings use Sphinx roles (``:class:`Throttle` ``), which Markdown renders as text.
  They become code, linked to the reference entry when the target is a public name.  Their
  ``Example::`` literal blocks render as code already; the ``::`` becomes ``:`` (or goes).
"""

from __future__ import annotations

import html
import logging
import posixpath
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files
    from mkdocs.structure.pages import Page

log = logging.getLogger("mkdocs.hooks.site")

# [text](target) and [text](target "title"); the target of a repository file, not a URL.
_LINK = re.compile(r"(\]\()([^)\s#]+)((?:#[^)\s]*)?(?:\s+\"[^\"]*\")?\))")
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r'<h\d id="(throttle_trio[\w.]*)"')
_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|exc|data|mod|obj):<code>(~?)([\w.]+)</code>")

# Public modules, in the order that decides where a bare name (`TokenBucket`) is documented:
# the policies are documented once, as throttle_trio.policy.NAME (docs/reference/policies.md).
_MODULES = (
    "throttle_trio.policy",
    "throttle_trio",
    "throttle_trio.testing",
    "throttle_trio.redis",
    "throttle_trio.httpx2",
    "throttle_trio.httpx",
)
_short_names: dict[str, str] = {}  # "TokenBucket" -> "throttle_trio.policy.TokenBucket"


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    import importlib

    _short_names.clear()
    for module_name in _MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", ()):
            _short_names.setdefault(name, f"{module_name}.{name}")
    return config


def on_page_markdown(markdown: str, *, page: Page, config: MkDocsConfig, files: Files) -> str:
    docs_dir = Path(config["docs_dir"]).resolve()
    root = docs_dir.parent
    repo_url = (config.get("repo_url") or "").rstrip("/")
    page_dir = posixpath.dirname(page.file.src_uri)

    def rewrite(match: re.Match[str]) -> str:
        target = match[2]
        if "://" in target or target.startswith(("mailto:", "/")):
            return match[0]
        resolved = posixpath.normpath(posixpath.join("docs", page_dir, target))
        if resolved.startswith("docs/"):
            return match[0]  # a page or asset: mkdocs validates it
        path = root / resolved
        if not path.exists():
            log.warning("%s links to %s, which does not exist", page.file.src_uri, resolved)
            return match[0]
        kind = "tree" if path.is_dir() else "blob"
        return f"{match[1]}{repo_url}/{kind}/main/{resolved}{match[3]}"

    out: list[str] = []
    in_fence = False
    for line in markdown.splitlines(keepends=True):
        if _FENCE.match(line):
            in_fence = not in_fence
        out.append(line if in_fence else _LINK.sub(rewrite, line))
    return "".join(out)


def on_page_content(content: str, **kwargs: Any) -> str:
    # The objects rendered on this page, by the position of their heading, so that a bare name
    # in a docstring (:meth:`settle`) resolves against the object it is written in.
    headings = [(m.start(), m[1]) for m in _HEADING.finditer(content)]
    on_page = {identifier for _, identifier in headings}

    def resolve(target: str, position: int) -> str | None:
        if target.startswith("throttle_trio."):  # throttle_trio.TokenBucket is documented
            target = target.removeprefix("throttle_trio.")  # as throttle_trio.policy.TokenBucket
            if target.partition(".")[0] not in _short_names:
                return f"throttle_trio.{target}"
        head, _, rest = target.partition(".")
        enclosing = next((i for p, i in reversed(headings) if p < position), "")
        while enclosing:  # Reservation.release, then Reservation, then the module
            if f"{enclosing}.{target}" in on_page:
                return f"{enclosing}.{target}"
            enclosing = enclosing.rpartition(".")[0]
        if head in _short_names:
            return _short_names[head] + (f".{rest}" if rest else "")
        return None

    def role(match: re.Match[str]) -> str:
        tilde, target = match[1], match[2]
        code = f"<code>{html.escape(target.rsplit('.', 1)[-1] if tilde else target)}</code>"
        identifier = resolve(target, match.start())
        if identifier is None:
            return code  # a name the reference does not list
        return f'<autoref identifier="{identifier}" optional>{code}</autoref>'

    content = _ROLE.sub(role, content)
    return content.replace("<p>::</p>", "").replace("::</p>", ":</p>")
