"""benchmarks/gpu_bench.py where there is no GPU (or no vLLM): it says so and exits 0.

What it would load on a GPU machine, a GPT-2 config with no weights plus the demo tokenizer
(vLLM's `load_format="dummy"` fills the weights), is checked here with transformers."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import REPO

BENCH = REPO / "benchmarks" / "gpu_bench.py"


def _bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(_bench().why_not() is None, reason="this machine has a GPU, vLLM and Ray: the bench would run")
def test_without_gpu_or_vllm_it_says_so_and_exits_0(tmp_path):
    r = subprocess.run([sys.executable, str(BENCH)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    line = r.stdout.strip()
    assert line.startswith("gpu_bench: ") and "Nothing was measured" in line and "UNMEASURED" in line, line
    assert "no GPU here" in line or "not installed" in line, line
    assert "0.9x" in line and r.stderr == ""


def test_the_dummy_weight_model_folder_is_a_loadable_config_and_tokenizer(tmp_path):
    from transformers import AutoConfig, AutoTokenizer

    bench = _bench()
    d = bench.make_model(tmp_path / "m", layers=2, hidden=64, heads=2, positions=256)
    cfg = AutoConfig.from_pretrained(d)
    tok = AutoTokenizer.from_pretrained(d)
    assert cfg.architectures == ["GPT2LMHeadModel"] and cfg.n_layer == 2 and cfg.vocab_size == len(tok)
    assert cfg.eos_token_id == tok.eos_token_id and not list(d.glob("*.safetensors"))  # no weights shipped
    compile(bench.VLLM_ALONE, "vllm_alone", "exec")
