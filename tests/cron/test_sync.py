"""`schedule sync DIR`: the folder's `schedule:` fields become the crontab's rayctl lines."""

from __future__ import annotations

import json

import pytest

from tests.conftest import assert_no_traceback

from .helpers import FOREIGN, list_json, our_lines

pytestmark = pytest.mark.timeout(120)


def names_in(content: bytes) -> dict[str, bytes]:
    return {ln.rsplit(b"=", 1)[1].decode(): ln for ln in our_lines(content)}


def test_sync_adds_updates_and_removes(cli, make_recipe, crontab_file, tmp_path, rayctl_home):
    d = tmp_path / "recipes"
    a = make_recipe("alpha", folder=d)
    b = make_recipe("beta", schedule='"30 3 * * 0"', folder=d)
    c = make_recipe("gamma", schedule=None, folder=d)
    (d / "notes.txt").write_text("not a recipe")

    r = cli("schedule", "sync", d, "--crontab-file", crontab_file)
    assert r.code == 0, r
    assert "2 added, 0 updated, 0 removed, 0 unchanged, 1 recipe file(s) without schedule" in r.out
    content = crontab_file.read_bytes()
    assert content.startswith(FOREIGN)
    lines = names_in(content)
    assert set(lines) == {"alpha", "beta"}
    assert lines["beta"].startswith(b"30 3 * * 0 ")

    # nothing changed: nothing written
    r = cli("schedule", "sync", d, "--crontab-file", crontab_file)
    assert r.code == 0 and "0 added, 0 updated, 0 removed, 2 unchanged" in r.out, r
    assert crontab_file.read_bytes() == content

    # beta's schedule changes, alpha's file goes, gamma gains a schedule
    b.write_text(b.read_text().replace('"30 3 * * 0"', '"45 4 * * *"'))
    a.unlink()
    make_recipe("gamma", schedule='"@hourly"', folder=d)
    r = cli("schedule", "sync", d, "--crontab-file", crontab_file, "--json")
    assert r.code == 0, r
    doc = json.loads(r.out)
    assert [x["name"] for x in doc["added"]] == ["gamma"]
    assert [x["name"] for x in doc["updated"]] == ["beta"]
    assert [x["name"] for x in doc["removed"]] == ["alpha"]
    content2 = crontab_file.read_bytes()
    lines2 = names_in(content2)
    assert set(lines2) == {"beta", "gamma"}
    assert lines2["beta"].startswith(b"45 4 * * * ") and lines2["gamma"].startswith(b"@hourly ")
    # beta was updated in place, gamma appended; the foreign lines never moved
    assert content2 == FOREIGN + lines2["beta"] + b"\n" + lines2["gamma"] + b"\n"
    assert {r["name"] for r in list_json(cli)} == {"beta", "gamma"}

    # gamma drops its schedule: the schedule sync installed goes
    make_recipe("gamma", schedule=None, folder=d)
    b.unlink()
    r = cli("schedule", "sync", d, "--crontab-file", crontab_file)
    assert r.code == 0 and "0 added, 0 updated, 2 removed" in r.out, r
    assert crontab_file.read_bytes() == FOREIGN
    assert list_json(cli) == []
    assert c.exists()


def test_sync_keeps_hand_added_schedules_whose_recipe_exists(cli, make_recipe, crontab_file, tmp_path):
    d = tmp_path / "recipes"
    manual = make_recipe("manual", schedule=None, folder=d)
    assert cli("schedule", "add", manual, "--cron", "0 5 * * *", "--crontab-file", crontab_file).code == 0
    elsewhere = make_recipe("other", folder=tmp_path / "elsewhere")
    assert cli("schedule", "add", elsewhere, "--crontab-file", crontab_file).code == 0
    r = cli("schedule", "sync", d, "--crontab-file", crontab_file)
    assert r.code == 0 and "0 removed" in r.out, r
    assert set(names_in(crontab_file.read_bytes())) == {"manual", "other"}
    # ...but once the recipe file is gone, its schedule is too (only for recipes in this folder)
    manual.unlink()
    r = cli("schedule", "sync", d, "--crontab-file", crontab_file)
    assert r.code == 0 and "1 removed" in r.out, r
    assert set(names_in(crontab_file.read_bytes())) == {"other"}


def test_dry_run_changes_nothing(cli, make_recipe, crontab_file, tmp_path, rayctl_home):
    d = tmp_path / "recipes"
    make_recipe("alpha", folder=d)
    r = cli("schedule", "sync", d, "--crontab-file", crontab_file, "--dry-run")
    assert r.code == 0, r
    assert "would add alpha (0 2 * * *)" in r.out and "dry run: 1 added" in r.out
    assert crontab_file.read_bytes() == FOREIGN
    assert not (rayctl_home / "schedules.json").exists()


@pytest.mark.parametrize("bad,needle", [
    ('name: broken\nkind: train\nschedule: "0 2 * * * *"\n', "broken.yaml:3:11: field 'schedule':"),
    ('name: broken\nkind: train\nschedule: "0 2 * * *"\nresources: {nodes: 0}\n', "field 'resources.nodes'"),
    ("name: broken\nkind: [train\n", "cannot tell whether it carries a schedule"),
    ('name: alpha\nkind: train\nschedule: "0 3 * * *"\n', "recipe name 'alpha' is also the name of"),
])
def test_one_bad_recipe_stops_the_whole_sync(cli, make_recipe, crontab_file, tmp_path, rayctl_home, bad, needle):
    d = tmp_path / "recipes"
    make_recipe("alpha", folder=d)
    assert cli("schedule", "sync", d, "--crontab-file", crontab_file).code == 0
    before = crontab_file.read_bytes()
    make_recipe("beta", folder=d)  # would be added...
    make_recipe(text=bad, folder=d, filename="broken.yaml")  # ...but this file is broken
    r = cli("schedule", "sync", d, "--crontab-file", crontab_file)
    assert r.code == 2, r
    assert_no_traceback(r)
    assert "schedule sync changed nothing" in r.err and needle in r.err, r.err
    assert crontab_file.read_bytes() == before


def test_sync_refuses_a_name_taken_by_another_recipe(cli, make_recipe, crontab_file, tmp_path):
    other = make_recipe("alpha", folder=tmp_path / "elsewhere")
    assert cli("schedule", "add", other, "--crontab-file", crontab_file).code == 0
    before = crontab_file.read_bytes()
    d = tmp_path / "recipes"
    make_recipe("alpha", folder=d)
    r = cli("schedule", "sync", d, "--crontab-file", crontab_file)
    assert r.code == 2 and f"schedule 'alpha' already runs {other}" in r.err, r
    assert crontab_file.read_bytes() == before


def test_sync_of_a_missing_folder_is_exit_2(cli, tmp_path, crontab_file):
    r = cli("schedule", "sync", tmp_path / "nope", "--crontab-file", crontab_file)
    assert r.code == 2 and "not a folder of recipes" in r.err, r
    assert_no_traceback(r)
