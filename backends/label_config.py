"""Parse a Label Studio label config (XML) into inputs, outputs and labels.

Knows the label-config *format* only: no HTTP, no database, no model.
"""
from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass
from xml.etree.ElementTree import Element

from defusedxml import ElementTree
from defusedxml.common import DefusedXmlException

# Object tags show data; control tags produce results. Both lists follow Label Studio's
# tag reference; anything else (View, Header, Style, Choice...) is layout or a child.
OBJECT_TAGS = frozenset(
    {
        "Text", "HyperText", "Image", "Audio", "AudioPlus", "Video", "Paragraphs", "Table",
        "TimeSeries", "Pdf", "List", "Markdown", "Chat",
    }
)
CONTROL_TAGS = frozenset(
    {
        "Choices", "Labels", "TextArea", "Rating", "Number", "DateTime", "Taxonomy", "Ranker",
        "RectangleLabels", "PolygonLabels", "KeyPointLabels", "BrushLabels", "EllipseLabels",
        "HyperTextLabels", "ParagraphLabels", "TimeSeriesLabels", "VideoRectangle", "Pairwise",
        "Relations", "Rectangle", "Polygon", "KeyPoint", "Brush", "Ellipse", "MagicWand",
    }
)


class LabelConfigError(ValueError):
    """The label config cannot be read, or no backend supports what it asks for."""


@dataclass(frozen=True)
class InputTag:
    """An object tag: where a task's data is shown (e.g. `<Text name="text" value="$text"/>`)."""

    name: str
    tag: str
    data_key: str | None  # "text" for value="$text"; None for a literal value
    value_type: str  # "text" (inline) or "url"


@dataclass(frozen=True)
class OutputTag:
    """A control tag: what the annotator produces (e.g. `<Choices>` with its labels)."""

    name: str
    tag: str
    to_names: tuple[str, ...]
    labels: tuple[str, ...]
    multiple: bool


@dataclass(frozen=True)
class LabelConfig:
    xml: str
    inputs: tuple[InputTag, ...]
    outputs: tuple[OutputTag, ...]

    @property
    def digest(self) -> str:
        return config_digest(self.xml)

    def input(self, name: str) -> InputTag | None:
        return next((i for i in self.inputs if i.name == name), None)

    def describe(self) -> str:
        outs = ", ".join(f"<{o.tag} name={o.name!r} toName={','.join(o.to_names)!r}>" for o in self.outputs)
        ins = ", ".join(f"<{i.tag} name={i.name!r}>" for i in self.inputs)
        return f"controls: {outs or 'none'}; objects: {ins or 'none'}"


def config_digest(xml: str) -> str:
    """A stable short hash of a label config, to tell when a project's config changed."""
    return hashlib.sha256(xml.strip().encode()).hexdigest()[:16]


def parse_label_config(xml: str) -> LabelConfig:
    """Parse the XML of a label config; raise LabelConfigError naming what is wrong."""
    if not isinstance(xml, str) or not xml.strip():
        raise LabelConfigError("the label config is empty")
    try:
        root = ElementTree.fromstring(xml)
    except DefusedXmlException as exc:
        raise LabelConfigError(f"the label config uses forbidden XML constructs: {exc}") from exc
    except ElementTree.ParseError as exc:
        raise LabelConfigError(f"the label config is not valid XML: {exc}") from exc

    inputs: list[InputTag] = []
    outputs: list[OutputTag] = []
    for element in root.iter():
        if element.tag in OBJECT_TAGS:
            inputs.append(_input_tag(element))
        elif element.tag in CONTROL_TAGS:
            outputs.append(_output_tag(element))
    if not outputs:
        raise LabelConfigError("the label config has no control tag (e.g. <Choices>); nothing to predict")
    names = [o.name for o in outputs] + [i.name for i in inputs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise LabelConfigError(f"the label config uses the same name for several tags: {', '.join(duplicates)}")
    return LabelConfig(xml=xml, inputs=tuple(inputs), outputs=tuple(outputs))


def _input_tag(element: Element) -> InputTag:
    name = element.get("name")
    if not name:
        raise LabelConfigError(f"<{element.tag}> has no name attribute")
    value = element.get("value", "")
    data_key = value[1:] if value.startswith("$") and len(value) > 1 else None
    value_type = (element.get("valueType") or "text").lower()
    return InputTag(name=name, tag=element.tag, data_key=data_key, value_type=value_type)


def _output_tag(element: Element) -> OutputTag:
    name = element.get("name")
    if not name:
        raise LabelConfigError(f"<{element.tag}> has no name attribute")
    to_name = element.get("toName") or ""
    labels: list[str] = []
    for child in element.iter():
        if child is element:
            continue
        if child.tag in {"Choice", "Label"}:
            label = child.get("value") or child.get("alias")
            if label is None:
                raise LabelConfigError(f"a <{child.tag}> inside <{element.tag} name={name!r}> has no value")
            labels.append(label)
    duplicates = sorted(label for label, times in Counter(labels).items() if times > 1)  # linear: 20k choices
    if duplicates:
        raise LabelConfigError(f"<{element.tag} name={name!r}> lists a choice twice: {', '.join(duplicates)}")
    return OutputTag(
        name=name,
        tag=element.tag,
        to_names=tuple(n.strip() for n in to_name.split(",") if n.strip()),
        labels=tuple(labels),
        multiple=(element.get("choice") or "single").lower() == "multiple",
    )
