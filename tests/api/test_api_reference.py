"""sart.api.reference: the gRPC reference page from a descriptor set with comments. The page of
the real protos is checked by `scripts/gen-proto --check`; here, what it makes of the cases
those protos may not have yet."""

from __future__ import annotations

from google.protobuf.descriptor_pb2 import FieldDescriptorProto, FileDescriptorSet

from sart.api.reference import reference_markdown

Field = FieldDescriptorProto


def _descriptors() -> FileDescriptorSet:
    descriptors = FileDescriptorSet()
    proto = descriptors.file.add(name="demo/v1/demo.proto", package="demo.v1", syntax="proto3")
    service = proto.service.add(name="DemoApi")
    service.method.add(
        name="Watch",
        input_type=".demo.v1.Request",
        output_type=".demo.v1.Event",
        server_streaming=True,
    )
    proto.message_type.add(name="Request")
    event = proto.message_type.add(name="Event")
    event.oneof_decl.add(name="kind")
    event.oneof_decl.add(name="_limit")
    event.field.add(
        name="up", number=1, type=Field.TYPE_MESSAGE, type_name=".demo.v1.Event.Up", oneof_index=0
    )
    event.field.add(
        name="limit", number=2, type=Field.TYPE_UINT32, oneof_index=1, proto3_optional=True
    )
    event.field.add(
        name="extra",
        number=3,
        type=Field.TYPE_MESSAGE,
        label=Field.LABEL_REPEATED,
        type_name=".google.protobuf.Any",
    )
    event.nested_type.add(name="Up")
    proto.enum_type.add(name="State").value.add(name="STATE_UNSPECIFIED", number=0)
    info = proto.source_code_info
    info.location.add(path=[6, 0, 2, 0], leading_comments=" Events as they\n happen.\n")
    info.location.add(path=[4, 1, 2, 1], trailing_comments=" a <b> | *c\n")
    info.location.add(path=[5, 0], leading_comments=" The states.\n")
    return descriptors


def test_the_page_links_types_and_keeps_comments_in_their_cells() -> None:
    page = reference_markdown(_descriptors())
    assert "## `demo.v1`" in page
    assert "From [`proto/demo/v1/demo.proto`](../proto/demo/v1/demo.proto)." in page
    assert (
        "| `Watch` | [`Request`](#demov1request) | stream [`Event`](#demov1event)"
        " | Events as they happen. |"
    ) in page
    assert "### demo.v1.Request\n\nNo fields." in page
    assert "| `up` | 1 | [`Up`](#demov1eventup) | one of `kind` |" in page
    assert "| `limit` | 2 | optional uint32 | a &lt;b> \\| \\*c |" in page
    assert "| `extra` | 3 | repeated `google.protobuf.Any` |  |" in page
    assert "### demo.v1.Event.Up" in page
    assert "### demo.v1.State\n\nThe states.\n\n| value | number | description |" in page
