from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from robot.config import CenterSettings, Settings, VoiceSettings
from robot.voice.checks import estimate_seconds, find_links, find_phone_numbers
from robot.voice.lint import ERROR, WARNING, Problem, has_errors, lint
from robot.voice.sms import sms_size


def _settings(templates: Path, **changes: object) -> VoiceSettings:
    return replace(VoiceSettings(), templates_dir=str(templates), **changes)


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def _errors(problems: list[Problem], template: str) -> list[Problem]:
    return [p for p in problems if p.severity == ERROR and p.template == template]


def test_the_shipped_templates_pass_strict_lint(center: CenterSettings) -> None:
    assert lint(VoiceSettings(), center, strict=True) == []


def test_it_lints_whole_settings_too() -> None:
    assert lint(Settings()) == []


def test_it_reports_an_undefined_variable(templates_copy: Path, center: CenterSettings) -> None:
    _edit(templates_copy / "zh-CN" / "warning_call.j2", "{{ center_name }}", "{{ centre_name }}")
    [problem] = _errors(lint(_settings(templates_copy), center), "zh-CN/warning_call.j2")
    assert problem.fraud_type is None  # fails for every fraud type alike
    assert "centre_name" in problem.message and "undefined" in problem.message


def test_it_reports_a_link_in_an_sms(templates_copy: Path, center: CenterSettings) -> None:
    _edit(templates_copy / "en-US" / "warning_sms.j2", "No reply needed.", "See safe-bank.com")
    problems = _errors(lint(_settings(templates_copy), center), "en-US/warning_sms.j2")
    assert any("link" in p.message and "safe-bank.com" in p.message for p in problems)


def test_it_reports_a_link_in_one_fraud_snippet(
    templates_copy: Path, center: CenterSettings
) -> None:
    _edit(
        templates_copy / "zh-CN" / "fraud" / "fake_loan.j2",
        "{% set sms = rule %}",
        '{% set sms = "详情见 www.example.cn" %}',
    )
    problems = _errors(lint(_settings(templates_copy), center), "zh-CN/warning_sms.j2")
    assert [p.fraud_type for p in problems] == ["fake_loan"]


def test_it_reports_an_sms_over_budget(templates_copy: Path, center: CenterSettings) -> None:
    _edit(templates_copy / "zh-CN" / "warning_sms.j2", "本短信无需回复。", "本短信无需回复。" * 6)
    problems = _errors(lint(_settings(templates_copy), center), "zh-CN/warning_sms.j2")
    assert problems and all("UCS-2 segments" in p.message for p in problems)
    assert "the budget is 2 (134 units)" in problems[0].message


def test_the_sms_budget_is_a_setting(center: CenterSettings) -> None:
    problems = lint(replace(VoiceSettings(), sms_max_segments=1), center)
    assert _errors(problems, "zh-CN/warning_sms.j2")
    assert _errors(problems, "en-US/warning_sms.j2")


def test_it_reports_a_number_that_is_not_the_official_one(
    templates_copy: Path, center: CenterSettings
) -> None:
    _edit(templates_copy / "zh-CN" / "warning_sms.j2", "本短信无需回复。", "或拨138-0013-8000。")
    _edit(templates_copy / "zh-CN" / "relatives_notice.j2", "核实请拨", "如已被骗请拨110，核实请拨")
    problems = lint(_settings(templates_copy), center)
    [sms] = _errors(problems, "zh-CN/warning_sms.j2")
    assert "138-0013-8000" in sms.message
    # The emergency number is fine in a call but not in a text message.
    [notice] = _errors(problems, "zh-CN/relatives_notice.j2")
    assert "'110'" in notice.message
    assert not _errors(problems, "zh-CN/already_paid.j2")


def test_it_reports_fraud_details_in_a_relatives_notice(
    templates_copy: Path, center: CenterSettings
) -> None:
    _edit(templates_copy / "en-US" / "relatives_notice.j2", "a scam", "{{ danger.label }}")
    problems = _errors(lint(_settings(templates_copy), center), "en-US/relatives_notice.j2")
    assert any("fraud details" in p.message for p in problems)


def test_it_reports_a_syntax_error_with_its_line(
    templates_copy: Path, center: CenterSettings
) -> None:
    (templates_copy / "en-US" / "goodbye.j2").write_text("Bye.\n{% if %}\n", encoding="utf-8")
    problems = _errors(lint(_settings(templates_copy), center), "en-US/goodbye.j2")
    assert any("syntax error on line 2" in p.message for p in problems)


def test_it_reports_a_script_too_long_to_say(center: CenterSettings) -> None:
    problems = lint(replace(VoiceSettings(), max_call_seconds=20.0), center)
    templates = {p.template for p in problems if "to say; the limit is 20 s" in p.message}
    assert {"zh-CN/warning_call.j2", "en-US/warning_call.j2"} <= templates


