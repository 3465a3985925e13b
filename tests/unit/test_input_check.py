"""How a run's input is refused, and how a batch names the document it refused."""

from __future__ import annotations

import pytest

from common.errors import InvalidArgument
from services.scheduler.input_check import as_batch_item, check_pipeline_input, check_step_input


def test_a_batch_names_the_document_and_the_field_once() -> None:
    with pytest.raises(InvalidArgument) as err:
        check_step_input("detect", {"type": "object", "required": ["image_path"]}, {})
    item = as_batch_item(err.value, 3)
    assert item.field == "inputs_json[3]"
    assert item.message.startswith("inputs_json[3]: the input of first step 'detect'")
    assert "input_json" not in item.message.replace("inputs_json", "")

    with pytest.raises(InvalidArgument) as err:
        check_pipeline_input({"required_fields": ["image_path"]}, {})
    item = as_batch_item(err.value, 0)
    assert (item.field, item.message) == (
        "inputs_json[0].image_path",
        "inputs_json[0].image_path: is required by the pipeline",
    )


def test_an_error_about_another_field_keeps_its_name_after_the_documents() -> None:
    item = as_batch_item(InvalidArgument("must be a boolean", field="cache"), 1)
    assert item.message == "inputs_json[1]: cache: must be a boolean"


def test_a_pipelines_formats_hold_file_fields_only_and_no_formats_hold_none() -> None:
    jpg_png = {"supported_formats": [".JPG", "png"]}
    check_pipeline_input(jpg_png, {"image_path": "a/b/face.jpg?x=1", "note": "not.a.gif"})
    check_pipeline_input(jpg_png, {"image_path": 5, "image_url": "https://host/face.PNG"})
    with pytest.raises(InvalidArgument) as err:
        check_pipeline_input(jpg_png, {"image_path": "face.gif"})
    assert err.value.field == "input_json.image_path" and "['jpg', 'png']" in err.value.message
    check_pipeline_input({"supported_formats": []}, {"image_path": "face.gif"})
    check_pipeline_input({}, {"image_path": "face.gif"})
