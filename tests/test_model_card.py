"""Model cards (issue 28, 5): the audit's headline numbers as a managed Markdown section and as Hugging Face
model-index results, the rest of the card byte for byte, idempotent."""

from __future__ import annotations

import copy
import json

import pytest
import yaml

from flatcheck.card import BEGIN, END, update, write_card
from flatcheck.errors import InputError
from tests.audit_fixtures import tiny_audit  # noqa: F401 - fixture

from .test_checkpoint import one_line_error

HEAD = """---
license: mit
# a comment the card's author wrote
tags:
  - diffusers   # inline comment
  - {flow: style}
model-index:
- name: my-digits
  results:
  - task: {type: unconditional-image-generation}
    dataset: {type: digits, name: digits}
    metrics:
    - {type: fid, value: 3.0}
    source: {name: my own eval}

# a comment before the next key
library_name: diffusers
---
"""
BODY = "\n# My model\n\nTrained on digits.   \n\n## Use\n\n```python\nprint('hi')\n```\n"


def _front(text: str) -> dict:
    return yaml.safe_load(text.split("---\n")[1])


def test_the_card_keeps_every_byte_outside_its_managed_parts(tiny_audit):
    _, doc = tiny_audit
    card = HEAD + BODY
    new = update(card, doc)
    model_index_at = HEAD.index("model-index:")
    after_block = HEAD.index("\n# a comment before the next key")
    assert new.startswith(HEAD[:model_index_at])  # keys before model-index, comments included
    end_of_front = new.index("\n---\n", 4) + 5
    assert new[:end_of_front].endswith(HEAD[after_block:])  # what follows the model-index block
    assert new[end_of_front:].startswith(BODY)  # the body, then the section appended
    assert new[end_of_front + len(BODY) :].startswith("\n" + BEGIN) and new.endswith(END + "\n")
    assert update(new, doc) == new  # idempotent


def test_model_index_keeps_other_results_and_replaces_its_own(tiny_audit):
    _, doc = tiny_audit
    once = update(HEAD + BODY, doc)
    meta = _front(once)
    assert {k for k in meta} == {"license", "tags", "model-index", "library_name"}
    assert meta["tags"] == ["diffusers", {"flow": "style"}]
    (model,) = meta["model-index"]
    assert model["name"] == "my-digits"
    mine = [r for r in model["results"] if r["source"]["name"].startswith("flatcheck")]
    assert model["results"][0]["source"]["name"] == "my own eval" and len(mine) == 1
    types = {m["type"]: m for m in mine[0]["metrics"]}
    assert types["hessian_trace"]["value"] == pytest.approx(doc["sharpness"]["hessian"]["trace"]["value"], rel=1e-4)
    pct = doc["sharpness"]["reference"]["metrics"]["trace"]["percentile"]
    assert types["sharpness_percentile_trace"]["value"] == pytest.approx(pct, rel=1e-4)
    assert "percentile among 7 reference checkpoints (tiny-synthetic)" in types["sharpness_percentile_trace"]["name"]
    other = copy.deepcopy(doc)  # another audit of the same model: its numbers replace the old ones
    other["sharpness"]["hessian"]["trace"]["value"] = 12345.0
    twice = _front(update(once, other))["model-index"][0]["results"]
    assert len(twice) == 2 and twice[0] == model["results"][0]
    assert {m["type"]: m["value"] for m in twice[1]["metrics"]}["hessian_trace"] == 12345.0


def test_the_section_is_replaced_where_it_stands(tiny_audit):
    _, doc = tiny_audit
    card = f"# Title\n\n{BEGIN}\nold numbers\n{END}\n\n## After\nkept\n"
    new = update(card, doc)
    assert new.split("---\n", 2)[2].startswith("# Title\n\n" + BEGIN + "\n## flatcheck audit")
    assert new.endswith(END + "\n\n## After\nkept\n") and "old numbers" not in new
    assert "| headline number | value | gate path |" in new and "`sharpness.hessian.trace`" in new


def test_a_card_is_created_when_absent(tiny_audit, tmp_path):
    _, doc = tiny_audit
    path = write_card(tmp_path / "new" / "README.md", doc)
    text = path.read_text()
    assert text.startswith("---\nmodel-index:\n- name: pipe\n")
    assert _front(text)["model-index"][0]["results"][0]["dataset"]["type"] == "digits"
    assert text.count(BEGIN) == 1 and text.endswith(END + "\n")


@pytest.mark.parametrize(
    "card, says",
    [
        ("---\n- a list\n---\nbody\n", "front matter is not a mapping"),
        ("---\nkey: [unclosed\n---\n", "front matter does not parse"),
        ("---\nmodel-index: 3\n---\n", "model-index is not a list of models"),
        (f"body\n{BEGIN}\nno end\n", "marker without its pair"),
    ],
)
def test_a_card_flatcheck_cannot_update_safely_is_refused(tiny_audit, card, says):
    with pytest.raises(InputError, match=says):
        update(card, tiny_audit[1])


def test_the_card_command_writes_from_a_report_without_rerunning(tiny_audit, tmp_path, cli):
    _, doc = tiny_audit
    report = tmp_path / "report.json"
    report.write_text(json.dumps(doc))
    card = tmp_path / "README.md"
    card.write_text(HEAD + BODY)
    code, out, err = cli("card", report, card)
    assert code == 0, err
    assert card.read_text() == update(HEAD + BODY, doc)
    code, _, err = cli("card", tmp_path / "missing.json", card)
    assert code == 2 and "cannot read report" in one_line_error(err)
    code, _, err = cli("card", report, tmp_path)
    assert code == 2 and "is a folder; give a file path" in one_line_error(err)
