"""Reference tokenizations and chat prompts from Hugging Face `tokenizers`/`transformers`
(and python `sentencepiece`), for the C++ text layer's parity tests.

usage: tokenizer_ref.py MODEL.gguf OUT_DIR

Builds SmolLM2's tokenizer from the GGUF's vocabulary, merges and token types exactly as its
published tokenizer.json configures it, plus variants that share the vocabulary but use other
pre-tokenizers (GPT-2, Llama 3, Qwen2), a legacy "a b" merges file and one with extra added
tokens; saves each as OUT_DIR/<name>/tokenizer.json. Then encodes a deterministic set of
test strings with each (reference.json), renders conversations with several chat templates
through transformers' apply_chat_template (chat.json), and trains a tiny SentencePiece model
(sp/tokenizer.model) when the sentencepiece package is installed.
"""
import json
import os
import random
import sys

import gguf
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
               r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# Chat templates with the published behaviour of these models' templates.
QWEN2_TEMPLATE = (
    r"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    r"{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    r"{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    r"{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
LLAMA3_TEMPLATE = (
    r"{% set loop_messages = messages %}{% for message in loop_messages %}"
    r"{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    r" + message['content'] | trim + '<|eot_id|>' %}"
    r"{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    r"{% endfor %}{% if add_generation_prompt %}"
    r"{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
LLAMA2_TEMPLATE = (
    r"{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
    r"{% set system_message = messages[0]['content'] %}{% else %}"
    r"{% set loop_messages = messages %}{% set system_message = false %}{% endif %}"
    r"{% for message in loop_messages %}"
    r"{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    r"{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    r"{% endif %}{% if loop.index0 == 0 and system_message != false %}"
    r"{% set content = '<<SYS>>\n' + system_message + '\n<</SYS>>\n\n' + message['content'] %}"
    r"{% else %}{% set content = message['content'] %}{% endif %}"
    r"{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
    r"{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}"
    r"{% endif %}{% endfor %}")


def gguf_field(reader, key):
    f = reader.fields[key]
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        if f.types[1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [int(f.parts[i][0]) for i in f.data]
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[-1][0].item()


def build(vocab, merges, controls, pre, ignore_merges=False):
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(c, special=True, normalized=False) for c in controls])
    return tok


def split_then_byte_level(regex):
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


def test_strings():
    fixed = [
        "", " ", "  ", "\t", "\n", "\r\n", "\r", "a", "Hello world", "Hello, world!",
        "hello   world", " leading space", "trailing space ", "multiple\n\nnewlines\n\n\n",
        "tabs\tand\tspaces \t mixed", "CRLF\r\nline\r\nend\r\n", "a \n b", "x  \t\n  y", "end   ",
        "   \n   ", "\n\n\n\n", " \t \t ", "word\r\n\r\n\r\nword",
        "I'm sure they'll say we've done what you'd expect; it's fine, isn't it?",
        "I'M SURE THEY'LL SAY WE'VE DONE IT", "'s 't 're 've 'm 'll 'd", "'S 'T 'RE 'VE 'M 'LL 'D",
        "rock'n'roll o'clock", "'ſ Kelvin'K", "don’t curly apostrophe", "''quoted'' \"double\"",
        "1", "12", "123", "1234", "12345", "12345678901234567890", "3.14159265358979", "1,000,000",
        "v1.2.3-rc4", "2024-01-15T10:30:00Z", "phone: +1 (555) 123-4567", "0x1F2E3D4C",
        "１２３ full-width digits", "٣٤٥ arabic-indic digits", "½ ¼ ² ³ Ⅻ ⅷ", "a1b2c3", "99 bottles",
        " 42", "  42", "x=42;y=-7.5e10", "route 66\n", "IPv4 192.168.0.1", "۱۲۳۴ ௧௨௩",
        "café naïve résumé", "Ünïcödé", "Straße", "Привет, мир!", "Γειά σου Κόσμε",
        "こんにちは世界", "你好，世界！", "안녕하세요 세계", "مرحبا بالعالم", "שלום עולם",
        "नमस्ते दुनिया", "สวัสดีชาวโลก", "ሰላም ዓለም", "Tiếng Việt có dấu", "e\u0301 combining acute",
        "ﬁ ligature ﬂ", "Ελληνικά και русский и English", "ẞ ǅ ǈ title case", "Ꭰ Cherokee ꭰ",
        "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇫🇷🇯🇵", "❤️", "I ❤️ NY 🗽", "🤖 robots 🤖🤖",
        "emoji😀glued", "👩🏾‍💻 coder", "🧑‍🤝‍🧑 together", "😀 😀  😀   😀",
        "\u00a0nbsp", "a\u2003b em space", "\u3000ideographic space", "\u200bzero\u200bwidth",
        "line\u2028separator", "para\u2029separator", "\u0085next line", "\u180e mongolian",
        "\ufeffBOM at start", "a\u00a0\u00a0b", "x \u00a0y", "\u2009thin\u202fnarrow",
        "\x0bvertical tab\x0c form feed", "\x1c\x1d\x1e\x1f separators",
        "Ã©tÃ© mojibake", "\ufffd replacement char", "â€™ smart quote mojibake",
        "\x00 nul \x01 \x1f ctrl", "\x7f del", "\U0010ffff max code point", "\ue000 private use",
        "<|im_start|>user\nhi<|im_end|>\n", "text<|im_end|>more", "<|im_start|><|im_start|>",
        "<|endoftext|>", "<|im_start", "<|im_start|", "|im_end|>", "<repo_name>x<file_sep>y",
        "<|IM_START|>", "< |im_start| >", "<|im_start|>system\nYou are helpful.<|im_end|>",
        "a<|endoftext|>b<|endoftext|>", "<jupyter_code>print(1)<jupyter_output>1<empty_output>",
        "<s> </s> <unk> [INST] <<SYS>>", "<|begin_of_text|><|eot_id|>",
        "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
        "#include <iostream>\nint main() {\n\tstd::cout << \"hi\\n\";\n\treturn 0;\n}\n",
        "const f = (x) => { return x ?? 0; };\nconsole.log(`v=${f(1)}`);",
        "fn main() {\n    let v: Vec<u8> = vec![1, 2, 3];\n    println!(\"{:?}\", v);\n}",
        "<html><body><p class=\"x\">Hi &amp; bye</p></body></html>",
        "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}",
        "SELECT id, name FROM users WHERE age >= 21 ORDER BY name;",
        "for f in *.txt; do echo \"$f\" | wc -l; done 2>&1 >/dev/null",
        "\\begin{equation} E = mc^2 \\end{equation}", "^\\d{3}-\\d{4}$ (?<=x)y+",
        "| a | b |\n|---|---|\n| 1 | 2 |", "    indented\n        more\n\tback",
        "if (a&&b||!c) { x+=1; y<<=2; z->w; }", "__init__ __name__ == \"__main__\"",
        "camelCaseIdentifier snake_case_identifier SCREAMING_CASE kebab-case",
        "https://example.com/path?q=1&r=two#frag", "user@example.org", "C:\\Users\\name\\file.txt",
        "!!!???...,,,;;;:::", "---===+++***", "((([[[{{{}}}]]])))", "~`@#$%^&*_|\\",
        "a" * 300, "=" * 200, " " * 100 + "x", "x" + "\n" * 50, "9" * 120, "ab" * 150,
        "🙂" * 40, "Привет " * 30, "\t" * 20 + "tabbed",
    ]
    pools = [
        ["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "Reward", "model",
         "policy", "gradient", "tokenizer", "PPO", "KL", "LoRA", "RLHF", "Hello", "world"],
        ["café", "naïve", "Straße", "мир", "привет", "κόσμε", "世界", "東京", "서울", "عالم",
         "עולם", "दुनिया", "โลก", "việt", "ñandú", "Øre", "İstanbul", "ß", "ǅ"],
        ["0", "7", "42", "123", "2024", "3.14", "1e-5", "100%", "$5", "#1", "٣", "１"],
        ["😀", "👍🏽", "👨‍👩‍👧", "🏳️‍🌈", "🇩🇪", "❤️", "✨", "🔥", "🤖", "⭐"],
        ["'s", "'t", "'re", "'ll", "'d", "'m", "'ve", "n't", "'S", "’s"],
        ["(", ")", "{", "}", "[", "]", "<", ">", "=", "==", "->", "::", ";", ",", ".", "...",
         "!", "?", "\"", "'", "`", "#", "//", "/*", "*/", "&&", "||", "+=", "\\n", "@"],
        ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<file_sep>", "<|im_start", "im_end|>"],
    ]
    seps = ["", " ", " ", " ", "  ", "\n", "\t", "\r\n", " \n", "\n\n", "   ", "\u00a0", "\u3000"]
    rng = random.Random(20240615)
    generated = []
    while len(generated) < 260:
        parts = []
        for _ in range(rng.randint(1, 8)):
            pool = pools[rng.randrange(len(pools))]
            parts.append(pool[rng.randrange(len(pool))])
            parts.append(seps[rng.randrange(len(seps))])
        s = "".join(parts)
        if s not in generated and s not in fixed:
            generated.append(s)
    return fixed + generated


CONVERSATIONS = [
    [{"role": "user", "content": "Hello!"}],
    [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hi there"}],
    [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": "4"},
     {"role": "user", "content": "And 3+3?"}],
    [{"role": "system", "content": "  Be brief.\n"}, {"role": "user", "content": "  padded  "},
     {"role": "assistant", "content": " Sure. \n"}, {"role": "user", "content": "multi\nline\n"}],
    [{"role": "user", "content": "Unicode: café 😀\u3000"}],
    [{"role": "system", "content": ""}, {"role": "user", "content": "empty system"}],
    [{"role": "user", "content": "ends with the assistant"}, {"role": "assistant", "content": "done."}],
    [{"role": "user", "content": ""}],
]


def chat_cases(hf_tokenizer, smollm_template):
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast
    # The model's own vocabulary, untouched by the wrappers below (they add their BOS/EOS).
    pristine = Tokenizer.from_str(hf_tokenizer.to_str())
    templates = [("smollm", smollm_template, "<|im_start|>", "<|im_end|>"),
                 ("qwen2", QWEN2_TEMPLATE, "<|im_start|>", "<|im_end|>"),
                 ("llama3", LLAMA3_TEMPLATE, "<|begin_of_text|>", "<|eot_id|>"),
                 ("llama2", LLAMA2_TEMPLATE, "<s>", "</s>")]
    cases = []
    for name, template, bos, eos in templates:
        tok = PreTrainedTokenizerFast(tokenizer_object=hf_tokenizer, bos_token=bos, eos_token=eos)
        for messages in CONVERSATIONS:
            for gen in (False, True):
                text = tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                               add_generation_prompt=gen)
                # The ids the model's tokenizer gives the rendered conversation (its special
                # tokens parsed; the other templates' markers are plain text to it).
                ids = pristine.encode(text, add_special_tokens=False).ids
                cases.append({"template": name, "jinja": template, "bos": bos, "messages": messages,
                              "add_generation_prompt": gen, "text": text, "ids": ids})
    return cases


def sentencepiece_reference(out_dir, strings):
    try:
        import sentencepiece as spm
    except ImportError:
        return None
    import io
    rng = random.Random(7)
    words = ["reward", "model", "policy", "the", "a", "of", "training", "token", "Hello", "world",
             "café", "мир", "世界", "data", "value", "gradient", "123", "4567", "learning"]
    corpus = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(400)]
    corpus += [s for s in strings if s.strip()]
    model = io.BytesIO()
    # Llama 2's settings: BPE, byte fallback, digits split, no normalization, dummy prefix.
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=model, model_type="bpe", vocab_size=600,
        byte_fallback=True, split_digits=True, normalization_rule_name="identity",
        add_dummy_prefix=True, remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=0.9995,
        hard_vocab_limit=False, max_sentence_length=100000, minloglevel=2)
    os.makedirs(os.path.join(out_dir, "sp"), exist_ok=True)
    path = os.path.join(out_dir, "sp", "tokenizer.model")
    with open(path, "wb") as f:
        f.write(model.getvalue())
    sp = spm.SentencePieceProcessor(model_file=path)
    ids = [sp.encode(s) for s in strings]
    return {"ids": ids, "decoded": [sp.decode(i) for i in ids],
            "bos": sp.bos_id(), "eos": sp.eos_id(), "unk": sp.unk_id(), "pad": sp.pad_id(),
            "vocab_size": sp.get_piece_size()}


def main():
    gguf_path, out_dir = sys.argv[1], sys.argv[2]
    reader = gguf.GGUFReader(gguf_path)
    tokens = gguf_field(reader, "tokenizer.ggml.tokens")
    types = gguf_field(reader, "tokenizer.ggml.token_type")
    merges = [tuple(m.split(" ")) for m in gguf_field(reader, "tokenizer.ggml.merges")]
    vocab = {t: i for i, t in enumerate(tokens)}
    controls = [t for t, ty in zip(tokens, types) if ty == 3]

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    smollm_pre = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    variants = {
        "smollm": build(vocab, merges, controls, smollm_pre),
        "gpt2": build(vocab, merges, controls, byte_level),
        "llama3": build(vocab, merges, controls, split_then_byte_level(LLAMA3_REGEX), ignore_merges=True),
        "qwen2": build(vocab, merges, controls, split_then_byte_level(QWEN2_REGEX)),
        "added": build(vocab, merges, controls, smollm_pre),
    }
    # Extra added tokens: a new special one, non-special ones (one non-ASCII, one that is a
    # prefix of <|im_start|>, so longest-match decides) and one equal to a vocabulary entry.
    variants["added"].add_tokens([AddedToken("ünïcödé▁tok", special=False, normalized=False),
                                  AddedToken("<|im", special=False, normalized=False),
                                  AddedToken("hello", special=False, normalized=False)])
    variants["added"].add_special_tokens([AddedToken("<|tool_call|>", special=True, normalized=False)])

    for name, tok in variants.items():
        os.makedirs(os.path.join(out_dir, name), exist_ok=True)
        tok.save(os.path.join(out_dir, name, "tokenizer.json"))
    # The legacy merges spelling ("a b" strings), as older tokenizer.json files have it.
    with open(os.path.join(out_dir, "smollm", "tokenizer.json"), encoding="utf-8") as f:
        legacy = json.load(f)
    assert isinstance(legacy["model"]["merges"][0], list)
    legacy["model"]["merges"] = [" ".join(m) for m in legacy["model"]["merges"]]
    os.makedirs(os.path.join(out_dir, "smollm_legacy"), exist_ok=True)
    with open(os.path.join(out_dir, "smollm_legacy", "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(legacy, f, ensure_ascii=False)
    with open(os.path.join(out_dir, "smollm", "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token": {"content": "<|im_start|>", "special": True}, "eos_token": "<|im_end|>",
                   "pad_token": "<|im_end|>", "unk_token": "<|endoftext|>", "add_bos_token": False}, f)

    strings = test_strings()
    ref = {"strings": strings, "ids": {}, "ids_no_special": {}, "decode": {}, "decode_skip": {}}
    # decode is not always the string itself: SmolLM2's vocabulary lacks the tokens of a
    # few bytes (0x1D, 0xFF, ...), which BPE without an unknown token drops.
    for name, tok in variants.items():
        ref["ids"][name] = [tok.encode(s, add_special_tokens=False).ids for s in strings]
        ref["decode"][name] = [tok.decode(i, skip_special_tokens=False) for i in ref["ids"][name]]
    for name in ("smollm", "added"):
        tok = variants[name]
        tok.encode_special_tokens = True
        ref["ids_no_special"][name] = [tok.encode(s, add_special_tokens=False).ids for s in strings]
        tok.encode_special_tokens = False
        ref["decode_skip"][name] = [tok.decode(i, skip_special_tokens=True) for i in ref["ids"][name]]
    ref["sentencepiece"] = sentencepiece_reference(out_dir, strings)
    with open(os.path.join(out_dir, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(ref, f, ensure_ascii=False)

    template = gguf_field(reader, "tokenizer.chat_template")
    with open(os.path.join(out_dir, "chat.json"), "w", encoding="utf-8") as f:
        json.dump(chat_cases(variants["smollm"], template), f, ensure_ascii=False)


if __name__ == "__main__":
    main()
