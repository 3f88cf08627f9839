"""Managed-API prices from the `genai-prices` library's own dated price snapshot: the one
wrapper of that library (`rayctl cost compare`'s baselines, via `cost/baselines.py`, and the
recorded cost of a batch-infer run against a managed API, via `runs/api_cost.py`).

Every price comes from `genai_prices.calc_price` on a `Usage` with the request's input
and output tokens, exactly as the API bills them (input and output priced
separately, tiers chosen by the library from the request size). No price is typed
into rayctl. The library works offline from the snapshot bundled with its version.

An API is named as `MODEL` (the library infers the provider, e.g. gpt-4o-mini ->
openai) or `PROVIDER:MODEL` (e.g. groq:llama-3.1-8b-instant), as `calc_price`'s
`provider_id` takes it.
"""

from __future__ import annotations

import difflib
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..errors import InputError, RayctlError

DEFAULT_APIS = ("gpt-4o-mini", "claude-3-5-haiku", "gemini-1.5-flash", "groq:llama-3.1-8b-instant")


@dataclass(frozen=True)
class ApiPrice:
    name: str  # as asked
    provider_id: str
    provider: str
    model_id: str
    model: str | None
    input_tokens: int  # per request
    output_tokens: int
    input_usd: float  # per request, from calc_price
    output_usd: float
    total_usd: float
    pricing_urls: tuple[str, ...] = ()
    deprecated: bool = False

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def usd_per_1m_tokens(self) -> float:
        return self.total_usd / self.tokens * 1e6

    @property
    def tokens_per_usd(self) -> float | None:
        return self.tokens / self.total_usd if self.total_usd > 0 else None

    def as_dict(self) -> dict:
        return {
            "name": self.name, "provider_id": self.provider_id, "provider": self.provider,
            "model_id": self.model_id, "model": self.model, "deprecated": self.deprecated,
            "request": {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens},
            "usd_per_request": {"input": self.input_usd, "output": self.output_usd, "total": self.total_usd},
            # effective rates at this request size (tiered prices depend on it)
            "input_usd_per_1m": self.input_usd / self.input_tokens * 1e6 if self.input_tokens else None,
            "output_usd_per_1m": self.output_usd / self.output_tokens * 1e6 if self.output_tokens else None,
            "usd_per_1m_tokens": self.usd_per_1m_tokens, "tokens_per_usd": self.tokens_per_usd,
            "pricing_urls": list(self.pricing_urls),
        }


def library_version() -> str:
    import genai_prices

    return genai_prices.__version__


def _providers() -> list:
    """The library's provider list (the snapshot `calc_price` uses), for name lookups only.

    Prices always come from `calc_price`; this list only helps to find a provider for a
    model name and to suggest close matches. genai-prices has kept it in two places
    across versions; a version that has neither is reported, not read as "no providers".
    """
    try:
        from genai_prices.data_snapshot import get_snapshot

        return list(get_snapshot().providers)
    except (ImportError, AttributeError) as first:
        try:
            from genai_prices.data import providers
        except ImportError:
            raise RayctlError(
                f"genai-prices {library_version()}: cannot read its provider list ({type(first).__name__}: "
                f"{first}); reinstall it with `pip install -U 'genai-prices>=0.0.30'`") from None
        return list(providers)


def split_name(name: str) -> tuple[str | None, str]:
    """('groq', 'llama-3.1-8b-instant') from 'groq:llama-3.1-8b-instant'; (None, name) otherwise.

    Only a known provider id before the first ':' is a provider: model names such as
    'amazon.nova-lite-v1:0' keep their colon.
    """
    head, sep, tail = name.partition(":")
    if sep and tail:
        ids = {p.id for p in _providers()}
        if head.strip().lower() in ids:
            return head.strip().lower(), tail.strip()
    return None, name.strip()


