"""The offline demo model: a tiny GPT-2 with random weights and a byte-level tokenizer.

Nothing is downloaded. The tokenizer is GPT-2's byte-level scheme with no merges (256
byte symbols plus `<|endoftext|>` and `<|pad|>`), the model a GPT-2 whose vocabulary is
exactly the tokenizer's size. Both are saved with `save_pretrained` under
`$RAYCTL_HOME/models/<name>/` and loaded back with `AutoModelForCausalLM` /
`AutoTokenizer.from_pretrained`, the same path a real checkpoint takes, so the
runners treat `model: rayctl-demo` and `model: /path/to/checkpoint` (or a hub id on a
machine that can reach the hub) alike.

Weights come from a fixed seed: every node of a cluster builds the identical model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .common import DEMO_MODEL, resolve_path
from ..settings import rayctl_home

VERSION = 2
DIR_NAME = f"rayctl-demo-gpt2-v{VERSION}"
EOS = "<|endoftext|>"
PAD = "<|pad|>"
MARKER = "rayctl-demo.json"
# Small enough for ~1-2k generated tokens/s on 2 CPU cores, big enough to be a real GPT-2.
CONFIG = dict(n_positions=512, n_embd=256, n_layer=4, n_head=4)
SEED = 1234
CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def _byte_symbols() -> dict[int, str]:
    """GPT-2's byte -> symbol table (what the ByteLevel pre-tokenizer maps each byte to)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


_PRINTABLE_SYMBOLS = {sym for b, sym in _byte_symbols().items() if 32 <= b < 127 or b == 10}


def models_dir() -> Path:
    """$RAYCTL_HOME/models, or a temp folder when that cannot be created (e.g. a remote node)."""
    d = rayctl_home() / "models"
    try:
        d.mkdir(parents=True, exist_ok=True)
        if os.access(d, os.W_OK):
            return d
    except OSError:
        pass
    d = Path(tempfile.gettempdir()) / "rayctl-models"
    d.mkdir(parents=True, exist_ok=True)
    return d


def is_demo(name: str | None) -> bool:
    return name in (None, "", DEMO_MODEL)


def resolve(name: str | None, base_dir: str | None = None) -> str:
    """What a recipe's `model:` means on the client: the demo name, a path, or a hub id.

    Paths (starting with '/', './', '../' or '~') resolve against the recipe's folder;
    anything else is passed to `from_pretrained` as is.
    """
    if is_demo(name):
        return DEMO_MODEL
    s = str(name)
    if s.startswith(("/", "./", "../", "~")) or os.path.isdir(os.path.join(base_dir or ".", s)):
        return resolve_path(s, base_dir)
    return s


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOS, PAD])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=PAD,
                                   model_max_length=CONFIG["n_positions"])
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                     eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, **CONFIG)
    gen = torch.random.fork_rng(devices=[])
    with gen:
        torch.manual_seed(SEED)
        model = GPT2LMHeadModel(cfg)
    # Random weights emit random bytes; keep the demo's text readable by allowing only
    # printable ASCII (and EOS) when generating. A real checkpoint has no such setting.
    byte_ids = tokenizer.convert_tokens_to_ids(sorted(_PRINTABLE_SYMBOLS))
    allowed = set(byte_ids) | {tokenizer.eos_token_id}
    model.generation_config.suppress_tokens = [i for i in range(len(tokenizer)) if i not in allowed]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    return model.eval()


def save(dest: str | os.PathLike) -> Path:
    """Build the demo tokenizer + model and `save_pretrained` both into `dest`."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    tokenizer.save_pretrained(dest)
    model.save_pretrained(dest)
    (dest / MARKER).write_text(json.dumps({"name": DEMO_MODEL, "version": VERSION, "config": CONFIG,
                                           "seed": SEED, "vocab_size": len(tokenizer)}) + "\n")
    return dest


def ensure(root: str | os.PathLike | None = None) -> Path:
    """Path of the cached demo model, building it first if needed (safe across processes)."""
    base = Path(root) if root else models_dir()
    final = base / DIR_NAME
    if (final / MARKER).is_file():
        return final
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{DIR_NAME}-", dir=base))
    try:
        save(tmp)
        try:
            os.rename(tmp, final)  # atomic; loses harmlessly to a concurrent builder
        except OSError:
            if not (final / MARKER).is_file():
                shutil.rmtree(final, ignore_errors=True)
                os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def local_path(name: str | None) -> str:
    """What to hand `from_pretrained` on this node for the (already resolved) model name."""
    return str(ensure()) if is_demo(name) else str(name)


def load(name: str | None = None, *, device: str = "cpu", dtype=None):
    """(model, tokenizer) via `from_pretrained`, tokenizer padding on the left for generation."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = local_path(name)
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except Exception:
        pass
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kw = {"dtype": dtype} if dtype is not None else {}
    model = AutoModelForCausalLM.from_pretrained(path, **kw).to(device).eval()
    return model, tokenizer


def main() -> None:  # `python -m rayctl.workloads.demo_model [DEST]`: build and print the path
    import sys

    print(save(sys.argv[1]) if len(sys.argv) > 1 else ensure())


if __name__ == "__main__":
    main()
