"""Every ``default`` the JSON Schema shows is what the reader gives a file that leaves it out.

For each defaulted key, a minimal file without the key and the same file with the key set
to the schema's default (as written in the schema) must load to the same model value: the
test fails when the schema, the model or the reader changes its default alone.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from eventcron import config
from eventcron.config.locate import STATE_DIRECTORY_ENV
from eventcron.config.schema import schema

Step = str | int  # a key of a mapping, or 0 for the first item of a list
MINIMAL: dict[str, Any] = {
    "version": 1,
    "schedules": [{"id": "s", "event_type": "a:b", "cron": "0 9 * * *", "users": ["u1"]}],
}


def _defaults(node: dict[str, Any], path: tuple[Step, ...] = ()) -> Iterator[
        tuple[tuple[Step, ...], Any]]:
    # Follows the shape of a file (properties of objects, the first item of arrays), which
    # the model mirrors attribute for attribute.
    if "default" in node:
        yield path, node["default"]
    for key, sub in node.get("properties", {}).items():
        yield from _defaults(sub, (*path, key))
    if isinstance(node.get("items"), dict):
        yield from _defaults(node["items"], (*path, 0))


def _count_defaults(value: Any) -> int:
    if isinstance(value, dict):
        return ("default" in value) + sum(_count_defaults(v) for v in value.values())
    if isinstance(value, list):
        return sum(_count_defaults(v) for v in value)
    return 0


DEFAULTS = list(_defaults(schema()))


def _model_value(cfg: config.Config, path: tuple[Step, ...]) -> Any:
    value: Any = cfg
    for step in path:
        value = value[step] if isinstance(step, int) else getattr(value, step)
    return value


def _with(path: tuple[Step, ...], value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(MINIMAL)
    here: Any = doc
    for step in path[:-1]:
        here = here[step] if isinstance(step, int) else here.setdefault(step, {})
    assert path[-1] not in here, "the minimal file must leave the key out"
    here[path[-1]] = value
    return doc


def _load(path: Path, doc: dict[str, Any]) -> config.Config:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return config.load(path)


def test_every_default_in_the_schema_is_checked() -> None:
    assert len(DEFAULTS) == _count_defaults(schema()) == len(json.dumps(schema()).split(
        '"default"')) - 1
    assert len(DEFAULTS) >= 16


@pytest.mark.parametrize(("path", "default"), DEFAULTS,
                         ids=[".".join(map(str, p)) for p, _ in DEFAULTS])
def test_a_file_without_the_key_loads_the_schema_default(
        path: tuple[Step, ...], default: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(STATE_DIRECTORY_ENV, raising=False)  # the ledger's default moves there
    left_out = _model_value(_load(tmp_path / "left-out.yaml", MINIMAL), path)
    written = _model_value(_load(tmp_path / "written.yaml", _with(path, default)), path)
    assert left_out == written, f"{'.'.join(map(str, path))}: the schema says {default!r}"


def test_the_database_default_lies_beside_the_file(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    # The one default that depends on where the file is: check it is not vacuous.
    monkeypatch.delenv(STATE_DIRECTORY_ENV, raising=False)
    cfg = _load(tmp_path / "schedules.yaml", MINIMAL)
    assert cfg.database == config.sqlite_url(str((tmp_path / "eventcron.db").resolve()))
