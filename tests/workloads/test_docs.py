"""docs/workloads.md documents every key each built-in accepts, in that kind's section."""

import re

import pytest

from rayctl.workloads import batch_infer, common, serve, train, tune


def sections(text: str) -> dict:
    parts = re.split(r"^## ", text, flags=re.M)
    return {p.split("\n", 1)[0].strip(): p for p in parts[1:]} | {"": parts[0]}


@pytest.mark.parametrize("mod", [train, tune, batch_infer, serve], ids=lambda m: m.KIND)
def test_every_workload_key_is_documented(repo, mod):
    doc = sections((repo / "docs" / "workloads.md").read_text())
    body = doc[mod.KIND]
    missing = [k for k in mod.FIELDS if f"| `{k}` |" not in body]
    assert not missing, f"undocumented {mod.KIND} keys: {missing}"
    assert "```yaml" in body  # an example


def test_common_keys_are_documented(repo):
    top = sections((repo / "docs" / "workloads.md").read_text())[""]
    assert all(f"| `{k}` |" in top for k in common.COMMON_FIELDS)


@pytest.mark.parametrize("mod", [train, tune, batch_infer, serve], ids=lambda m: m.KIND)
def test_every_documented_key_exists(repo, mod):
    """The other direction: the first table of a kind's section lists only keys the kind takes."""
    body = sections((repo / "docs" / "workloads.md").read_text())[mod.KIND]
    table = re.search(r"^\| key \|.*?\n((?:\|.*\n)+)", body, flags=re.M)
    assert table, f"no key table in the {mod.KIND} section"
    documented = re.findall(r"^\| `([a-z_]+)` \|", table.group(1), flags=re.M)
    assert documented and not set(documented) - set(mod.FIELDS), set(documented) - set(mod.FIELDS)
