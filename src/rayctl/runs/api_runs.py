"""batch-infer `engine: http` on the launcher side: the endpoint and the key before the job,
the API's cost after it.

* `prepare(recipe, led)`: `endpoint: run:RUN_ID` becomes that serve run's URL (from the
  ledger) + `/v1` (and its model, unless the recipe names one); `api_key_env: NAME` is read
  from this machine's environment and handed to the job as the secret env var
  `RAYCTL_API_KEY` of `workload.env`, which the existing secret channel carries (a 0600 file
  on a cluster on this machine, SkyPilot secrets on the cloud; `runs/secrets.py`) and every
  log line masks. A missing run or variable is an input error (exit 2) naming the field.
* `record_cost(led, run_id, warn)`: a succeeded run whose endpoint is a managed API (not a
  `run:` and not a local/private host) gets `runs.cost_usd` = cluster cost + its tokens x that
  API's genai-prices rates, and metrics `api` and `api_cost_usd`. An API genai-prices cannot
  price: the run stays succeeded, its cost is unknown (null), one warning.
"""

from __future__ import annotations

import dataclasses
import os

from ..planning import api_prices
from ..recipe import field_error
from ..redact import redact_url
from ..workloads.llm_engines import API_KEY_ENV


def _is_http(recipe) -> bool:
    wl = recipe.workload or {}
    return recipe.kind == "batch-infer" and "entrypoint" not in wl and wl.get("engine") == "http"


def _fail(recipe, field: str, message: str):
    raise field_error(recipe, ("workload", field), message)


def prepare(recipe, led):
    """`recipe` ready to launch (unchanged unless it is a batch-infer with engine http)."""
    if not _is_http(recipe):
        return recipe
    wl = dict(recipe.workload)
    ep = str(wl.get("endpoint") or "").strip()
    if ep.startswith("run:"):
        run_id = ep[4:].strip()
        try:
            row = led.get(run_id)
        except KeyError:
            _fail(recipe, "endpoint", f"no run '{run_id}' in the ledger ({led.path}); `rayctl runs` lists them")
        url = (row.get("metrics") or {}).get("url")
        if row.get("kind") != "serve" or row.get("status") != "serving" or not url:
            _fail(recipe, "endpoint", f"run {row['id']} is a {row.get('kind')} run with status "
                                      f"{row.get('status')}; endpoint run:RUN_ID needs a serve run that is serving "
                                      "(rayctl launch a serve recipe first)")
        wl["endpoint"] = str(url).rstrip("/") + "/v1"
        wl["endpoint_run"] = row["id"]
        if "model" not in (recipe.workload or {}):
            wl["model"] = (row.get("metrics") or {}).get("model") or wl.get("model") or "rayctl-demo"
    name = wl.get("api_key_env")
    if name:
        value = os.environ.get(str(name))
        if not value:
            _fail(recipe, "api_key_env", f"the environment variable {name} is not set (or empty) in this shell; "
                                         f"export it (it holds the API key), or remove api_key_env")
        wl["env"] = {**(wl.get("env") or {}), API_KEY_ENV: value}
    return dataclasses.replace(recipe, workload=wl)


def record_cost(led, run_id: str, warn) -> None:
    """After a succeeded http run: price its tokens at the managed API it used (see the module doc)."""
    row = led.get(run_id)
    m = dict(row.get("metrics") or {})
    if m.get("engine") != "http" or m.get("endpoint_run") or not m.get("endpoint"):
        return
    if not api_prices.is_managed_endpoint(m["endpoint"]):
        return
    i, o = int(row.get("input_tokens") or 0), int(row.get("output_tokens") or 0)
    model = str(m.get("api_model") or "")
    try:
        rates = api_prices.run_rates(model, api_url=m["endpoint"], provider=m.get("provider"), input_tokens=i,
                                     output_tokens=o, requests=int(row.get("rows") or m.get("rows") or 1))
    except (LookupError, ValueError) as e:
        where = f"provider '{m['provider']}'" if m.get("provider") else redact_url(m["endpoint"])
        warn(f"genai-prices {api_prices.library_version()} has no price for model '{model}' at {where} ({e}); "
             "the run's API cost is unknown (set workload.provider to a genai-prices provider id if the host "
             "is not recognised)")
        m.update(api=None, api_cost_usd=None)
        led.update(run_id, metrics=m, cost_usd=None)
        return
    api_cost = round(rates.cost(i, o), 6)
    m.update(api=rates.as_dict(), api_cost_usd=api_cost)
    led.update(run_id, metrics=m, cost_usd=round(float(row.get("cost_usd") or 0.0) + api_cost, 6))
