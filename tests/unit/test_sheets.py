"""The lab sheets are ready to hand out: every scenario has one in English and in Chinese, in the
same sections, with the same questions, fill-in tables, cells and links; every cell has a key
that a real run fills; the student's copy has no answers in it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from lab.sheets import CELL, LANGS, LINKS, SECTIONS, Sheet, answers, key_path, student_text
from lab.stacks_sheet import SHEET as STACKS_SHEET
from lab.stacks_sheet import stacks_cells
from scenarios import catalog

ROOT = Path(__file__).resolve().parents[2]
NAMES = sorted(catalog()) + [STACKS_SHEET]      # every scenario's, and the two implementations' one
RFC_SECTION = re.compile(r"RFC (\d+) §([\d.]+\d)")
R_ID = re.compile(r"(?<![A-Za-z0-9_-])(R-[A-Z0-9]+(?:-[A-Z0-9]+)*)")
LINK = re.compile(r"\[([^\]]+)\]\(([^)]+)\)")
CODE = re.compile(r"`([^`]+)`")


def slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def reference_anchors() -> dict[str, str]:
    """The anchor of each docs/reference.md section, and the R- ID it holds."""
    text = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    return {slug(h): h.split(":")[0] for h in re.findall(r"^### (R-.*)$", text, re.M)}


def links(sheet: Sheet) -> list[tuple[str, str]]:
    return LINK.findall(sheet.body(LINKS))


def essentials(text: str) -> tuple[set, set, set]:
    """What a translation must keep: the reference IDs, the RFC numbers and the code spans."""
    return set(R_ID.findall(text)), set(re.findall(r"RFC \d+", text)), set(CODE.findall(text))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("lang", LANGS)
def test_every_sheet_has_the_sections_in_order(name, lang):
    sheet = Sheet.load(name, lang)
    assert sheet.headings() == list(SECTIONS[lang])
    assert sheet.title.startswith("Lab sheet: " if lang == "en" else "实验单："), sheet.title
    assert name in sheet.title
    assert len(sheet.questions()) >= 3
    assert sheet.tables(), "no fill-in table in the deliverables"


@pytest.mark.parametrize("name", NAMES)
def test_cells_are_unique_and_only_in_the_deliverables_tables(name):
    sheet = Sheet.load(name)
    in_tables = [c for t in sheet.tables() for row in t for cell in row for c in CELL.findall(cell)]
    assert sheet.cells() == in_tables
    assert len(set(in_tables)) == len(in_tables)


@pytest.mark.parametrize("name", NAMES)
def test_the_chinese_sheet_is_in_step_with_the_english_one(name):
    en, zh = Sheet.load(name, "en"), Sheet.load(name, "zh")
    assert len(zh.questions()) == len(en.questions())
    for i, (q_en, q_zh) in enumerate(zip(en.questions(), zh.questions()), start=1):
        assert essentials(q_zh) == essentials(q_en), f"question {i}"
    assert [[[CELL.findall(c) for c in row] for row in t] for t in zh.tables()] == \
        [[[CELL.findall(c) for c in row] for row in t] for t in en.tables()]
    assert [len(row) for t in zh.tables() for row in t] == [len(row) for t in en.tables() for row in t]
    assert [url for _, url in links(zh)] == [url.replace("../../", "../../../") for _, url in links(en)]
    assert commands(zh.body(3)) == commands(en.body(3)), "the commands to run differ"


def commands(body: str) -> list[str]:
    """The shell commands of a body's ```sh blocks, their comments left out."""
    out, fence = [], None
    for line in body.splitlines():
        if line.startswith("```"):
            fence = line[3:].strip() if fence is None else None
        elif fence == "sh" and line.split("#")[0].strip():
            out.append(" ".join(line.split("  #")[0].split()))
    return out


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("lang", LANGS)
def test_every_question_has_an_answer_naming_only_cells_of_the_sheet(name, lang):
    sheet = Sheet.load(name, lang)
    notes, answered = answers(name, lang)
    assert notes, f"{key_path(name, lang)} has no notes for the instructor"
    assert sorted(answered) == list(range(1, len(sheet.questions()) + 1))
    assert all(answered.values())
    named = {c for text in answered.values() for c in CELL.findall(text)}
    assert named <= set(sheet.cells())


@pytest.mark.parametrize("name", NAMES)
def test_the_chinese_answers_name_the_same_cells_and_rules(name):
    _, en = answers(name, "en")
    _, zh = answers(name, "zh")
    for n in en:
        assert sorted(CELL.findall(zh[n])) == sorted(CELL.findall(en[n])), f"answer {n}"   # word order differs
        assert set(R_ID.findall(zh[n])) == set(R_ID.findall(en[n])), f"answer {n}"


@pytest.mark.parametrize("name", NAMES)
def test_every_cell_has_a_key(name):
    if name == STACKS_SHEET:
        recorded = json.loads((ROOT / "tests" / "data" / "runs" / name / "matrix.json").read_text())
        assert sorted(stacks_cells(recorded)[0]) == sorted(Sheet.load(name).cells())
        return
    sc = catalog()[name]
    assert sc.key is not None
    assert sorted(sc.key.names) == sorted(Sheet.load(name).cells())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("lang", LANGS)
def test_links_go_to_the_rfc_sections_and_reference_sections_the_sheet_relies_on(name, lang):
    sheet = Sheet.load(name, lang)
    urls = [url for _, url in links(sheet)]
    anchors = reference_anchors()
    up = "../../" if lang == "en" else "../../../"
    for url in urls:
        if url.startswith(up + "docs/reference.md#"):
            assert url.split("#", 1)[1] in anchors, url
        else:
            assert url.startswith(("https://www.rfc-editor.org/rfc/", "https://git.kernel.org/",
                                   "https://man7.org/")), url
    text = sheet.text()
    for rfc, section in set(RFC_SECTION.findall(text)):
        assert f"https://www.rfc-editor.org/rfc/rfc{rfc}#section-{section}" in urls, f"RFC {rfc} §{section}"
    linked = {anchors.get(u.split("#", 1)[1]) for u in urls if "reference.md#" in u}
    assert set(R_ID.findall(text)) <= linked


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("lang", LANGS)
def test_the_students_copy_has_blank_cells_and_no_answers(name, lang):
    text = student_text(name, lang)
    assert "{{" not in text
    assert "](../" not in text, "links into the repository are made relative to its root"
    flat = " ".join(text.split())
    _, answered = answers(name, lang)
    for n, answer in answered.items():          # no sentence of an answer (quotations aside)
        for sentence in re.split(r"(?<=[.。])\s+", " ".join(CELL.sub("", answer).split())):
            if len(sentence) >= 40 and '"' not in sentence and "“" not in sentence:
                assert sentence[:60] not in flat, f"answer {n} is in the student's copy: {sentence}"
