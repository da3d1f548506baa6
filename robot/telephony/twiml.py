"""TwiML documents for the call flow, written with ElementTree (only the provider imports twilio)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from xml.etree import ElementTree as ET


@dataclass(frozen=True)
class Speech:
    """One thing to say: a <Say> with attributes, or a <Play> of an audio URL."""

    tag: str  # "Say" or "Play"
    content: str
    attrs: dict[str, str] = field(default_factory=dict)


class Document:
    def __init__(self) -> None:
        self.root = ET.Element("Response")

    def speak(self, parts: Sequence[Speech], parent: ET.Element | None = None) -> Document:
        for part in parts:
            element = ET.SubElement(self.root if parent is None else parent, part.tag, part.attrs)
            element.text = part.content
        return self

    def gather(self, action: str, parts: Sequence[Speech], *, timeout: int = 6) -> Document:
        gather = ET.SubElement(
            self.root,
            "Gather",
            {"action": action, "method": "POST", "numDigits": "1", "timeout": str(timeout)},
        )
        return self.speak(parts, gather)

    def redirect(self, url: str) -> Document:
        ET.SubElement(self.root, "Redirect", {"method": "POST"}).text = url
        return self

    def dial(
        self, number: str, action: str, caller_id: str | None = None, timeout: int = 30
    ) -> Document:
        attrs = {"action": action, "method": "POST", "timeout": str(timeout)}
        if caller_id:
            attrs["callerId"] = caller_id
        ET.SubElement(self.root, "Dial", attrs).text = number
        return self

    def pause(self, seconds: int) -> Document:
        ET.SubElement(self.root, "Pause", {"length": str(seconds)})
        return self

    def hangup(self) -> Document:
        ET.SubElement(self.root, "Hangup")
        return self

    def render(self) -> str:
        return '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(self.root, encoding="unicode")
