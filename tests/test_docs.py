"""The docs name only what exists: every repository path in backticks, every relative link and every
`make` target in README.md and docs/*.md."""
import re

import pytest
from conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP = "training|hw_build|sim|driver|sweep|common|tools|configs|pretrained|tests|docs|scripts|requirements|\\.ci"
PATH = re.compile(rf"`((?:{TOP})/[\w./-]*)`")
LINK = re.compile(r"\]\(([^)#:]+)(?:#[^)]*)?\)")
MAKE = re.compile(r"(?:^|`)make ([a-z][\w-]*)", re.M)


def _targets() -> set:
    text = (ROOT / "Makefile").read_text()
    return {t for line in re.findall(r"^([a-z][\w-]*(?: [a-z][\w-]*)*):(?!=)", text, re.M) for t in line.split()}


@pytest.mark.parametrize("doc", DOCS, ids=[d.name for d in DOCS])
def test_docs_name_existing_paths_links_and_make_targets(doc):
    text = doc.read_text()
    paths = [p for p in PATH.findall(text) if not re.search(r"[<>*{}]", p)]
    missing = [p for p in paths if not (ROOT / p.split("::")[0]).exists()]
    links = [l for l in LINK.findall(text) if not l.startswith("http")]
    broken = [l for l in links if not (doc.parent / l).exists()]
    unknown = sorted(set(MAKE.findall(text)) - _targets())
    assert not missing and not broken and not unknown, (missing, broken, unknown)
    assert paths or links or doc.name != "README.md"  # the check reads something


def test_the_check_fails_on_a_wrong_name(tmp_path):
    """The same patterns find a path, a link and a target that do not exist."""
    text = "see `hw_build/nothing.py`, [x](docs/none.md) and `make nonsense`"
    assert PATH.findall(text) == ["hw_build/nothing.py"] and LINK.findall(text) == ["docs/none.md"]
    assert MAKE.findall(text) == ["nonsense"] and "nonsense" not in _targets()