def price(name: str, input_tokens: int, output_tokens: int) -> ApiPrice:
    """What one request of `input_tokens` + `output_tokens` costs on API `name`, per genai-prices."""
    from genai_prices import Usage, calc_price

    provider_id, ref = split_name(name)
    if not ref:
        raise InputError("--api: an empty API name; write e.g. --api gpt-4o-mini,claude-3-5-haiku")
    usage = Usage(input_tokens=int(input_tokens), output_tokens=int(output_tokens))
    try:
        calc = calc_price(usage, ref, provider_id=provider_id)
    except LookupError:
        if provider_id is not None:
            raise InputError(_unknown(name, ref, provider_id)) from None
        # The library infers a provider from the name's family (claude -> anthropic); a model
        # only some hosts serve (llama-3.1-8b-instant) has no family: look it up in every provider.
        hosts = [p.id for p in _providers() if p.find_model(ref) is not None]
        if len(hosts) == 1:
            calc = calc_price(usage, ref, provider_id=hosts[0])
        elif hosts:
            raise InputError(f"--api {name}: several providers price this model; name one as PROVIDER:MODEL: "
                             + ", ".join(f"{h}:{ref}" for h in hosts[:12])
                             + (f" (and {len(hosts) - 12} more)" if len(hosts) > 12 else "")) from None
        else:
            raise InputError(_unknown(name, ref, None)) from None
    return ApiPrice(
        name=name, provider_id=calc.provider.id, provider=calc.provider.name, model_id=calc.model.id,
        model=calc.model.name, input_tokens=int(input_tokens), output_tokens=int(output_tokens),
        input_usd=float(calc.input_price), output_usd=float(calc.output_price), total_usd=float(calc.total_price),
        pricing_urls=tuple(calc.provider.pricing_urls or ()), deprecated=bool(calc.model.deprecated),
    )


def _names(provider_id: str | None) -> dict[str, str]:
    """lower-case reference -> how to write it, over the models of one provider (or all)."""
    out: dict[str, str] = {}
    for p in _providers():
        if provider_id and p.id != provider_id:
            continue
        for m in p.models:
            for ref in (m.id, *_equals(m.match)):
                out.setdefault(ref.lower(), f"{p.id}:{ref}" if provider_id else ref)
    return out


def _equals(clause) -> list[str]:
    if hasattr(clause, "equals"):
        return [clause.equals]
    out: list[str] = []
    for sub in getattr(clause, "or_", None) or ():
        out.extend(_equals(sub))
    return out


def suggest(ref: str, provider_id: str | None = None, n: int = 5) -> list[str]:
    names = _names(provider_id)
    return [names[k] for k in difflib.get_close_matches(ref.lower(), list(names), n=n, cutoff=0.6)]


def _unknown(name: str, ref: str, provider_id: str | None) -> str:
    import genai_prices

    close = suggest(ref, provider_id)
    hint = f" Close matches: {', '.join(close)}." if close else ""
    if provider_id and not close:
        other = suggest(ref)
        hint = f" Close matches at other providers: {', '.join(other)}." if other else ""
    where = f"provider '{provider_id}'" if provider_id else "any provider"
    return (f"--api {name}: genai-prices {genai_prices.__version__} has no price for '{ref}' at {where}.{hint} "
            "Write MODEL or PROVIDER:MODEL as genai-prices names them (e.g. gpt-4o-mini, "
            "groq:llama-3.1-8b-instant).")


# ---------------------------------------------------------------- API runs


def is_managed_endpoint(url: str) -> bool:
    """Whether `url` is a public host (a managed API) rather than this machine or a private network."""
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    if not host or host == "localhost" or host.endswith((".localhost", ".local", ".internal", ".lan")):
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "." in host  # a bare name (a docker service, a cluster node) is private
    return ip.is_global


@dataclass(frozen=True)
class RunRates:
    """What an API run's tokens cost: $ per 1M input / output tokens at the run's mean request size."""

    provider: str  # genai-prices provider id
    model: str  # genai-prices model id
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    source: str  # "genai-prices <version>"

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (input_tokens * self.input_usd_per_mtok + output_tokens * self.output_usd_per_mtok) / 1e6

    def as_dict(self) -> dict:
        return {"provider": self.provider, "model": self.model, "input_usd_per_mtok": self.input_usd_per_mtok,
                "output_usd_per_mtok": self.output_usd_per_mtok, "source": self.source}


def run_rates(model: str, *, api_url: str | None = None, provider: str | None = None, input_tokens: int = 0,
              output_tokens: int = 0, requests: int = 1) -> RunRates:
    """The prices of `model` at `provider` (or the provider whose API `api_url` is), per genai-prices,
    at the run's mean request size (tiers depend on it). LookupError when genai-prices has no price."""
    from genai_prices import Usage, calc_price

    n = max(1, int(requests))
    i, o = max(1, round(input_tokens / n)), max(1, round(output_tokens / n))
    kw = {"provider_id": provider} if provider else {"provider_api_url": api_url}
    calc = calc_price(Usage(input_tokens=i, output_tokens=o), model, **kw)
    return RunRates(provider=calc.provider.id, model=calc.model.id,
                    input_usd_per_mtok=round(float(calc.input_price) / i * 1e6, 9),
                    output_usd_per_mtok=round(float(calc.output_price) / o * 1e6, 9),
                    source=f"genai-prices {library_version()}")
