"""The offline demo model: built locally, saved with save_pretrained, loaded back with
the same from_pretrained path a real checkpoint takes."""

import json

import pytest


@pytest.fixture
def built(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYCTL_HOME", str(tmp_path / "home"))
    from rayctl.workloads import demo_model

    return demo_model, demo_model.ensure()


@pytest.mark.timeout(180)
def test_round_trip_through_from_pretrained(built, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dm, path = built
    assert path.parent == tmp_path / "home" / "models"
    for f in ("config.json", "model.safetensors", "tokenizer.json", "generation_config.json", dm.MARKER):
        assert (path / f).is_file(), f
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    # Vocabulary sized to the tokenizer: 256 byte symbols + <|endoftext|> + <|pad|>.
    assert len(tok) == model.config.vocab_size == 258
    assert model.config.model_type == "gpt2"
    # Same weights as a fresh in-memory build (fixed seed), so every node builds the same model.
    fresh = dm.build_model(dm.build_tokenizer())
    for (k, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), k
    # Byte-level: any text round-trips, including non-ASCII.
    text = "héllo ✓ wörld"
    assert tok.decode(tok(text)["input_ids"]) == text
    # Greedy generation is deterministic and printable (the demo suppresses non-printable bytes).
    m2, tok2 = dm.load()
    enc = tok2(["Hello", "A longer prompt"], return_tensors="pt", padding=True)
    with torch.inference_mode():
        a = m2.generate(**enc, max_new_tokens=8, do_sample=False)
        b = model.generate(**enc, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert torch.equal(a, b)
    out = tok2.batch_decode(a[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    assert all(s.isprintable() or "\n" in s for s in out), out
    # Chat template is part of the saved tokenizer.
    chat = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False)
    assert chat == "user: hi\nassistant:"


def test_ensure_is_cached_and_marked(built):
    dm, path = built
    meta = json.loads((path / dm.MARKER).read_text())
    assert meta["vocab_size"] == 258 and meta["version"] == dm.VERSION
    mtime = (path / "model.safetensors").stat().st_mtime_ns
    assert dm.ensure() == path
    assert (path / "model.safetensors").stat().st_mtime_ns == mtime


def test_model_names_resolve_against_the_recipe(tmp_path):
    from rayctl.workloads import demo_model as dm

    (tmp_path / "ckpt").mkdir()
    assert dm.resolve(None) == dm.resolve("rayctl-demo") == "rayctl-demo"
    assert dm.resolve("./ckpt", str(tmp_path)) == str(tmp_path / "ckpt")
    assert dm.resolve("ckpt", str(tmp_path)) == str(tmp_path / "ckpt")  # an existing folder
    assert dm.resolve("gpt2", str(tmp_path)) == "gpt2"  # a hub id stays as written
