"""TwiML documents: parsing, URL resolution and how long the callee spends on each verb."""

from __future__ import annotations

import io
import wave
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

#: Emulated text-to-speech speed.
SAY_CHARS_PER_SECOND = 12.0
#: A <Play> whose audio cannot be measured lasts this long.
DEFAULT_PLAY_SECONDS = 3.0
#: ``loop="0"`` means "until hang-up"; the emulated callee listens this many times.
INFINITE_LOOP = 10


class TwimlError(ValueError):
    """The service answered something that is not a TwiML <Response>."""


@dataclass(frozen=True)
class Document:
    #: Where it came from; relative URLs in it resolve against this (None for inline TwiML).
    url: str | None
    root: ET.Element


def parse_document(text: str, url: str | None) -> Document:
    try:
        root = ET.fromstring(text.strip())
    except ET.ParseError as exc:
        raise TwimlError(f"not XML: {exc}") from None
    if tag(root) != "Response":
        raise TwimlError(f"root element is <{tag(root)}>, not <Response>")
    return Document(url, root)


def tag(element: ET.Element) -> str:
    name = element.tag
    return name.rsplit("}", 1)[-1] if isinstance(name, str) else ""


def resolve(doc_url: str | None, ref: str | None) -> str | None:
    """An absolute http(s) URL for ``ref`` (relative to the document), or None."""
    ref = (ref or "").strip()
    if not ref:
        return None
    if urlsplit(ref).scheme in ("http", "https"):
        return ref
    if doc_url:
        return urljoin(doc_url, ref)
    return None


def int_attr(element: ET.Element, name: str, default: int) -> int:
    try:
        return int(str(element.get(name, default)).strip())
    except ValueError:
        return default


def loops(element: ET.Element) -> int:
    count = int_attr(element, "loop", 1)
    return INFINITE_LOOP if count <= 0 else count


def say_seconds(element: ET.Element) -> float:
    text = "".join(element.itertext()).strip()
    return max(1.0, len(text) / SAY_CHARS_PER_SECOND) * loops(element)


def is_true(value: str | None) -> bool:
    return (value or "").strip().lower() == "true"


def wav_seconds(data: bytes) -> float | None:
    """Duration of a WAV file, None when it is not one."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            rate = wav.getframerate()
            return wav.getnframes() / rate if rate else None
    except (wave.Error, EOFError):
        return None
