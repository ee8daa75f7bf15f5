#!/usr/bin/env bash
# Build the wheel and the sdist and check them as a user would meet them (`make package`).
#
#   1. `python -m build` (the sdist, then the wheel built from the sdist) into a temporary
#      directory, and `twine check --strict`.
#   2. The version comes from one place: throttle_trio/_version.py, read by hatch.  The wheel's
#      and the sdist's metadata carry it, and no other file of the package repeats it.
#   3. The wheel ships py.typed, every module of the source tree and the console script; the
#      sdist ships the tests, the docs, README.md, CHANGELOG.md and LICENSE.
#   4. The wheel, installed without extras into a fresh venv, pulls in anyio and its
#      dependencies and nothing else, and `import throttle_trio` works there.
#   5. Each extra resolves to the top-level requirements declared below and nothing more
#      (`pip install --dry-run --ignore-installed --report` against the built wheel).
#   6. The wheel with the `testing` extra, installed into a fresh venv: the kit imports without
#      the server extra (no hypercorn), and a user's test file using the pytest plugin (virtual
#      clocks on both loops, the fake provider) passes in an empty directory, with no conftest.
#
# Needs the dev extra (build, twine) in $PYTHON (default: the repository's .venv), and PyPI
# (or the pip cache) for the build backend and the dependencies.  Runs from any directory.
# Exits non-zero, saying what is wrong, on the first failed check.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$ROOT/.venv/bin/python" ]]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

# Every extra, and the top-level requirements (project names) it must bring on top of the core
# (extra=names; a plain list rather than an associative array, for macOS's bash 3.2).
EXTRAS=(
    "trio=trio"
    "httpx=httpx"
    "httpx2=httpx2"
    "redis=coredis"
    "server=hypercorn"
    "cli=httpx2 hypercorn"
    "otel=opentelemetry-api"
    "prometheus=prometheus-client"
    "plot=matplotlib"
    "testing=trio looptime httpx hypothesis pytest"
    "all=coredis httpx httpx2 hypercorn trio opentelemetry-api prometheus-client matplotlib"
)
# What `pip install throttle_trio` requires directly: anyio, and below Python 3.13 the
# typing_extensions it already depends on (a type parameter's default, PEP 696).
CORE="anyio"

fail() { echo "check_package: FAILED: $*" >&2; exit 1; }
if "$PYTHON" -c 'import sys; sys.exit(sys.version_info >= (3, 13))'; then
    CORE="anyio typing-extensions"
fi
step() { echo "check_package: $*"; }

START=$SECONDS
"$PYTHON" -c 'import build, twine' 2>/dev/null \
    || fail "$PYTHON lacks build and twine: pip install -e '.[dev]' (or set PYTHON)"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/check_package.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
DIST="$WORK/dist"

# ----------------------------------------------------------------------------- build
step "building the sdist and the wheel (from the sdist) into $DIST"
"$PYTHON" -m build --outdir "$DIST" "$ROOT" >"$WORK/build.log" 2>&1 \
    || { cat "$WORK/build.log" >&2; fail "python -m build"; }
