"""The lab sheets: what a student is handed for each scenario, in English and Chinese.

    scenarios/sheets/<name>.md          the sheet            scenarios/sheets/keys/<name>.md     its answers
    scenarios/sheets/zh/<name>.md       the same in Chinese  scenarios/sheets/zh/keys/<name>.md  ... in Chinese

A sheet is Markdown: a title (``# Lab sheet: <name> ...``), an introduction, then the sections of
SECTIONS in that order (objectives, time, prerequisites, what to run and look at, the deliverables,
the questions, the rules, the links). Its deliverables are fill-in tables whose blanks are named
cells, ``{{fin_count}}``: the student's copy (``invoke sheet NAME``) shows them empty, and the
instructor's key (``invoke sheet NAME --key DIR``, lab.sheetkey) fills each from a run with the
scenario's ``key`` (lab.scenario.Scenario.key). Questions are the numbered items of the Questions
section; the answers file holds one ``## N`` section per question, which may name cells too.
The two languages are kept in step by tests/unit/test_sheets.py (same sections, questions,
tables, cells and links).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import UsageError

__all__ = ["Sheet", "LANGS", "SECTIONS", "CELL", "sheet_path", "key_path", "answers", "student_text",
           "tables_in", "check_lang"]

ROOT = Path(__file__).resolve().parent.parent
SHEETS = ROOT / "scenarios" / "sheets"
LANGS = ("en", "zh")
SECTIONS = {
    "en": ("Objectives", "Time needed", "Prerequisites", "Run it", "What to look for", "Deliverables",
           "Questions", "What the RFCs and Linux say", "Links"),
    "zh": ("学习目标", "所需时间", "预备知识", "运行", "观察要点", "提交内容", "问题", "RFC 与 Linux 的规定", "链接"),
}
DELIVERABLES, QUESTIONS, LINKS = 5, 6, 8          # their places in SECTIONS
CELL = re.compile(r"\{\{([a-z][a-z0-9_]*)\}\}")
_ITEM = re.compile(r"^(\d+)\. ", re.M)
_REPO_LINK = re.compile(r"\]\((?:\.\./)+(docs/[^)]+)\)")


def check_lang(lang: str) -> str:
    if lang not in LANGS:
        raise UsageError(f"no lab sheets in {lang!r}: --lang takes {' or '.join(LANGS)}")
    return lang


def sheet_path(name: str, lang: str = "en") -> Path:
    return (SHEETS if lang == "en" else SHEETS / lang) / f"{name}.md"


def key_path(name: str, lang: str = "en") -> Path:
    return (SHEETS if lang == "en" else SHEETS / lang) / "keys" / f"{name}.md"


@dataclass(frozen=True)
class Sheet:
    name: str
    lang: str
    title: str                                  # the first line, without "# "
    intro: str                                  # what comes before the first section
    sections: tuple[tuple[str, str], ...]       # (heading, body), in order

    @classmethod
    def load(cls, name: str, lang: str = "en") -> Sheet:
        return cls.parse(sheet_path(name, lang).read_text(encoding="utf-8"), name, lang)

    @classmethod
    def parse(cls, text: str, name: str, lang: str = "en") -> Sheet:
        title, intro, sections = split_sections(text)
        return cls(name, lang, title, intro, tuple(sections))

    def body(self, index: int) -> str:
        """The body of the section at *index* of SECTIONS."""
        return self.sections[index][1]

    def headings(self) -> list[str]:
        return [h for h, _ in self.sections]

    def questions(self) -> list[str]:
        """The numbered questions, each with its text (continuation lines included)."""
        return items(self.body(QUESTIONS))

    def tables(self) -> list[list[list[str]]]:
        """The fill-in tables of the deliverables: each a list of rows, each a list of cell texts
        (the header row first; the ``|---|`` line left out)."""
        return [t for t in tables_in(self.body(DELIVERABLES)) if any(CELL.search(c) for r in t for c in r)]

    def cells(self) -> list[str]:
        """Every named cell of the sheet, in order of appearance."""
        return CELL.findall(self.text())

    def text(self) -> str:
        parts = [f"# {self.title}\n", self.intro]
        parts += [f"## {h}\n{b}" for h, b in self.sections]
        return "".join(parts)


def split_sections(text: str) -> tuple[str, str, list[tuple[str, str]]]:
    """(title, intro, [(heading, body)]) of a Markdown text: ``## `` lines outside code fences
    start a section; the body keeps its newlines."""
    lines = text.splitlines(keepends=True)
    title = lines[0][2:].strip() if lines and lines[0].startswith("# ") else ""
    intro: list[str] = []
    sections: list[tuple[str, list[str]]] = []
    fenced = False
    for line in lines[1 if title else 0:]:
        if line.startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("## "):
            sections.append((line[3:].strip(), []))
        else:
            (sections[-1][1] if sections else intro).append(line)
    return title, "".join(intro), [(h, "".join(b)) for h, b in sections]


def items(body: str) -> list[str]:
    """The top-level numbered items of a Markdown body, each with its continuation lines."""
    starts = [m.start() for m in _ITEM.finditer(body)]
    return [body[a:b].strip() for a, b in zip(starts, starts[1:] + [len(body)])]


def tables_in(text: str) -> list[list[list[str]]]:
    """Every pipe table in *text*: rows of stripped cell texts, the separator line left out."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] | None = None
    for line in text.splitlines():
        if line.startswith("|"):
            if re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line.strip()):
                continue
            if current is None:
                current = []
                tables.append(current)
            current.append([c.strip() for c in line.strip().strip("|").split("|")])
        else:
            current = None
    return tables


def answers(name: str, lang: str = "en") -> tuple[str, dict[int, str]]:
    """The answers file: its notes for the instructor (before the first ``## N``), and each
    question's answer by number."""
    _, notes, sections = split_sections(key_path(name, lang).read_text(encoding="utf-8"))
    out = {}
    for heading, body in sections:
        if not heading.isdigit():
            raise ValueError(f"{key_path(name, lang)}: a section heading must be a question's number, not {heading!r}")
        out[int(heading)] = body.strip()
    return notes.strip(), out


def repo_links(text: str) -> str:
    """Links into the repository (``../../docs/reference.md#...``) made relative to its root, as
    a copy printed by `invoke sheet` is read from there (or names the file to open)."""
    return _REPO_LINK.sub(r"](\1)", text)


def student_text(name: str, lang: str = "en") -> str:
    """The sheet to hand out: every named cell left blank for the student to fill."""
    return repo_links(CELL.sub("", Sheet.load(name, lang).text()))
