"""batch-infer pieces that need no cluster: engine choice, vLLM glue, token counting."""

import pytest

from rayctl.workloads import batch_engines as E
from rayctl.workloads import batch_infer as B
from rayctl.workloads import common
from rayctl.workloads import llm_engines as L


def wl(**kw):
    base = common.with_defaults({"input": "/d/in.jsonl", "output": "/d/out"}, B.FIELDS)
    base.update(kw)
    return base


def test_engine_choice(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "vllm" else real(n, *a))
    assert E.pick_engine(wl(engine="auto"), total_gpu=0) == "transformers"
    assert E.pick_engine(wl(engine="auto"), total_gpu=4) == "transformers"  # no vllm: fall back
    with pytest.raises(common.WorkloadError, match=r"needs the vllm package .* `pip: \[vllm\]`"):
        E.pick_engine(wl(engine="vllm"), total_gpu=4)
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: object() if n == "vllm" else real(n, *a))
    assert E.pick_engine(wl(engine="auto"), total_gpu=1) == "vllm"
    with pytest.raises(common.WorkloadError, match="runs on GPUs and this cluster has none"):
        E.pick_engine(wl(engine="vllm"), total_gpu=0)


def test_vllm_config_and_row_functions(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYCTL_HOME", str(tmp_path))
    w = wl(engine="vllm", model="/models/m", concurrency=[1, 3], batch_size=16, max_new_tokens=20,
           temperature=0.5, engine_kwargs={"max_model_len": 1024}, prompt_column="q")
    cfg = L.processor_config("vllm", w, total_gpu=4)
    assert cfg.model_source == "/models/m" and cfg.concurrency == (1, 3) and cfg.batch_size == 16
    assert cfg.engine_kwargs["max_model_len"] == 1024 and cfg.chat_template_stage is False
    pre, post = L.engine_row_fns("vllm", w, ["id", "q"])
    row = pre({"id": 7, "q": "hello"})
    assert row == {"id": 7, "q": "hello", "prompt": "hello",
                   "sampling_params": {"temperature": 0.5, "top_p": 1.0, "max_tokens": 20}}
    out = post({**row, "generated_text": "hi", "num_input_tokens": 5, "num_generated_tokens": 2, "extra": 1,
                "time_taken_llm": 0.25})
    assert out == {"id": 7, "q": "hello", "generated_text": "hi", "input_tokens": 5, "output_tokens": 2,
                   "llm_s": 0.25}
    with pytest.raises(common.WorkloadError, match="no column 'q'"):
        pre({"id": 1, "prompt": "x"})


def test_generated_lengths_stop_at_the_first_eos():
    import torch

    eos, pad = 9, 8
    gen = torch.tensor([[1, 2, 3, 4], [1, 9, 8, 8], [9, 8, 8, 8], [1, 2, 9, 8]])
    assert E.generated_lengths(gen, eos).tolist() == [4, 2, 1, 3]
    assert E.generated_lengths(gen[:, :0], eos).tolist() == [0, 0, 0, 0]


def test_input_formats_from_extensions():
    assert B._format_of("a/b.jsonl") == "jsonl" and B._format_of("x.JSON.gz") == "jsonl"
    assert B._format_of("s3://b/p.parquet") == "parquet" and B._format_of("d.csv") == "csv"
    assert B._format_of("folder/") is None and B._format_of("notes.txt") is None