shopt -s nullglob
wheels=("$DIST"/*.whl)
sdists=("$DIST"/*.tar.gz)
shopt -u nullglob
[[ ${#wheels[@]} -eq 1 && ${#sdists[@]} -eq 1 ]] \
    || fail "expected one wheel and one sdist in $DIST, got: $(ls "$DIST")"
WHEEL="${wheels[0]}"
SDIST="${sdists[0]}"
step "built $(basename "$WHEEL") and $(basename "$SDIST")"

step "twine check --strict"
"$PYTHON" -m twine check --strict "$WHEEL" "$SDIST" >"$WORK/twine.log" 2>&1 \
    || { cat "$WORK/twine.log" >&2; fail "twine check --strict"; }

# ----------------------------------------------------------------------------- contents
step "checking the version, the wheel's and the sdist's contents"
"$PYTHON" - "$ROOT" "$WHEEL" "$SDIST" <<'EOF' || fail "package contents (see above)"
import ast, email.parser, re, sys, tarfile, zipfile
from pathlib import Path

from packaging.version import Version

root, wheel, sdist = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
errors = []

# The version: one assignment in throttle_trio/_version.py, canonical, and nowhere else.
tree = ast.parse((root / "throttle_trio/_version.py").read_text(encoding="utf-8"))
versions = [
    node.value.value
    for node in tree.body
    if isinstance(node, ast.Assign)
    and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__version__"]
    and isinstance(node.value, ast.Constant)
]
if len(versions) != 1:
    sys.exit("throttle_trio/_version.py must assign __version__ a string literal, once")
version = versions[0]
if str(Version(version)) != version:
    errors.append(f"_version.py: {version!r} is not canonical (PEP 440: {Version(version)})")
pyproject = (root / "pyproject.toml").read_text(encoding="utf-8")
if not re.search(r'^dynamic = \[.*"version".*\]', pyproject, re.M) or re.search(
    r"^version\s*=", pyproject, re.M
):
    errors.append("pyproject.toml: the version must be dynamic (read from _version.py)")
for path in [*(root / "throttle_trio").rglob("*.py"), root / "pyproject.toml"]:
    text = path.read_text(encoding="utf-8")
    if path.name != "_version.py" and (f'"{version}"' in text or f"'{version}'" in text):
        errors.append(f"{path.relative_to(root)} repeats the version {version!r}")

# The wheel.
with zipfile.ZipFile(wheel) as archive:
    names = set(archive.namelist())
    info = f"throttle_trio-{version}.dist-info"
    if f"{info}/METADATA" not in names:
        errors.append(f"wheel: no {info}/METADATA (the wheel's version differs from {version})")
    else:
        metadata = email.parser.Parser().parsestr(archive.read(f"{info}/METADATA").decode())
        if metadata["Version"] != version:
            errors.append(f"wheel: METADATA Version {metadata['Version']} != {version}")
        if metadata.get("Requires-Python") != ">=3.11":
            errors.append(f"wheel: Requires-Python is {metadata.get('Requires-Python')}")
        entry_points = archive.read(f"{info}/entry_points.txt").decode()
        if "throttle-trio = throttle_trio.cli:main" not in entry_points:
            errors.append("wheel: no throttle-trio console script")
        if not any(n.startswith(f"{info}/licenses/") or n == f"{info}/LICENSE" for n in names):
            errors.append("wheel: no LICENSE in the dist-info")
source = {
    p.relative_to(root).as_posix()
    for p in (root / "throttle_trio").rglob("*")
    if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
}
if "throttle_trio/py.typed" not in names:
    errors.append("wheel: no throttle_trio/py.typed")
if missing := sorted(source - names):
    errors.append(f"wheel: missing {missing}")
if stray := sorted(n for n in names if not n.startswith(("throttle_trio/", info))):
    errors.append(f"wheel: files outside the package: {stray[:10]}")

# The sdist.
with tarfile.open(sdist) as archive:
    prefix = f"throttle_trio-{version}/"
    members = {m.name.removeprefix(prefix) for m in archive.getmembers() if m.isfile()}
    pkg_info = archive.extractfile(prefix + "PKG-INFO")
    if pkg_info is None:
        errors.append("sdist: no PKG-INFO")
    elif (v := email.parser.Parser().parsestr(pkg_info.read().decode())["Version"]) != version:
        errors.append(f"sdist: PKG-INFO Version {v} != {version}")
required = [
    "pyproject.toml", "README.md", "CHANGELOG.md", "LICENSE",
    "throttle_trio/__init__.py", "throttle_trio/_version.py", "throttle_trio/py.typed",
]
if missing := [name for name in required if name not in members]:
    errors.append(f"sdist: missing {missing}")
folders = [("tests", "tests/test_*.py"), ("docs", "docs/*.md")]
if (root / "tests/test_examples.py").is_file():  # the sdist's tests run the examples
    folders.append(("examples", "examples/*.py"))
for folder, pattern in folders:
    expected = {p.relative_to(root).as_posix() for p in root.glob(pattern)}
    if not expected:
        errors.append(f"the checkout has no {pattern}")
    elif missing := sorted(expected - members):
        hint = f" (add {folder!r} to [tool.hatch.build.targets.sdist] include)"
        errors.append(f"sdist: {folder}/ incomplete, missing {missing[:10]}{hint}")
junk = ("/.venv/", "/.git/", "/__pycache__/", "/.hypothesis/", "/.mypy_cache/", "/dist/", "/build/")
if stray := sorted(m for m in members if any(j in f"/{m}" for j in junk)):
    errors.append(f"sdist: files that do not belong: {stray[:10]}")

for error in errors:
    print(f"  - {error}", file=sys.stderr)
if errors:
    sys.exit(1)
print(f"  version {version}; wheel: {len(names)} files; sdist: {len(members)} files")
EOF

# ----------------------------------------------------------------------------- core install
step "installing the wheel without extras into a fresh venv"
VENV="$WORK/venv"
"$PYTHON" -m venv "$VENV" || fail "python -m venv"
VPY="$VENV/bin/python"
"$VPY" -m pip install --quiet "$WHEEL" >"$WORK/install.log" 2>&1 \
    || { cat "$WORK/install.log" >&2; fail "pip install of the wheel without extras"; }

# Import it from outside the checkout, so that the installed copy is the one tested.
(cd "$WORK" && "$VPY" - "$CORE" <<'EOF') || fail "the core install (see above)"
import importlib.metadata as md, re, sys

import anyio
import throttle_trio as tt
from pip._vendor.packaging.requirements import Requirement

core = set(sys.argv[1].split())
errors = []
if "site-packages" not in tt.__file__:
    errors.append(f"imported {tt.__file__}, not the installed wheel")
if tt.__version__ != md.version("throttle_trio"):
    errors.append(f"__version__ {tt.__version__} != installed {md.version('throttle_trio')}")

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

def requires(name, extras=()):
    found = set()
    for text in md.requires(name) or ():
        req = Requirement(text)
        if any(req.marker is None or req.marker.evaluate({"extra": e}) for e in ("", *extras)):
            found.add(norm(req.name))
    return found

direct = requires("throttle_trio")
if direct != core:
    errors.append(f"throttle_trio requires {sorted(direct)}, expected {sorted(core)}")
closure, todo = set(), list(core)
while todo:
    name = todo.pop()
    if name not in closure:
        closure.add(name)
        try:
            todo.extend(requires(name))
        except md.PackageNotFoundError:
            errors.append(f"{name} is required but was not installed")
installed = {norm(d.metadata["Name"]) for d in md.distributions()} - {"pip", "setuptools"}
if installed != closure | {"throttle-trio"}:
    errors.append(
        f"installed {sorted(installed)}; expected throttle_trio, anyio and its dependencies "
        f"{sorted(closure)}: extra {sorted(installed - closure - {'throttle-trio'})}, "
        f"missing {sorted(closure - installed)}"
    )
optional = {"trio", "httpx", "httpx2", "httpcore", "coredis", "hypercorn"}
optional |= {"opentelemetry", "prometheus_client"}
if loaded := optional & {m.split(".")[0] for m in sys.modules}:
    errors.append(f"import throttle_trio loaded optional packages {sorted(loaded)}")

async def main():
    limiter = tt.RateLimiter(tt.TokenBucket(2))
    await limiter.acquire()
    async with tt.Throttle(requests=tt.GCRA(10), max_concurrent=1).reserve(requests=1):
        pass

anyio.run(main)
for error in errors:
    print(f"  - {error}", file=sys.stderr)
if errors:
    sys.exit(1)
print(f"  import throttle_trio {tt.__version__}: works with {', '.join(sorted(installed))}")
EOF

# ----------------------------------------------------------------------------- extras
step "resolving each extra against the wheel (pip install --dry-run --report)"
pids=()
for spec in "${EXTRAS[@]}"; do
    extra="${spec%%=*}"
    "$VPY" -m pip install --quiet --dry-run --ignore-installed \
        --report "$WORK/report-$extra.json" "throttle_trio[$extra] @ file://$WHEEL" \
        >"$WORK/resolve-$extra.log" 2>&1 &
    pids+=("$!:$extra")
done
for entry in "${pids[@]}"; do
    wait "${entry%%:*}" || { cat "$WORK/resolve-${entry#*:}.log" >&2; fail "resolving [${entry#*:}]"; }
done

"$PYTHON" - "$WORK" "$CORE" "${EXTRAS[@]}" <<'EOF' || fail "the extras (see above)"
import json, re, sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

work, core = Path(sys.argv[1]), set(sys.argv[2].split())
expected_by_extra = {
    extra: set(names.split()) for extra, _, names in (spec.partition("=") for spec in sys.argv[3:])
}

def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()

errors = []
for extra, wanted in sorted(expected_by_extra.items()):
    report = json.loads((work / f"report-{extra}.json").read_text())
    environment = {**default_environment(), **report.get("environment", {})}
    items = {norm(i["metadata"]["name"]): i["metadata"] for i in report["install"]}

    def requires(name, extras=()):
        found = set()
        for text in items[name].get("requires_dist") or ():
            req = Requirement(text)
            envs = [{**environment, "extra": e} for e in ("", *extras)]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                found.add((norm(req.name), tuple(sorted(req.extras))))
        return found

    direct = requires("throttle-trio", (extra,))
    # `all` names the project's own extras: follow them to the real requirements.
    while any(name == "throttle-trio" for name, _ in direct):
        own = {entry for entry in direct if entry[0] == "throttle-trio"}
        direct = (direct - own) | {r for _, ex in own for r in requires("throttle-trio", ex)}
    names = {name for name, _ in direct}
    if names != core | {norm(n) for n in wanted}:
        errors.append(
            f"[{extra}] requires {sorted(names)}, expected {sorted(core | set(wanted))}"
        )
    closure, todo = set(), list(direct)
    while todo:
        name, extras = todo.pop()
        if (name, extras) in closure:
            continue
        closure.add((name, extras))
        if name not in items:
            errors.append(f"[{extra}]: {name} is required but pip would not install it")
            continue
        todo.extend(requires(name, extras))
    resolved = set(items) - {"throttle-trio"}
    if stray := resolved - {name for name, _ in closure}:
        errors.append(f"[{extra}]: pip would install {sorted(stray)}, which nothing requires")
    print(f"  [{extra}] -> {', '.join(sorted(names))} ({len(resolved)} distributions)")
for error in errors:
    print(f"  - {error}", file=sys.stderr)
if errors:
    sys.exit(1)
EOF

# ----------------------------------------------------------------------------- the testing kit
step "installing the wheel with the testing extra into a fresh venv"
KIT="$WORK/venv-testing"
"$PYTHON" -m venv "$KIT" || fail "python -m venv"
KPY="$KIT/bin/python"
"$KPY" -m pip install --quiet "throttle_trio[testing] @ file://$WHEEL" >"$WORK/install-testing.log" 2>&1 \
    || { cat "$WORK/install-testing.log" >&2; fail "pip install of the wheel with [testing]"; }
(cd "$WORK" && "$KPY" - <<'EOF') || fail "the testing kit without the server extra (see above)"
import importlib.util, sys

import throttle_trio.testing as kit
import throttle_trio.testing._pytest_plugin
import throttle_trio.testing.oracle
import throttle_trio.testing.stateful
import throttle_trio.testing.strategies

errors = []
if "site-packages" not in kit.__file__:
    errors.append(f"imported {kit.__file__}, not the installed wheel")
if importlib.util.find_spec("hypercorn") is not None:
    errors.append("[testing] installed hypercorn (the server extra)")
if loaded := {"hypercorn", "coredis"} & {m.split(".")[0] for m in sys.modules}:
    errors.append(f"the kit loaded {sorted(loaded)}")
for error in errors:
    print(f"  - {error}", file=sys.stderr)
if errors:
    sys.exit(1)
EOF
# A user's first test file, in an empty directory: no conftest, no pytest configuration.
PROJECT="$WORK/user-project"
mkdir "$PROJECT"
cat >"$PROJECT/test_user.py" <<'EOF'
import anyio
import httpx
import pytest

import throttle_trio as tt
from throttle_trio.httpx import ThrottledTransport

pytestmark = pytest.mark.tt_virtual_clock


async def test_paced(tt_backend):
    limiter = tt.RateLimiter(tt.TokenBucket(rate=8, burst=2))
    for _ in range(4):
        await limiter.acquire()
    assert anyio.current_time() == 0.25


@pytest.mark.tt_fake_llm(rpm=60)
async def test_the_fake_provider(tt_fake_llm, tt_fake_llm_transport):
    throttle = tt.Throttle(requests=tt.TokenBucket(60, per=60, burst=1))
    transport = ThrottledTransport(tt_fake_llm_transport, throttle=throttle)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(transport=transport, base_url="http://fake/v1") as client:
        for _ in range(3):
            (await client.post("/chat/completions", json=body)).raise_for_status()
    assert (tt_fake_llm.stats.admitted, tt_fake_llm.stats.rate_limited) == (3, 0)
    assert anyio.current_time() == 2
EOF
(cd "$PROJECT" && "$KPY" -m pytest -q -p no:cacheprovider >"$WORK/user-pytest.log" 2>&1) \
    || { cat "$WORK/user-pytest.log" >&2; fail "a user's test file with the testing extra"; }
grep -q "4 passed" "$WORK/user-pytest.log" \
    || { cat "$WORK/user-pytest.log" >&2; fail "a user's test file: expected 4 passed"; }
step "[testing]: the kit imports without hypercorn; a user's test file: $(tail -n 1 "$WORK/user-pytest.log")"

step "all checks passed in $((SECONDS - START)) s"
