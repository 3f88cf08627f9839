"""Managed-API baselines come from genai-prices itself: the same token counts through the
library's own `calc_price` must give the same dollars, input and output priced separately."""

from __future__ import annotations

import sys

import pytest
from genai_prices import Usage, calc_price

from rayctl.cost import baselines
from rayctl.errors import InputError


@pytest.mark.parametrize("name, ref, provider", [
    ("gpt-4o-mini", "gpt-4o-mini", None),
    ("claude-3-5-haiku", "claude-3-5-haiku", None),
    ("gemini-1.5-flash", "gemini-1.5-flash", None),
    ("groq:llama-3.1-8b-instant", "llama-3.1-8b-instant", "groq"),
    ("together:meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo", "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo",
     "together"),
])
@pytest.mark.parametrize("i, o", [(1000, 250), (0, 500), (250_000, 4_000), (7, 1)])
def test_price_equals_calc_price(name, ref, provider, i, o):
    got = baselines.price(name, i, o)
    want = calc_price(Usage(input_tokens=i, output_tokens=o), ref, provider_id=provider)
    assert got.input_usd == pytest.approx(float(want.input_price), rel=1e-12, abs=0)
    assert got.output_usd == pytest.approx(float(want.output_price), rel=1e-12, abs=0)
    assert got.total_usd == pytest.approx(float(want.total_price), rel=1e-12, abs=0)
    assert got.provider_id == want.provider.id and got.model_id == want.model.id
    assert got.usd_per_1m_tokens == pytest.approx(float(want.total_price) / (i + o) * 1e6)
    d = got.as_dict()
    if i:
        assert d["input_usd_per_1m"] == pytest.approx(float(want.input_price) / i * 1e6)
    assert d["output_usd_per_1m"] == pytest.approx(float(want.output_price) / o * 1e6)


def test_input_and_output_priced_separately():
    only_in = baselines.price("gpt-4o-mini", 1_000_000, 0)
    only_out = baselines.price("gpt-4o-mini", 0, 1_000_000)
    both = baselines.price("gpt-4o-mini", 1_000_000, 1_000_000)
    assert only_in.output_usd == 0 and only_out.input_usd == 0
    assert only_out.output_usd > only_in.input_usd  # output tokens cost more on this API
    assert both.total_usd == pytest.approx(only_in.total_usd + only_out.total_usd)


def test_tiered_prices_follow_the_request_size():
    """gemini-1.5-flash charges more per token for prompts over 128k: pricing one request of the
    mix (not a month of tokens as one request) is what picks the tier, as the API bills."""
    small = baselines.price("gemini-1.5-flash", 100_000, 1000)
    large = baselines.price("gemini-1.5-flash", 200_000, 1000)
    assert large.input_usd / 200_000 > small.input_usd / 100_000
    want = calc_price(Usage(input_tokens=200_000, output_tokens=1000), "gemini-1.5-flash")
    assert large.total_usd == pytest.approx(float(want.total_price))


def test_model_served_by_one_host_is_found_without_a_provider():
    p = baselines.price("llama-3.1-8b-instant", 1000, 250)
    assert p.provider_id == "groq"


def test_unknown_and_ambiguous_names_are_input_errors():
    with pytest.raises(InputError, match=r"no price for 'gpt4o-mini'.*Close matches: gpt-4o-mini"):
        baselines.price("gpt4o-mini", 1000, 250)
    with pytest.raises(InputError, match=r"several providers.*openrouter:meta-llama/llama-3.1-8b-instruct"):
        baselines.price("meta-llama/llama-3.1-8b-instruct", 1000, 250)
    with pytest.raises(InputError, match=r"at provider 'groq'.*Close matches"):
        baselines.price("groq:llama-3.1-8b-instnat", 1000, 250)


def test_colons_in_model_names_are_not_providers():
    assert baselines.split_name("amazon.nova-lite-v1:0") == (None, "amazon.nova-lite-v1:0")
    assert baselines.split_name("groq:llama-3.1-8b-instant") == ("groq", "llama-3.1-8b-instant")
    assert baselines.price("amazon.nova-lite-v1:0", 1000, 250).provider_id == "aws"


def test_a_genai_prices_without_its_provider_list_is_reported_not_empty(monkeypatch):
    """A genai-prices version that moved its provider list used to read as "no providers"
    (every name unknown, no suggestions); now it says what is wrong and how to fix it."""
    from rayctl.errors import RayctlError

    monkeypatch.setitem(sys.modules, "genai_prices.data_snapshot", None)  # `import` raises ImportError
    monkeypatch.setitem(sys.modules, "genai_prices.data", None)
    with pytest.raises(RayctlError, match="cannot read its provider list.*pip install -U"):
        baselines._providers()