def test_it_reports_a_call_without_the_assurances(
    templates_copy: Path, center: CenterSettings
) -> None:
    (templates_copy / "zh-CN" / "_assurances.j2").write_text("请注意安全。", encoding="utf-8")
    problems = _errors(lint(_settings(templates_copy), center), "zh-CN/voicemail.j2")
    assert any("negative assurances" in p.message and "验证码" in p.message for p in problems)


def test_it_reports_a_call_that_hides_who_is_calling(
    templates_copy: Path, center: CenterSettings
) -> None:
    _edit(
        templates_copy / "en-US" / "warning_call.j2",
        "This is an automated call from the {{ center_name }}.",
        "Hello. Hello. This is an automated call from the {{ center_name }}.",
    )
    problems = _errors(lint(_settings(templates_copy), center), "en-US/warning_call.j2")
    assert any("first two sentences" in p.message for p in problems)


def test_a_missing_translation_is_a_warning_unless_strict(
    templates_copy: Path, center: CenterSettings
) -> None:
    (templates_copy / "en-US" / "connecting.j2").unlink()
    (templates_copy / "en-US" / "fraud" / "romance.j2").unlink()
    problems = lint(_settings(templates_copy), center)
    assert not has_errors(problems)
    assert {(p.template, p.severity) for p in problems} == {
        ("en-US/connecting.j2", WARNING),
        ("en-US/fraud/romance.j2", WARNING),
    }
    assert has_errors(lint(_settings(templates_copy), center, strict=True))


def test_a_missing_default_template_is_an_error(
    templates_copy: Path, center: CenterSettings
) -> None:
    (templates_copy / "zh-CN" / "connecting.j2").unlink()
    assert _errors(lint(_settings(templates_copy), center), "zh-CN/connecting.j2")


def test_a_spoken_text_with_the_persons_name_is_a_warning(
    templates_copy: Path, center: CenterSettings
) -> None:
    _edit(templates_copy / "en-US" / "goodbye.j2", "Goodbye.", "Goodbye {{ name }}.")
    problems = [p for p in lint(_settings(templates_copy), center) if p.severity == WARNING]
    assert any(p.template == "en-US/goodbye.j2" and "pre-rendered" in p.message for p in problems)


def test_it_reports_bad_settings(center: CenterSettings) -> None:
    settings = replace(VoiceSettings(), mode="loud", say_voices={"xx": "Polly.Nobody"})
    messages = [p.message for p in lint(settings, center) if p.template == "(settings)"]
    assert any("voice.mode" in m for m in messages)
    assert any("unsupported language 'xx'" in m for m in messages)


@pytest.mark.parametrize(
    "text",
    [
        "visit http://a.b",
        "https://x.cn/y",
        "www.example.com",
        "go to bank-safe.com now",
        "见abc。com",
        "见 abc．cn",
        "mail me@example.org",
        "WWW.SAFE.CN",
    ],
)
def test_it_finds_links(text: str) -> None:
    assert find_links(text)


@pytest.mark.parametrize(
    "text",
    ["核实请拨96110。本短信无需回复。", "e.g. this", "Call 110. Then your bank.", "Mr. Li", "U.S."],
)
def test_it_does_not_mistake_text_for_links(text: str) -> None:
    assert find_links(text) == []


def test_it_finds_phone_numbers_except_allowed_ones() -> None:
    text = "请按1，或拨96110，急事拨110，不要拨 +86 138-0013-8000 或 (0571) 8888 8888。"
    assert find_phone_numbers(text, allowed={"96110", "110"}) == [
        "+86 138-0013-8000",
        "(0571) 8888 8888",
    ]
    assert find_phone_numbers("press 1. press 2, press 9") == []


def test_it_counts_sms_segments() -> None:
    assert (sms_size("a" * 160).segments, sms_size("a" * 161).segments) == (1, 2)
    assert sms_size("a" * 306).segments == 2 and sms_size("a" * 307).segments == 3
    assert sms_size("{" * 80).units == 160  # extension characters take two septets
    assert (sms_size("中" * 70).segments, sms_size("中" * 71).segments) == (1, 2)
    assert sms_size("中" * 134).segments == 2 and sms_size("中" * 135).segments == 3
    assert sms_size("a" * 69 + "’").encoding == "UCS-2"  # one curly quote forces UCS-2
    assert sms_size("😀").units == 2
    assert sms_size("").segments == 0


def test_it_estimates_speaking_time() -> None:
    settings = VoiceSettings()
    assert estimate_seconds("中" * 180, cjk=True, settings=settings) == pytest.approx(40.0)
    assert estimate_seconds("word " * 100, cjk=False, settings=settings) == pytest.approx(40.0)
    assert estimate_seconds("拨打96110", cjk=True, settings=settings) == pytest.approx(7 / 4.5)
