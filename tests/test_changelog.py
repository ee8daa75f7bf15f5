"""CHANGELOG.md keeps the Keep a Changelog form, and the package's version has its section.

The form (https://keepachangelog.com/en/1.1.0/): ``## [Unreleased]`` first, then one
``## [x.y.z] - YYYY-MM-DD`` per release, newest first; inside each, ``### Added``, ``Changed``,
``Deprecated``, ``Removed``, ``Fixed`` or ``Security``; and at the bottom one link reference
per heading (``[x.y.z]: https://...``).  The version comes from ``throttle_trio/_version.py``
(read by hatch): a release must have its dated section, a development version an Unreleased one.
"""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field
from pathlib import Path

from packaging.version import Version

from throttle_trio._version import __version__

CHANGELOG = Path(__file__).resolve().parent.parent / "CHANGELOG.md"
KINDS = ("Added", "Changed", "Deprecated", "Removed", "Fixed", "Security")
RELEASE = re.compile(r"^## \[(?P<version>\d+\.\d+\.\d+)\] - (?P<date>\d{4}-\d{2}-\d{2})$")
LINK = re.compile(r"^\[(?P<label>[^\]]+)\]: (?P<url>https://\S+)$")


@dataclass
class Section:
    label: str  # "Unreleased" or a version
    date: datetime.date | None
    kinds: list[str] = field(default_factory=list[str])
    entries: int = 0


def parse(text: str) -> tuple[list[Section], dict[str, str], list[str]]:
    """The sections, the link references and the lines that break the form."""
    sections: list[Section] = []
    links: dict[str, str] = {}
    errors: list[str] = []
    for number, line in enumerate(text.splitlines(), start=1):
        where = f"line {number}: {line!r}"
        if line.startswith("## "):
            if line == "## [Unreleased]":
                sections.append(Section("Unreleased", None))
            elif match := RELEASE.match(line):
                try:
                    date = datetime.date.fromisoformat(match["date"])
                except ValueError:
                    errors.append(f"{where}: not a date")
                    date = None
                sections.append(Section(match["version"], date))
            else:
                errors.append(f"{where}: not '## [Unreleased]' nor '## [x.y.z] - YYYY-MM-DD'")
        elif line.startswith("### "):
            kind = line.removeprefix("### ")
            if not sections:
                errors.append(f"{where}: outside a version section")
            elif kind not in KINDS:
                errors.append(f"{where}: not one of {', '.join(KINDS)}")
            elif kind in sections[-1].kinds:
                errors.append(f"{where}: twice in [{sections[-1].label}]")
            else:
                sections[-1].kinds.append(kind)
        elif line.startswith("#") and number != 1:
            errors.append(f"{where}: only ## versions and ### kinds of change")
        elif match := LINK.match(line):
            links[match["label"]] = match["url"]
        elif line.startswith("- ") and sections:
            if not sections[-1].kinds:
                errors.append(f"{where}: an entry outside a ### kind of change")
            sections[-1].entries += 1
    return sections, links, errors


def read() -> tuple[list[Section], dict[str, str], list[str]]:
    return parse(CHANGELOG.read_text(encoding="utf-8"))


def test_changelog_has_the_keep_a_changelog_form() -> None:
    text = CHANGELOG.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "# Changelog"
    assert "keepachangelog.com" in text
    sections, _, errors = read()
    assert errors == []
    assert sections, "no version sections"
    labels = [section.label for section in sections]
    assert "Unreleased" not in labels[1:], "[Unreleased] comes first, once"


def test_releases_are_newest_first_and_not_empty() -> None:
    sections, _, _ = read()
    releases = [section for section in sections if section.label != "Unreleased"]
    versions = [Version(section.label) for section in releases]
    assert versions == sorted(versions, reverse=True)
    assert len(set(versions)) == len(versions)
    dates = [section.date for section in releases if section.date is not None]
    assert dates == sorted(dates, reverse=True)
    assert [section.label for section in releases if section.entries == 0] == []


def test_every_heading_has_its_link_reference() -> None:
    sections, links, _ = read()
    labels = {section.label for section in sections}
    assert labels - set(links) == set(), "headings without a link reference at the bottom"
    assert set(links) - labels == set(), "link references without a heading"


def test_the_package_version_has_a_section() -> None:
    """A release needs its dated section; a development or pre-release version needs
    ``[Unreleased]``, and no section may be newer than the version being built."""
    version = Version(__version__)
    sections, _, _ = read()
    released = {Version(section.label) for section in sections if section.label != "Unreleased"}
    if version.is_prerelease or version.is_devrelease:
        assert "Unreleased" in {section.label for section in sections}, __version__
        assert all(release < version for release in released), (released, __version__)
    else:
        assert version in released, f"CHANGELOG.md has no '## [{version}] - date' section"
        assert max(released) == version


def test_the_parser_rejects_what_breaks_the_form() -> None:
    """The checks above bite: a wrong heading, an unknown kind, a stray entry."""
    text = "\n".join(
        [
            "# Changelog",
            "## Unreleased",
            "## [1.0.0] - 2025-13-01",
            "### Improved",
            "## [0.9.0]",
            "- loose",
            "#### Detail",
        ]
    )
    _, _, errors = parse(text)
    assert [error.split(": ")[-1] for error in errors] == [
        "not '## [Unreleased]' nor '## [x.y.z] - YYYY-MM-DD'",
        "not a date",
        "not one of Added, Changed, Deprecated, Removed, Fixed, Security",
        "not '## [Unreleased]' nor '## [x.y.z] - YYYY-MM-DD'",
        "an entry outside a ### kind of change",
        "only ## versions and ### kinds of change",
    ]
