from __future__ import annotations

import pytest

from robot.config import CenterSettings
from robot.voice.languages import LANGUAGES, center_name_for, normalize_language, spec_for


@pytest.mark.parametrize(
    ("tag", "expected"),
    [
        ("zh", "zh-CN"),
        ("zh-CN", "zh-CN"),
        ("ZH-cn", "zh-CN"),
        ("zh_CN", "zh-CN"),
        ("zh-Hans", "zh-CN"),
        ("zh-Hans-CN", "zh-CN"),
        ("zh-TW", "zh-CN"),
        ("cmn", "zh-CN"),
        ("cmn-Hans-CN", "zh-CN"),
        ("en", "en-US"),
        ("en-US", "en-US"),
        ("en-GB", "en-US"),
        ("EN-gb", "en-US"),
        (" en ", "en-US"),
        ("yue", None),
        ("zh-yue", None),
        ("fr", None),
        ("fr-FR", None),
        ("", None),
        (None, None),
        ("-", None),
    ],
)
def test_it_normalizes_language_tags(tag: str | None, expected: str | None) -> None:
    assert normalize_language(tag) == expected


def test_it_supports_chinese_and_english() -> None:
    assert {"zh-CN", "en-US"} <= set(LANGUAGES)


def test_it_names_the_center_in_the_script_language() -> None:
    center = CenterSettings(name="Hangzhou Anti-Fraud Center", name_zh="杭州市反诈中心")
    assert center_name_for(center, "zh") == "杭州市反诈中心"
    assert center_name_for(center, "en-GB") == "Hangzhou Anti-Fraud Center"


def test_it_rejects_an_unsupported_language_for_a_spec() -> None:
    with pytest.raises(ValueError, match="unsupported"):
        spec_for("fr")
