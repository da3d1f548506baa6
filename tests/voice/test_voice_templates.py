from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from jinja2 import UndefinedError

from robot.config import CenterSettings, VoiceSettings
from robot.voice.checks import find_links, find_phone_numbers
from robot.voice.languages import LANGUAGES
from robot.voice.sms import sms_segments
from robot.voice.templates import (
    FRAUD_TYPES,
    SCRIPT_KINDS,
    SMS_KINDS,
    TEMPLATE_KINDS,
    TemplateSet,
    render,
    tidy,
)


def test_it_renders_every_kind_for_every_fraud_type_and_language(
    center: CenterSettings,
) -> None:
    for language in LANGUAGES:
        for kind in TEMPLATE_KINDS:
            for fraud_type in FRAUD_TYPES:
                for has_case in (False, True):
                    rendered = render(
                        kind,
                        fraud_type=fraud_type,
                        language=language,
                        context={"has_case": has_case},
                        center=center,
                    )
                    assert rendered.text.strip(), (language, kind, fraud_type)
                    assert rendered.language == language
                    assert not rendered.fell_back
                    assert rendered.template == f"{language}/{kind}.j2"


@pytest.mark.parametrize("language", LANGUAGES)
def test_it_names_a_different_danger_for_each_fraud_type(
    language: str, center: CenterSettings
) -> None:
    texts = {
        fraud_type: render(
            "warning_call", fraud_type=fraud_type, language=language, context={}, center=center
        ).text
        for fraud_type in FRAUD_TYPES
    }
    assert len(set(texts.values())) == len(FRAUD_TYPES)


def test_it_says_the_official_fraud_rule_in_chinese(center: CenterSettings) -> None:
    text = render(
        "warning_call", fraud_type="task_rebate", language="zh", context={}, center=center
    ).text
    assert "凡是刷单，都是诈骗" in text
    assert text.startswith("您好，这是市反诈中心的自动语音来电")
    for never in ("安全账户", "验证码", "屏幕共享", "下载", "放款前"):
        assert never in text


def test_it_uses_the_generic_script_for_other_and_unknown_types(center: CenterSettings) -> None:
    def text(fraud_type: str | None) -> str:
        return render(
            "warning_call", fraud_type=fraud_type, language="en", context={}, center=center
        ).text

    assert text("made_up_type") == text("other") == text(None) == text(" OTHER ")
    assert "a phone or online scam" in text("other")


def test_it_never_tells_a_relative_the_fraud_details(center: CenterSettings) -> None:
    templates = TemplateSet()
    for language in LANGUAGES:
        env = templates.environment(language)
        texts = set()
        for fraud_type in FRAUD_TYPES:
            text = render(
                "relatives_notice",
                fraud_type=fraud_type,
                language=language,
                context={"relation": "", "name": ""},
                center=center,
            ).text
            texts.add(text)
            snippet = templates.snippet_name(language, fraud_type)
            assert snippet is not None
            if fraud_type != "other":  # the generic label is just "fraud"
                module = env.get_template(snippet).make_module({})
                assert module.label not in text
        assert len(texts) == 1


def test_it_addresses_the_relative_by_relation(center: CenterSettings) -> None:
    def text(language: str, **context: object) -> str:
        return render(
            "relatives_notice",
            fraud_type="other",
            language=language,
            context=context,
            center=center,
        ).text

    # The intake's relation codes say who the reader is to the person at risk.
    assert "】您的孩子可能正在遭遇" in text("zh", relation="parent")
    assert "】您的父母可能正在遭遇" in text("zh", relation="child")
    assert "】您的一位亲友可能正在遭遇" in text("zh")
    assert "】您的一位亲友可能正在遭遇" in text("zh", relation="母亲")  # never echoed raw
    assert "】您的朋友（张三）可能" in text("zh", relation="friend", name="张三")
    assert ": your child may be the target" in text("en", relation="PARENT")
    assert ": someone close to you may be the target" in text("en", relation="other")
    assert ": your friend (Li Lei) may be" in text("en", relation="friend", name="Li Lei")


def test_its_texts_pass_the_sms_rules(center: CenterSettings) -> None:
    for language in LANGUAGES:
        for kind in SMS_KINDS:
            for fraud_type in FRAUD_TYPES:
                text = render(
                    kind, fraud_type=fraud_type, language=language, context={}, center=center
                ).text
                assert find_links(text) == []
                assert find_phone_numbers(text, allowed={center.official_number}) == []
                assert sms_segments(text) <= VoiceSettings().sms_max_segments


def test_its_call_scripts_name_the_center_and_number_up_front(center: CenterSettings) -> None:
    for kind in SCRIPT_KINDS:
        zh = render(kind, fraud_type="romance", language="zh", context={}, center=center).text
        en = render(kind, fraud_type="romance", language="en", context={}, center=center).text
        assert center.name_zh in zh[:30] and center.official_number in zh[:50]
        assert center.name in en[:80] and center.official_number in en[:130]


def test_its_short_lines_carry_the_keys_and_the_emergency_number(center: CenterSettings) -> None:
    for language in LANGUAGES:
        menu = render("key_menu", fraud_type="other", language=language, context={}).text
        assert all(key in menu for key in "1239")
        assert center.emergency_number not in menu
        paid = render(
            "already_paid", fraud_type="other", language=language, context={}, center=center
        ).text
        assert center.emergency_number in paid


def test_it_falls_back_to_the_default_language(templates_copy: Path) -> None:
    (templates_copy / "en-US" / "goodbye.j2").unlink()
    settings = VoiceSettings(templates_dir=str(templates_copy))
    rendered = render(
        "goodbye",
        fraud_type="other",
        language="en-GB",
        context={},
        settings=settings,
        center=CenterSettings(),
    )
    assert rendered.fell_back
    assert rendered.language == "zh-CN"
    assert "市反诈中心" not in rendered.text and "再见" in rendered.text


def test_it_falls_back_for_an_unsupported_language(center: CenterSettings) -> None:
    rendered = render("goodbye", fraud_type="other", language="fr", context={}, center=center)
    assert (rendered.language, rendered.fell_back) == ("zh-CN", True)
    english_default = VoiceSettings(default_language="en")
    rendered = render(
        "goodbye",
        fraud_type="other",
        language="fr",
        context={},
        center=center,
        settings=english_default,
    )
    assert (rendered.language, rendered.fell_back) == ("en-US", True)


def test_it_fails_loudly_on_a_missing_variable() -> None:
    with pytest.raises(UndefinedError, match="center_name"):
        render("warning_call", fraud_type="other", language="zh", context={})


def test_context_wins_over_the_center() -> None:
    rendered = render(
        "goodbye",
        fraud_type="other",
        language="en",
        context={"official_number": "12345"},
        center=CenterSettings(),
    )
    assert "12345" in rendered.text


def test_it_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown template kind"):
        render("nope", fraud_type="other", language="zh", context={})


def test_tidy_joins_lines_without_gluing_words_or_spacing_chinese() -> None:
    assert tidy("您好，\n  这是  反诈中心\xa0的电话。") == "您好，这是反诈中心的电话。"
    assert tidy("someone close to you\nmay be") == "someone close to you may be"
    assert tidy("  call 96110 \n\n now ") == "call 96110 now"


def test_it_reads_the_templates_dir_setting(tiny_templates: Path) -> None:
    settings = replace(VoiceSettings(), templates_dir=str(tiny_templates))
    rendered = render(
        "warning_call",
        fraud_type="fake_loan",
        language="en",
        context={},
        settings=settings,
        center=CenterSettings(),
    )
    assert rendered.text == "City Anti-Fraud Center。"
