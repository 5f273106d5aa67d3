"""Unit tests for parsing Label Studio label configs."""
from __future__ import annotations

import pytest

from backends import LabelConfigError, backend_for, parse_label_config
from backends.label_config import config_digest


def test_parses_inputs_outputs_and_labels():
    config = parse_label_config(
        '<View><Header value="Read"/><Text name="txt" value="$body" valueType="url"/>'
        '<Choices name="topic" toName="txt" choice="multiple"><Choice value="a"/><Choice value="b"/></Choices></View>'
    )
    (inp,) = config.inputs
    assert (inp.name, inp.tag, inp.data_key, inp.value_type) == ("txt", "Text", "body", "url")
    (out,) = config.outputs
    assert (out.name, out.tag, out.to_names, out.labels, out.multiple) == ("topic", "Choices", ("txt",), ("a", "b"), True)


def test_digest_ignores_surrounding_whitespace_only():
    assert config_digest("<View/>") == config_digest("  <View/>\n")
    assert config_digest("<View/>") != config_digest("<View></View>")


@pytest.mark.parametrize(
    "xml, message",
    [
        ("", "empty"),
        ("<View><Text", "not valid XML"),
        ('<View><Text name="t" value="$t"/></View>', "no control tag"),
        ('<View><Text value="$t"/><Choices name="c" toName="t"><Choice value="x"/></Choices></View>', "no name"),
        ('<View><Text name="t" value="$t"/><Choices name="c" toName="t"><Choice value="x"/><Choice value="x"/>'
         "</Choices></View>", "twice"),
        ('<View><Text name="c" value="$t"/><Choices name="c" toName="c"><Choice value="x"/></Choices></View>',
         "same name"),
        ('<!DOCTYPE v [<!ENTITY e "boom">]><View>&e;</View>', "forbidden"),
    ],
)
def test_broken_configs_say_what_is_wrong(xml, message):
    with pytest.raises(LabelConfigError, match=message):
        parse_label_config(xml)


def test_unsupported_config_lists_found_tags_and_what_is_supported():
    with pytest.raises(LabelConfigError) as info:
        backend_for('<View><Audio name="a" value="$audio"/><TextArea name="tr" toName="a"/></View>')
    text = str(info.value)
    assert "TextArea" in text and "Audio" in text and "text classification" in text


def test_choices_on_an_image_are_not_text_classification():
    with pytest.raises(LabelConfigError, match="Image"):
        backend_for('<View><Image name="i" value="$img"/><Choices name="c" toName="i"><Choice value="x"/></Choices></View>')


def test_picks_the_choices_that_label_text_among_several_controls():
    backend = backend_for(
        '<View><Image name="i" value="$img"/><Choices name="ic" toName="i"><Choice value="x"/></Choices>'
        '<Text name="t" value="$t"/><Choices name="tc" toName="t"><Choice value="p"/><Choice value="q"/></Choices></View>'
    )
    assert backend.control.name == "tc" and backend.labels == ("p", "q") and backend.data_key == "t"


def test_two_choices_on_text_are_refused_naming_both_rather_than_learning_one():
    config = ('<View><Text name="t" value="$t"/>'
              '<Choices name="sentiment" toName="t"><Choice value="pos"/><Choice value="neg"/></Choices>'
              '<Choices name="topic" toName="t"><Choice value="sport"/><Choice value="news"/></Choices></View>')
    with pytest.raises(LabelConfigError) as refused:
        backend_for(config)
    assert str(refused.value) == (
        "unsupported label config: 2 <Choices> label text (<Choices name='sentiment'> on <Text name='t'>, "
        "<Choices name='topic'> on <Text name='t'>) and a version learns one; keep one <Choices> per project "
        "(e.g. a project per question)")
