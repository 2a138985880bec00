"""docs/equations.md cannot drift from the code: every `dmospeech.x.y:name` it cites exists, and every
equation of the paper (eqs. 1-31), algorithm 1, each part of appendix C and every convention C1-C8
has an entry."""
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "equations.md"
REFERENCE = re.compile(r"\b(dmospeech(?:\.[A-Za-z_]\w*)+):([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)")
EQUATIONS = range(1, 32)
CONVENTIONS = range(1, 9)


def doc_text() -> str:
    return DOC.read_text(encoding="utf-8")


def references() -> list[tuple[str, str]]:
    return sorted(set(REFERENCE.findall(doc_text())))


def test_the_doc_cites_code():
    assert len(references()) >= 40


@pytest.mark.parametrize("module, name", references(), ids=lambda x: x)
def test_every_cited_name_exists(module, name):
    obj = importlib.import_module(module)
    for part in name.split("."):
        assert hasattr(obj, part), f"docs/equations.md cites {module}:{name}, but {part!r} is not defined there"
        obj = getattr(obj, part)


@pytest.mark.parametrize("number", EQUATIONS)
def test_every_equation_has_an_entry(number):
    assert re.search(rf"\beq\. {number}\b", doc_text()), f"docs/equations.md says nothing about eq. {number}"


def test_algorithm_1_and_appendix_c_have_entries():
    text = doc_text()
    for heading in ("algorithm 1", "Appendix C.1", "Appendix C.2.1", "Appendix C.2.2", "Appendix C.2.3",
                    "Appendix C.2.4", "Appendix C.3", "Appendix C.4"):
        assert heading in text, f"docs/equations.md has no entry for {heading}"


@pytest.mark.parametrize("number", CONVENTIONS)
def test_every_convention_has_a_stable_heading(number):
    assert re.search(rf"^### C{number} \S", doc_text(), flags=re.MULTILINE), f"no '### C{number} ...' heading"
