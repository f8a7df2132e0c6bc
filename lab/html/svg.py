"""The few SVG and HTML pieces the report draws by hand: escaped text, elements, numbers kept short."""

from __future__ import annotations

from html import escape

__all__ = ["esc", "el", "num", "svg_doc"]


def esc(text: object) -> str:
    """Text for an HTML or SVG document: &, <, > and quotes escaped."""
    return escape(str(text), quote=True)


def num(x: float) -> str:
    """A coordinate with one decimal, no trailing zeros: small documents."""
    s = f"{x:.1f}"
    return s[:-2] if s.endswith(".0") else s


def el(tag: str, body: str = "", /, **attrs: object) -> str:
    """<tag attr="value" ...>body</tag>; an attribute whose value is None is left out, a trailing
    underscore is dropped (class_) and other underscores become hyphens (data_fate)."""
    parts = [tag]
    for key, value in attrs.items():
        if value is None:
            continue
        name = key.rstrip("_").replace("_", "-")
        parts.append(f'{name}="{esc(num(value) if isinstance(value, float) else value)}"')
    head = " ".join(parts)
    return f"<{head}>{body}</{tag}>" if body or tag not in ("line", "path", "rect", "circle", "polyline", "use") \
        else f"<{head}/>"


def svg_doc(width: float, height: float, title: str, desc: str, body: str, **attrs: object) -> str:
    """An inline SVG figure with its text alternative: role="img", a <title> (its name) and a
    <desc> (what it shows) that aria-labelledby points at."""
    ident = attrs.pop("id")
    return el("svg", el("title", esc(title), id=f"{ident}-title") + el("desc", esc(desc), id=f"{ident}-desc") + body,
              id=ident, role="img", viewBox=f"0 0 {num(width)} {num(height)}",
              width=num(width), height=num(height), aria_labelledby=f"{ident}-title {ident}-desc", **attrs)
