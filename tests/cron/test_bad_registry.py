"""Issue 9 item 11: a schedules.json of the wrong shape is exit 2 naming the file and
what is wrong, for every schedule command, and the file and the crontab stay as they
were (no silent re-create over a damaged registry)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import assert_no_traceback

from .helpers import FOREIGN

SHAPES = {
    "schedules-a-number": ('{"version": 1, "schedules": 5}', '"schedules" is a number (5)'),
    "top-level-list": ('[{"schedules": {}}]', "the file holds a list"),
    "entry-a-string": ('{"version": 1, "schedules": {"nightly": "0 2 * * *"}}', "schedule 'nightly': is a string"),
    "entry-missing-fields": ('{"version": 1, "schedules": {"nightly": {"name": "nightly"}}}',
                             "schedule 'nightly': field 'recipe' is missing"),
    "env-not-strings": ('{"version": 1, "schedules": {"n": {"name": "n", "recipe": "/r.yaml", "recipe_name": "n", '
                        '"kind": "train", "cron": "0 2 * * *", "env": {"A": 1}}}}', "field 'env'"),
    "newer-version": ('{"version": 7, "schedules": {}}', "written by a newer rayctl"),
    "not-utf8": (b'{"schedules": {"\xff": 1}}', "the schedule registry is damaged"),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize("cmd", ["list", "add", "remove", "sync"])
def test_wrong_shape_registry_is_a_clear_error_and_stays(cli, rayctl_home, make_recipe, crontab_file, shape, cmd):
    text, needle = SHAPES[shape]
    rayctl_home.mkdir(parents=True, exist_ok=True)
    reg = rayctl_home / "schedules.json"
    raw = text if isinstance(text, bytes) else text.encode()
    reg.write_bytes(raw)
    recipe = make_recipe()
    args = {"list": ("schedule", "list", "--crontab-file", crontab_file),
            "add": ("schedule", "add", recipe, "--crontab-file", crontab_file),
            "remove": ("schedule", "remove", "nightly", "--crontab-file", crontab_file),
            "sync": ("schedule", "sync", recipe.parent, "--crontab-file", crontab_file)}[cmd]
    r = cli(*args)
    assert r.code == 2, r
    assert_no_traceback(r)
    assert "internal error" not in r.err, r.err
    assert str(reg) in r.err and needle in r.err, r.err
    assert reg.read_bytes() == raw
    assert crontab_file.read_bytes() == FOREIGN
    assert sorted(p.name for p in rayctl_home.iterdir() if p.name.startswith("schedules")) == ["schedules.json"]


def test_registry_that_is_a_folder_is_a_clear_error(cli, rayctl_home, crontab_file):
    (rayctl_home / "schedules.json").mkdir(parents=True)
    r = cli("schedule", "list", "--crontab-file", crontab_file)
    assert r.code == 2, r
    assert_no_traceback(r)
    assert "schedules.json" in r.err and "cannot read the schedule registry" in r.err, r.err


def test_a_good_registry_still_loads(cli, rayctl_home, make_recipe, crontab_file):
    r = cli("schedule", "add", make_recipe(), "--crontab-file", crontab_file)
    assert r.code == 0, r
    doc = json.loads((rayctl_home / "schedules.json").read_text())
    assert list(doc["schedules"]) == ["nightly"]
    r = cli("schedule", "list", "--crontab-file", crontab_file, "--json")
    assert r.code == 0, r
    assert [s["name"] for s in json.loads(r.out)["schedules"]] == ["nightly"]
