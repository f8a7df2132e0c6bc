"""Citations as links: RFC sections to the RFC Editor's pages, kernel paths and functions to the
source at the version docs/reference.md was read at, reference IDs to their sections, which the
page carries (lab.html.page: a report handed out without the repository still holds its rules).

    linked("RFC 9293 §3.10.7.4 (RFC 793 p.73); Linux tcp_timewait_state_process() (reference R-TW-FIN)")
"""

from __future__ import annotations

import re
from functools import lru_cache
from html import escape

from ..paths import data_file

__all__ = ["linked", "reference_ids", "reference_section", "KERNEL_VERSION", "markdown"]

KERNEL_VERSION = "v6.18"          # the kernel tree docs/reference.md cites ("Linux v6.18")
RFC_URL = "https://www.rfc-editor.org/rfc/rfc{n}"
KERNEL_URL = f"https://elixir.bootlin.com/linux/{KERNEL_VERSION}"
REFERENCE = data_file("reference.md")      # docs/reference.md, carried as package data

# system calls and library names a citation may mention: not kernel identifiers to look up
_NOT_KERNEL = {"close", "connect", "bind", "accept", "listen", "shutdown", "recv", "send", "read", "write",
               "setsockopt", "getsockopt", "socket", "select", "poll", "exit", "sleep", "time"}

_PATTERN = re.compile(
    r"(?P<rfc>RFC (?P<num>\d{3,4})(?: (?:§|section )(?P<sec>\d+(?:\.\d+)*)| p\.\s?(?P<page>\d+))?)"
    r"|(?P<bare>§(?P<bsec>\d+(?:\.\d+)*))"
    r"|(?P<ref>\bR-[A-Z0-9]+(?:-[A-Z0-9]+)*\b)"
    r"|(?P<path>\b(?:net|include|kernel|lib|mm|fs|Documentation)/[\w/.-]+\.(?:c|h|rst|txt)\b)"
    r"|(?P<func>\b[a-z_][a-z0-9_]*\(\))")


def linked(text: str) -> str:
    """*text*, escaped for HTML, its citations made links."""
    out, last, rfc = [], 0, None
    for m in _PATTERN.finditer(text):
        url = None
        if m.group("rfc"):
            rfc = m.group("num")
            url = RFC_URL.format(n=rfc) + (f"#section-{m.group('sec')}" if m.group("sec") else
                                           f"#page-{m.group('page')}" if m.group("page") else "")
        elif m.group("bare") and rfc:
            url = RFC_URL.format(n=rfc) + f"#section-{m.group('bsec')}"
        elif m.group("ref") and m.group("ref") in reference_ids():
            url = f"#{m.group('ref')}"
        elif m.group("path"):
            url = f"{KERNEL_URL}/source/{m.group('path')}"
        elif m.group("func") and m.group("func")[:-2] not in _NOT_KERNEL:
            url = f"{KERNEL_URL}/A/ident/{m.group('func')[:-2]}"
        out.append(escape(text[last:m.start()]))
        piece = escape(m.group(0))
        out.append(f'<a href="{escape(url)}">{piece}</a>' if url else piece)
        last = m.end()
    out.append(escape(text[last:]))
    return "".join(out)


@lru_cache(maxsize=1)
def _sections() -> dict[str, tuple[str, str]]:
    """docs/reference.md's sections: ID -> (its heading's statement, its body in Markdown)."""
    try:
        text = REFERENCE.read_text()
    except OSError:
        return {}
    out = {}
    for m in re.finditer(r"^### (R-[A-Z0-9-]+): (.*?)\n(.*?)(?=^##)", text + "\n## ", re.M | re.S):
        out[m.group(1)] = (m.group(2).strip(), m.group(3).strip())
    return out


def reference_ids() -> set[str]:
    return set(_sections())


def reference_section(ident: str) -> tuple[str, str] | None:
    """(statement, body) of docs/reference.md's section *ident*, or None."""
    return _sections().get(ident)


def markdown(text: str) -> str:
    """The little Markdown the reference uses, as HTML: paragraphs, "- " lists, `code`, **bold**,
    block quotes; citations linked."""
    blocks = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        if all(ln.startswith(("- ", "  ")) for ln in lines) and lines[0].startswith("- "):
            items = re.split(r"\n- ", "\n" + block)[1:]
            blocks.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
        elif all(ln.startswith(">") for ln in lines):
            blocks.append(f"<blockquote>{_inline(' '.join(ln.lstrip('> ') for ln in lines))}</blockquote>")
        else:
            blocks.append(f"<p>{_inline(block)}</p>")
    return "\n".join(blocks)


def _inline(text: str) -> str:
    parts = re.split(r"(`[^`]*`)", text)
    out = []
    for p in parts:
        if p.startswith("`") and p.endswith("`") and len(p) > 1:
            out.append(f"<code>{escape(p[1:-1])}</code>")
        else:
            out.append(re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", linked(p)))
    return "".join(out)
