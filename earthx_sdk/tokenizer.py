"""The EarthX tokenizer: a byte-level BPE (`tokenizers`) with the model's special tokens, ChatML.

Torch-free on purpose: the device runtime (onnxruntime, TensorRT) tokenizes with this module alone.

Special tokens are added tokens of the `tokenizers.Tokenizer`: they are matched in the raw text
before pre-tokenization, so BPE never splits or merges them (`"a<region>b"` always holds exactly one
`region_id`). A pretrained LLM's tokenizer (e.g. SmolLM2's, which already has `<|im_start|>` and
`<|im_end|>`) gets only the missing ones appended after its vocabulary.
"""

from __future__ import annotations

import functools
import json
import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
PAD = "<pad>"
IMAGE = "<image>"
REGION = "<region>"
SEG = "<seg>"
# Order matters for a freshly trained tokenizer: these become ids 0..6.
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END, PAD, IMAGE, REGION, SEG)
CHAT_ROLES = ("system", "user", "assistant")

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"


class EarthXTokenizer:
    """A `tokenizers.Tokenizer` that is guaranteed to hold the EarthX special tokens.

    Args:
        tokenizer: the wrapped tokenizer; missing special tokens are added to it (in place).
        bos_token: the beginning-of-sequence token of a pretrained LLM, or None (ours has none).
            `encode` never inserts it; the caller prepends `bos_id` where its LLM expects one.

    Attributes:
        added_tokens: the special tokens that were missing from `tokenizer` and got appended.

    Raises:
        TypeError: `tokenizer` is not a `tokenizers.Tokenizer`.
        ValueError: `bos_token` is not in the vocabulary.
    """

    def __init__(self, tokenizer: Tokenizer, bos_token: str | None = None):
        if not isinstance(tokenizer, Tokenizer):
            raise TypeError("tokenizer must be a tokenizers.Tokenizer, "
                            f"got {type(tokenizer).__name__}")
        self._tok = tokenizer
        present = tokenizer.get_vocab(with_added_tokens=True)
        # The special tokens this wrapper appended to the vocabulary (none for our trained ones):
        # an LLM loaded with a pretrained tokenizer grows its embedding rows for them.
        self.added_tokens = tuple(t for t in SPECIAL_TOKENS if t not in present)
        # Tokens already present keep their ids (only their matching becomes atomic); missing ones
        # are appended in SPECIAL_TOKENS order.
        tokenizer.add_special_tokens([_special(t) for t in SPECIAL_TOKENS])
        self.bos_token = bos_token
        if bos_token is not None and tokenizer.token_to_id(bos_token) is None:
            raise ValueError(f"bos_token must be in the vocabulary, got {bos_token!r}")

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | Path) -> EarthXTokenizer:
        """Loads a `tokenizer.json`; a sibling `tokenizer_config.json` supplies `bos_token`.

        Raises:
            FileNotFoundError: `path` does not exist.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"tokenizer file must exist, got {str(path)!r}")
        return cls(Tokenizer.from_file(str(path)), bos_token=_read_bos(path.parent))

    @classmethod
    def from_dir(cls, path: str | Path) -> EarthXTokenizer:
        """Loads `path/tokenizer.json` (e.g. a Hugging Face model directory).

        Raises:
            FileNotFoundError: the directory has no tokenizer.json.
        """
        file = Path(path) / TOKENIZER_FILE
        if not file.is_file():
            raise FileNotFoundError(f"tokenizer directory must contain {TOKENIZER_FILE}, "
                                    f"got none in {str(path)!r}")
        return cls.from_file(file)

    def save(self, path: str | Path) -> None:
        """Writes `path/tokenizer.json` and a `tokenizer_config.json` naming the special tokens (so
        `transformers.AutoTokenizer` can load the directory too), each via a temporary file and a
        rename. Creates `path` if needed."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": self.bos_token,
                  "eos_token": IM_END, "pad_token": PAD, "unk_token": None,
                  "additional_special_tokens": [IMAGE, REGION, SEG]}
        _write_atomic(path / TOKENIZER_FILE, self._tok.to_str())
        _write_atomic(path / TOKENIZER_CONFIG_FILE, json.dumps(config, indent=2))

    def to_str(self) -> str:
        """The serialized tokenizer.json (deterministic for the same tokenizer)."""
        return self._tok.to_str()

    @property
    def backend(self) -> Tokenizer:
        """The wrapped `tokenizers.Tokenizer`."""
        return self._tok

    # -- ids ---------------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Rows an embedding table needs: the largest id + 1 (added tokens included)."""
        return max(self._tok.get_vocab(with_added_tokens=True).values()) + 1

    def token_id(self, token: str) -> int:
        """The id of `token`. Raises KeyError when it is not in the vocabulary."""
        i = self._tok.token_to_id(token)
        if i is None:
            raise KeyError(f"token {token!r} is not in the vocabulary")
        return i

    @property
    def image_id(self) -> int:
        return self.token_id(IMAGE)

    @property
    def region_id(self) -> int:
        return self.token_id(REGION)

    @property
    def seg_id(self) -> int:
        return self.token_id(SEG)

    @property
    def pad_id(self) -> int:
        return self.token_id(PAD)

    @property
    def eos_id(self) -> int:
        """`<|im_end|>`: a ChatML turn ends generation."""
        return self.token_id(IM_END)

    @property
    def bos_id(self) -> int | None:
        return None if self.bos_token is None else self.token_id(self.bos_token)

    # -- text ----------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; no BOS/EOS or other post-processing is added.

        Raises:
            TypeError: `text` is not a str.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return self._tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of `ids`; special tokens are dropped unless `skip_special_tokens` is False."""
        return self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def decode_answer(self, ids: Sequence[int]) -> str:
        """Text of generated ids: eos and the other special tokens dropped, each <seg> kept in
        place (the answer as the user reads it)."""
        parts, chunk = [], []
        for t in ids:
            if t == self.seg_id:
                parts += [self.decode(chunk), "<seg>"]
                chunk = []
            elif t != self.eos_id:
                chunk.append(t)
        parts.append(self.decode(chunk))
        return "".join(parts)

    def apply_chat(self, messages: Sequence[dict], add_generation_prompt: bool = False) -> str:
        """Formats `messages` in ChatML.

        Each message becomes `<|im_start|>{role}\\n{content}<|im_end|>\\n`; with
        `add_generation_prompt` the text ends with `<|im_start|>assistant\\n`.

        Args:
            messages: dicts with keys "role" (system, user or assistant) and "content" (str).
            add_generation_prompt: open an assistant turn for the model to complete.

        Returns:
            The prompt text (encode it with `encode`).

        Raises:
            TypeError: a message is not a dict, or its content is not a str.
            ValueError: a message lacks "role"/"content", or its role is not one of CHAT_ROLES.
        """
        return format_chat(messages, add_generation_prompt)

    def __repr__(self) -> str:
        return f"EarthXTokenizer(vocab_size={self.vocab_size}, bos_token={self.bos_token!r})"


def format_chat(messages: Sequence[dict], add_generation_prompt: bool = False) -> str:
    """ChatML text of `messages`; see `EarthXTokenizer.apply_chat`."""
    parts = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise TypeError(f"messages[{i}] must be a dict with role and content, "
                            f"got {type(m).__name__}")
        if "role" not in m or "content" not in m:
            raise ValueError(f"messages[{i}] must have keys 'role' and 'content', got {sorted(m)}")
        role, content = m["role"], m["content"]
        if role not in CHAT_ROLES:
            raise ValueError(f"messages[{i}]['role'] must be one of {list(CHAT_ROLES)}, "
                             f"got {role!r}")
        if not isinstance(content, str):
            raise TypeError(f"messages[{i}]['content'] must be a str, got {type(content).__name__}")
        parts.append(f"{IM_START}{role}\n{content}{IM_END}\n")
    if add_generation_prompt:
        parts.append(f"{IM_START}assistant\n")
    return "".join(parts)


# -- training -------------------------------------------------------------------------------


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> EarthXTokenizer:
    """Trains a byte-level BPE on `texts`; the special tokens get ids 0..6.

    Every byte is in the initial alphabet, so any text round-trips through encode/decode. Training
    is deterministic for the same texts. The vocabulary can end up smaller than `vocab_size` when
    the texts run out of pairs to merge.

    Args:
        texts: training documents (ChatML special tokens in them are kept whole, not learned).
        vocab_size: the target vocabulary size, special tokens included.

    Raises:
        ValueError: `vocab_size` is too small to hold the special tokens and the 256 bytes.
    """
    minimum = len(SPECIAL_TOKENS) + 256
    if vocab_size < minimum:
        raise ValueError(f"vocab_size must be at least {minimum} (special tokens + 256 bytes), "
                         f"got {vocab_size}")
    tok = Tokenizer(models.BPE())
    # Added before training so the trainer sees special tokens as atoms, not as text to merge.
    tok.add_special_tokens([_special(t) for t in SPECIAL_TOKENS])
    # No prefix space: decode(encode(t)) must give back t exactly.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False,
        special_tokens=[_special(t) for t in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer=trainer)
    return EarthXTokenizer(tok)


@functools.lru_cache(maxsize=4)
def _tiny_tokenizer_json(vocab_size: int) -> str:
    return train_tokenizer(tokenizer_corpus(), vocab_size).to_str()


def tiny_tokenizer(vocab_size: int = 2048) -> EarthXTokenizer:
    """The tokenizer of the from-scratch presets: `train_tokenizer(tokenizer_corpus(), vocab_size)`.

    Trained once per process and size (about a second), then copied; every call returns a new,
    independent object.
    """
    return EarthXTokenizer(Tokenizer.from_str(_tiny_tokenizer_json(vocab_size)))


# -- corpus ---------------------------------------------------------------------------------

CLASSES = ("building", "storage tank", "ship", "airplane", "vehicle", "road", "tree", "water",
           "dead tree", "live tree", "cloud")
SENSOR_NAMES = ("optical", "SAR", "infrared", "multispectral")
POSITIONS = ("top left", "top right", "bottom left", "bottom right", "center", "top", "bottom",
             "left side", "right side", "upper middle", "lower middle")
COLORS = ("white", "gray", "dark", "red", "blue", "green", "brown", "black", "bright", "orange")
SCENES = ("an airport", "a harbor", "a dense residential area", "farmland", "a forest",
          "an industrial area", "a highway interchange", "a river bank", "a parking lot",
          "a port with docks", "a desert", "a coastline", "an oil refinery", "a city center")
SHAPES = ("rectangular", "circular", "square", "elongated", "irregular", "L-shaped", "narrow",
          "wide", "curved", "straight", "oval", "triangular", "symmetric", "compact")
SIZES = ("small", "large", "tiny", "huge", "medium-sized", "long", "short", "tall", "massive")
LAYOUTS = ("scattered", "clustered", "aligned in rows", "parallel", "densely packed",
           "sparsely distributed", "arranged in a grid", "isolated", "grouped together",
           "lined up along the shore", "spread across the field", "surrounded by vegetation")
DIRECTIONS = ("north", "south", "east", "west", "northeast", "northwest", "southeast",
              "southwest", "upstream", "downstream", "inland", "offshore")
STATES = ("parked", "docked", "moving", "anchored", "taxiing", "under construction", "damaged",
          "flooded", "abandoned", "partially occluded", "in shadow", "half hidden by clouds",
          "burned", "snow-covered", "newly built", "freshly painted")
CONDITIONS = ("on a clear day", "under thin clouds", "in the dry season", "after heavy rain",
              "in early spring", "in late autumn", "during winter", "at low sun elevation",
              "with strong shadows", "with haze over the scene", "at night", "at dawn")
SENSOR_NOTES = {
    "optical": ("true color", "panchromatic sharpening", "visible bands", "high resolution"),
    "SAR": ("strong backscatter", "speckle noise", "dual polarization", "bright corner reflections",
            "radar shadow", "layover near tall structures"),
    "infrared": ("thermal contrast", "warm signatures", "hot exhaust", "cool water surfaces",
                 "emissivity differences"),
    "multispectral": ("near-infrared reflectance", "red edge bands", "a vegetation index",
                      "shortwave infrared", "thirteen spectral bands", "band ratios"),
}
LANDMARKS = ("runway", "taxiway", "terminal", "hangar", "pier", "breakwater", "warehouse",
             "parking area", "railway", "bridge", "roundabout", "canal", "reservoir", "dam",
             "stadium", "greenhouse", "solar farm", "wind turbine", "container yard", "orchard",
             "vineyard", "quarry", "levee", "marina", "intersection", "overpass", "farmhouse")
_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
_SYSTEM = ("You are EarthX, an assistant for remote sensing imagery.",
           "You are a helpful assistant that analyzes satellite and aerial images.",
           "Answer questions about the remote sensing image precisely and briefly.")


def _plural(name: str, n: int) -> str:
    return name if n == 1 else name + "s"


def _turn(rng: random.Random) -> tuple[str, str]:
    """One (user, assistant) exchange about an image, from a randomly chosen task template."""
    cls = rng.choice(CLASSES)
    sensor = rng.choice(SENSOR_NAMES)
    pos = rng.choice(POSITIONS)
    color = rng.choice(COLORS)
    scene = rng.choice(SCENES)
    n = rng.randint(0, 12)
    count = _NUMBERS[n] if n < len(_NUMBERS) else str(n)
    task = rng.randrange(7)
    if task == 0:  # caption
        user = rng.choice(("Describe this image.", "Write a short caption for the image.",
                           f"What does this {sensor} image show?", "Describe the scene in detail."))
        other = rng.choice(CLASSES)
        mark = rng.choice(LANDMARKS)
        gsd = rng.choice(("0.3", "0.5", "0.8", "1", "2", "3", "10", "30"))
        answer = (f"This {sensor} image of {scene} was taken {rng.choice(CONDITIONS)} at about "
                  f"{gsd} m resolution. There are {count} {rng.choice(SIZES)} "
                  f"{_plural(cls, n)} {rng.choice(LAYOUTS)} near the {pos}, "
                  f"{rng.choice(DIRECTIONS)} of a {rng.choice(SHAPES)} {mark}, and some "
                  f"{rng.choice(STATES)} {_plural(other, 2)} around them. The image shows "
                  f"{rng.choice(SENSOR_NOTES[sensor])}.")
    elif task == 1:  # counting VQA
        user = rng.choice((f"How many {_plural(cls, 2)} are in the image?",
                           f"Count the {_plural(cls, 2)}.",
                           f"What is the number of {_plural(cls, 2)} visible?"))
        answer = rng.choice((f"There are {count} {_plural(cls, n)}.", f"{n}",
                             f"I can see {count} {_plural(cls, n)} in this {sensor} image."))
    elif task == 2:  # presence / position / color VQA
        user = rng.choice((f"Is there a {cls} in the image?", f"Where is the {cls}?",
                           f"What color is the {cls} at the {pos}?",
                           f"Which sensor captured this image, and is there any {cls}?"))
        answer = rng.choice((f"Yes, there is a {cls} at the {pos}.", "No.",
                             f"The {cls} is located at the {pos} of the image.",
                             f"It is {color}.",
                             f"This is a {sensor} image; a {color} {cls} appears at the {pos}."))
    elif task == 3:  # region classification
        user = rng.choice(("What is the category of <region>?", "Classify the object in <region>.",
                           "What is in <region>? Answer with one class name."))
        answer = rng.choice((cls, f"It is a {cls}.", f"The region contains a {color} {cls}."))
    elif task == 4:  # region caption
        user = rng.choice(("Describe <region> in detail.", "Give a brief caption of <region>.",
                           "What can you tell me about the object in <region>?"))
        answer = (f"A {rng.choice(SIZES)}, {rng.choice(SHAPES)} {color} {cls} "
                  f"({rng.choice(STATES)}) at the {pos} of the {sensor} image, next to "
                  f"{count} {_plural(rng.choice(CLASSES), n)} and a {rng.choice(LANDMARKS)}.")
    elif task == 5:  # referring segmentation
        user = rng.choice((f"Please segment the {cls} at the {pos}.",
                           f"Segment the {color} {cls} in the image.",
                           f"Can you give me a mask of the {cls} near the {pos}?"))
        answer = rng.choice(("Sure, it is <seg>.", f"Sure, the {cls} is <seg>.", "<seg>",
                             f"Here is the mask of the {cls}: <seg>."))
    else:  # grounding with coordinates
        x0, y0 = rng.randint(0, 900), rng.randint(0, 900)
        x1, y1 = x0 + rng.randint(4, 100), y0 + rng.randint(4, 100)
        user = rng.choice((f"Find the {cls} at the {pos}.", f"Locate every {cls}.",
                           f"Give the bounding box of the {color} {cls}."))
        answer = f"The {cls} is at [{x0}, {y0}, {x1}, {y1}]."
    return user, answer


def tokenizer_corpus(seed: int = 0, n: int = 4000) -> list[str]:
    """Remote-sensing instruction conversations in ChatML, generated from templates.

    Captions, counting/presence/position/color VQA, region classification and captions with
    `<region>`, referring segmentation answers with `<seg>`, boxes; the project's classes, sensors,
    positions, counts and colors. Deterministic for a given `seed`.

    Args:
        seed: seed of the template choices.
        n: number of conversations.

    Returns:
        `n` ChatML strings, each with an `<image>` in its first user turn.
    """
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        messages = []
        if rng.random() < 0.5:
            messages.append({"role": "system", "content": rng.choice(_SYSTEM)})
        for turn in range(rng.randint(1, 3)):
            user, answer = _turn(rng)
            if turn == 0:
                user = f"{IMAGE}\n{user}"
            messages += [{"role": "user", "content": user},
                         {"role": "assistant", "content": answer}]
        out.append(format_chat(messages) + (ENDOFTEXT if rng.random() < 0.5 else ""))
    return out


# -- helpers --------------------------------------------------------------------------------


def _special(token: str) -> AddedToken:
    # normalized=False: matched in the raw text, so no normalizer can split it.
    return AddedToken(token, special=True, normalized=False, lstrip=False, rstrip=False,
                      single_word=False)


def _read_bos(directory: Path) -> str | None:
    config = directory / TOKENIZER_CONFIG_FILE
    if not config.is_file():
        return None
    bos = json.loads(config.read_text()).get("bos_token")
    if isinstance(bos, dict):  # older transformers serialize AddedToken as a dict
        bos = bos.get("content")
    return bos if isinstance(bos, str) else None


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
