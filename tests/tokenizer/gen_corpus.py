#!/usr/bin/env python3
"""gen_corpus.py — writes the tokenizer test corpus (JSON lines, one string
each, so a text may hold newlines). Deterministic: a fixed seed and only the
standard library; re-running it reproduces tests/fixtures/tokenizer/corpus.jsonl
byte for byte.

    python3 tests/tokenizer/gen_corpus.py > tests/fixtures/tokenizer/corpus.jsonl
    python3 tests/tokenizer/gen_corpus.py --bench 20 > /tmp/bench.jsonl   # ~20 MB

Categories: English prose, code in several languages, Chinese/Japanese/Korean,
emoji and ZWJ sequences, digit runs, whitespace/newline runs and tabs, special
tokens embedded in text, RTL text, combining marks, odd Unicode (format and
control characters, unassigned and private-use code points), and mixes.
"""
import json
import random
import sys

R = random.Random(20240603)

WORDS = """the a an of to and in is it that for on with as was at by be this from or have not are but
had they you he she we his her their there which will one all would can been if more when what so
no out up about into than them could only other its time some new these two may first then do any
like my now over such our man me even most made after also did many before must through back years
where much your way well down should because each just those people how too little state good very
make world still own see men work long get here between both life being under never day same another
know while last might us great old year off come since against go came right used take three house
network model server token request latency throughput kernel memory cache expert router layer batch
attention sequence gradient tensor weight matrix vector benchmark compiler runtime thread socket
Where New York London Tokyo Paris Berlin Monday Tuesday January February Alice Bob Carol Dave
isn't don't won't it's we'll they're I'm you've she'd can't shouldn't o'clock rock'n'roll""".split()

PUNCT = [".", ",", "!", "?", ";", ":", "...", " -", " --", "—", "–", "…", "'", "\"", "(", ")", "[", "]"]


def sentence(n=None):
    n = n or R.randint(3, 18)
    w = [R.choice(WORDS) for _ in range(n)]
    w[0] = w[0][:1].upper() + w[0][1:]
    out = []
    for i, x in enumerate(w):
        out.append(x)
        if i < n - 1 and R.random() < 0.12:
            out[-1] += R.choice([",", ";", ":", " -", " (" + R.choice(WORDS) + ")"])
    s = " ".join(out)
    return s + R.choice([".", ".", ".", "!", "?", "?!", "...", ":", ""])


def prose():
    k = R.randint(1, 5)
    s = " ".join(sentence() for _ in range(k))
    r = R.random()
    if r < 0.15:
        s = '"' + s + '" ' + R.choice(["she said.", "he asked.", "(source: wiki)", "— Anonymous"])
    elif r < 0.25:
        s = s.upper()
    elif r < 0.35:
        s = s.replace(" ", R.choice(["  ", "\t", "\n", " \n", "\n\n"]), R.randint(1, 3))
    elif r < 0.45:
        s = "- " + s + "\n- " + sentence() + "\n* " + sentence()
    elif r < 0.5:
        s = "email me at %s.%s@example.com or visit https://%s.example.org/path?q=%d&x=y#frag" % (
            R.choice(WORDS), R.choice(WORDS), R.choice(WORDS), R.randint(0, 99999))
    return s


def ident():
    parts = [R.choice(["get", "set", "load", "parse", "tok", "kv", "moe", "num", "max", "buf", "len", "idx"])
             for _ in range(R.randint(1, 3))]
    style = R.randint(0, 2)
    if style == 0:
        return "_".join(parts)
    if style == 1:
        return parts[0] + "".join(p.capitalize() for p in parts[1:])
    return "".join(p.capitalize() for p in parts)


def indent(lines, unit):
    out, depth = [], 0
    for l in lines:
        if l.startswith("}") or l.startswith("end") or l.startswith("</"):
            depth = max(0, depth - 1)
        out.append(unit * depth + l)
        if l.endswith("{") or l.endswith(":") or (l.startswith("<") and not l.startswith("</") and not l.endswith("/>")):
            depth += 1
    return "\n".join(out)


def code():
    a, b, c = ident(), ident(), ident()
    n = R.randint(0, 4096)
    lang = R.randint(0, 10)
    unit = R.choice(["    ", "  ", "\t", "        "])
    if lang == 0:  # C
        src = ["#include <stdio.h>", "", "static int %s(const char *%s, size_t %s) {" % (a, b, c),
               "if (!%s || %s == 0) return -1; // guard" % (b, c),
               "for (size_t i = 0; i < %s; i++) {" % c, "sum += %s[i] * 0x%X;" % (b, n), "}",
               "printf(\"%%s: %%zu\\n\", __func__, %s);" % c, "return (int)(sum >> 3);", "}"]
    elif lang == 1:  # Python
        src = ["def %s(%s, %s=None):" % (a, b, c), '"""Return the %s of %s."""' % (R.choice(WORDS), b),
               "if %s is None:" % c, "%s = {}" % c, "for k, v in sorted(%s.items()):" % b,
               "%s[k] = v ** 2 + %d  # square" % (c, n), "return [x for x in %s if x %% 2 == 0]" % c]
    elif lang == 2:  # JavaScript
        src = ["const %s = async (%s) => {" % (a, b), "const res = await fetch(`/api/${%s}?n=%d`);" % (b, n),
               "if (!res.ok) throw new Error('bad ' + res.status);", "return (await res.json()).map(x => x.%s ?? null);" % c,
               "};", "export default %s;" % a]
    elif lang == 3:  # Rust
        src = ["fn %s<'a>(%s: &'a [u8]) -> Result<Vec<u32>, String> {" % (a, b),
               "let mut %s = Vec::with_capacity(%s.len());" % (c, b), "for (i, &x) in %s.iter().enumerate() {" % b,
               "%s.push((x as u32) << (i %% %d));" % (c, max(1, n % 31)), "}", "Ok(%s)" % c, "}"]
    elif lang == 4:  # Go
        src = ["func %s(%s []int) (int, error) {" % (a.capitalize(), b), "var %s int" % c,
               "for _, v := range %s {" % b, "%s += v" % c, "}", "if %s > %d {" % (c, n),
               "return 0, fmt.Errorf(\"overflow: %%d\", %s)" % c, "}", "return %s, nil" % c, "}"]
    elif lang == 5:  # HTML
        src = ["<div class=\"%s\" id=\"%s-%d\">" % (a, b, n), "<p>%s &amp; %s &lt;3</p>" % (sentence(4), R.choice(WORDS)),
               "<img src=\"/img/%s.png\" alt=\"\"/>" % c, "</div>"]
    elif lang == 6:  # SQL
        return "SELECT %s, COUNT(*) AS n FROM %s WHERE %s >= %d AND name LIKE '%%%s%%' GROUP BY 1 ORDER BY n DESC;" % (
            a, b, c, n, R.choice(WORDS))
    elif lang == 7:  # shell
        return "for f in $(ls *.%s); do\n\tgrep -n \"%s\" \"$f\" | awk -F: '{print $1}' >> /tmp/%s.log 2>&1\ndone && echo $?" % (
            R.choice(["c", "py", "txt"]), a, b)
    elif lang == 8:  # JSON
        return json.dumps({a: n, b: [R.random() * 100, None, True], c: {"nested": sentence(3)}},
                          indent=R.choice([None, 2, 4]))
    elif lang == 9:  # C++ templates, lots of '<'
        return "template <typename T, size_t N = %d>\nstd::array<std::vector<T>, N> %s(std::map<std::string, T>& m) { return {}; } // <%s>" % (
            n, a, b)
    else:  # markdown / LaTeX
        return "## %s\n\n```python\nprint(%r)\n```\n\n$$\\frac{a_{%d}}{\\sqrt{x^2+1}} \\leq \\sum_{i=0}^{n} x_i$$" % (
            sentence(4), sentence(3), n)
    return indent(src, unit)


ZH = ["我们今天去北京天安门广场看升旗仪式。", "机器学习模型需要大量的训练数据，", "这个问题的答案是四十二！",
      "深度求索发布了新的混合专家模型", "请问附近有没有便宜的饭店？", "中华人民共和国成立于一九四九年",
      "龘靐齉齾爩鱻麤龗灪龖厵", "鿐鿑鿒鿓鿔鿕鿦鿧", "㐀㐁㐂㐃", "𠀀𠀁𠀂𪚥𠮷野家"]
JA = ["今日はいい天気ですね。", "カタカナとひらがなを混ぜて書きます", "東京タワーへ行きました！", "ｶﾀｶﾅ半角もあります",
      "ワンパンマンは面白い", "ゟ゠ヿ〜ー", "日本語の文章：「こんにちは、世界」"]
KO = ["안녕하세요, 만나서 반갑습니다.", "한국어 토크나이저 테스트입니다", "서울특별시 강남구 테헤란로 123",
      "ᄒᆞᆫᄀᆞᆯ 옛한글", "ㅋㅋㅋㅋ ㅎㅎ"]


def cjk():
    parts = []
    for _ in range(R.randint(1, 4)):
        parts.append(R.choice(ZH + JA + KO))
        if R.random() < 0.3:
            parts.append(R.choice([" ", "", "\n", "  ", "，", "。", " abc ", str(R.randint(0, 99999))]))
    if R.random() < 0.2:  # random ideographs: inside and outside 一-龥, the pre-tokenizer's range
        parts.append("".join(chr(R.randint(0x4E00, 0x9FFF)) for _ in range(R.randint(1, 40))))
    if R.random() < 0.1:  # a long run: a word longer than the BPE's short-word path
        parts.append("".join(chr(R.randint(0x4E00, 0x9FA5)) for _ in range(R.randint(30, 200))))
    return "".join(parts)


EMOJI = ["😀", "😂", "🤣", "❤️", "👍", "👍🏽", "👋🏿", "🙏🏻", "🎉", "🔥", "✨", "🚀", "🇺🇸", "🇯🇵", "🇩🇪🇫🇷",
         "👨‍👩‍👧‍👦", "👩‍💻", "🧑🏾‍🚀", "🏳️‍🌈", "🏴‍☠️", "❤️‍🔥", "👁️‍🗨️", "1️⃣", "#️⃣", "*️⃣", "©️", "™", "☺", "☺️",
         "🫨", "🩷", "🫎", "🪿", "🐦‍🔥", "🙂‍↔️", "🧑‍🧑‍🧒", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "👩🏽‍❤️‍💋‍👨🏿", "🤌", "🥲", "🫠"]


def emoji():
    out = []
    for _ in range(R.randint(1, 8)):
        r = R.random()
        if r < 0.5:
            out.append(R.choice(EMOJI))
        elif r < 0.8:
            out.append(R.choice(WORDS))
        else:
            out.append(R.choice([" ", "", "!", "\n", "  ", "..."]))
        if R.random() < 0.5:
            out.append(" ")
    return "".join(out)


def digits():
    r = R.randint(0, 9)
    if r == 0:
        return str(R.randint(0, 10 ** R.randint(1, 40)))
    if r == 1:
        return "%d.%0*d" % (R.randint(0, 99999), R.randint(1, 9), R.randint(0, 10 ** 8))
    if r == 2:
        return "%s,%03d,%03d" % (R.randint(1, 999), R.randint(0, 999), R.randint(0, 999))
    if r == 3:
        return "Call +1 (%03d) %03d-%04d or %d%d%d" % (R.randint(0, 999), R.randint(0, 999), R.randint(0, 9999),
                                                       R.randint(0, 9), R.randint(0, 99), R.randint(0, 999))
    if r == 4:
        return "".join(R.choice("٠١٢٣٤٥٦٧٨٩۰۱۲۳४५६๑๒๓１２３０") for _ in range(R.randint(1, 12)))
    if r == 5:
        return R.choice(["x²+y³=z¹⁰", "½ + ¼ = ¾", "Ⅻ Ⅳ ⅷ", "①②③⑳", "𝟘𝟙𝟚𝟛", "₀₁₂", "〇一二三"])
    if r == 6:
        return "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (R.randint(1900, 2100), R.randint(1, 12), R.randint(1, 28),
                                                        R.randint(0, 23), R.randint(0, 59), R.randint(0, 59),
                                                        R.randint(0, 999))
    if r == 7:
        return "v%d.%d.%d-rc%d 0x%x 0b%s 1e-%d 3.14159e+%d" % (R.randint(0, 20), R.randint(0, 99), R.randint(0, 999),
                                                              R.randint(1, 9), R.getrandbits(64),
                                                              bin(R.getrandbits(16))[2:], R.randint(1, 300),
                                                              R.randint(1, 300))
    if r == 8:
        return "1" * R.randint(1, 100)
    return " ".join(str(R.randint(0, 10 ** R.randint(1, 7))) for _ in range(R.randint(2, 12)))


SPACES = [" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r", " \n", "\n ", " \t \n",
          "\u00a0", "\u2003", "\u3000", "\u0085", "\ufeff", "\u200b", "\u2028", "\u2029", "\u180e", "\x0b", "\x0c",
          "\u202f", "\u205f", "\u1680", "\u200a"]


def whitespace():
    r = R.random()
    if r < 0.3:
        return "".join(R.choice(SPACES) for _ in range(R.randint(1, 12)))
    if r < 0.7:
        return R.choice(SPACES).join(R.choice(WORDS + ["?", "!", "42", "🚀", "中文"]) for _ in range(R.randint(2, 9)))
    if r < 0.85:
        return R.choice(["", "x", "\n"]) + " " * R.randint(1, 300) + R.choice(["", "x", "\n", "!"])
    return "\n".join(R.choice(["", " ", "\t", "\t" + sentence(3), "    " + sentence(2)])
                     for _ in range(R.randint(2, 8)))


SPECIAL = ["<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>", "<|EOT|>",
           "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "<｜tool▁calls▁begin｜>", "<｜tool▁sep｜>",
           "<｜tool▁output▁end｜>", "<｜place▁holder▁no▁7｜>", "<｜place▁holder▁no▁42｜>", "<｜▁pad▁｜>"]
NEAR = ["<｜User", "｜User｜>", "<|User|>", "<｜user｜>", "< ｜User｜>", "<｜place▁holder▁no▁9999｜>", "<|EOT|",
        "<think>", "</think>", "<｜｜>", "<<", "<｜"]


def special():
    out = []
    for _ in range(R.randint(1, 6)):
        r = R.random()
        if r < 0.45:
            out.append(R.choice(SPECIAL))
        elif r < 0.6:
            out.append(R.choice(NEAR))
        else:
            out.append(R.choice(["", " ", "\n", sentence(R.randint(1, 5)), R.choice(WORDS)]))
    return "".join(out)


RTL = ["مرحبا بالعالم", "هذا اختبار للمحلل اللغوي.", "السلام عليكم ورحمة الله", "العدد ١٢٣ والعدد 456",
       "שלום עולם", "זהו מבחן של המפרק.", "עברית עם ניקוד: שָׁלוֹם", "سلام دنیا، حال شما چطور است؟",
       "\u200fمرحبا\u200e hello", "\u202bRTL embed\u202c", "ئۇيغۇرچە", "ܫܠܡܐ"]


def rtl():
    parts = [R.choice(RTL) for _ in range(R.randint(1, 3))]
    if R.random() < 0.4:
        parts.insert(R.randint(0, len(parts)), R.choice(WORDS) + " " + str(R.randint(0, 999)))
    return R.choice([" ", "", "\n", " - "]).join(parts)


COMBINING = ["e\u0301", "a\u0300\u0316", "n\u0303", "o\u0308\u0304", "ệ", "Việt Nam", "Zürich", "naïve café",
             "क्षत्रिय हिन्दी", "ภาษาไทย", "தமிழ்", "ཀླད་ཀོར", "Ω\u0342", "Z\u0351\u0352\u0353\u0354\u0355",
             "\u0301\u0302 leading marks", "ﬁ ﬂ ß ẞ ǅ", "İstanbul ı", "ᄀ\u1161\u11a8", "ช่าง"]


def combining():
    s = " ".join(R.choice(COMBINING) for _ in range(R.randint(1, 5)))
    if R.random() < 0.3:  # zalgo
        s = "".join(ch + "".join(chr(R.randint(0x300, 0x36F)) for _ in range(R.randint(0, 4))) for ch in s)
    return s


def odd():
    """Characters that stress property tables: controls, format, private use,
    unassigned, noncharacters, astral planes."""
    pools = [(0x00, 0x1F), (0x7F, 0x9F), (0x200B, 0x200F), (0x2060, 0x206F), (0xE000, 0xE0FF), (0xFFF0, 0xFFFD),
             (0x10FFF0, 0x10FFFF), (0xF0000, 0xF0010), (0x1D400, 0x1D4FF), (0x0378, 0x0379), (0x2FE0, 0x2FEF),
             (0x1F000, 0x1FAFF), (0x0600, 0x06FF), (0x0E00, 0x0E7F), (0x2000, 0x206F), (0x20A0, 0x20C0),
             (0xFF00, 0xFFEF), (0x3000, 0x303F), (0xE0000, 0xE007F)]
    out = []
    for _ in range(R.randint(1, 20)):
        if R.random() < 0.3:
            out.append(R.choice(WORDS + [" ", "  ", "\n", ".", "'"]))
        else:
            lo, hi = R.choice(pools)
            out.append(chr(R.randint(lo, hi)))
    return "".join(out)


def long_line():
    r = R.randint(0, 5)
    if r == 0:
        return "a" * R.randint(65, 400)
    if r == 1:
        return "".join(R.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
                       for _ in range(R.randint(100, 1000))) + "=="
    if r == 2:
        return "-" * R.randint(65, 300) + "\n" + "=" * R.randint(65, 300)
    if r == 3:
        return " ".join(sentence() for _ in range(R.randint(20, 60)))
    if r == 4:
        return "%E4%B8%AD" * R.randint(10, 60)
    return "\n" * R.randint(65, 200) + "end"


def mixed():
    gens = [prose, code, cjk, emoji, digits, whitespace, special, rtl, combining, odd]
    return R.choice(["", " ", "\n", "\t"]).join(R.choice(gens)() for _ in range(R.randint(2, 5)))


FIXED = ["Where is New York?", "", " ", "  ", "\n", "\t", "Hello, world!", "hello world", " hello", "hello ",
         "I'm here, aren't you? We'll see; they've gone.", "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
         "<｜begin▁of▁sentence｜>Hello<｜end▁of▁sentence｜>", "<｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜>",
         "<｜User｜><｜User｜>", "1234567890", "12345 678 9", "a1b22c333d4444", "3.141592653589793",
         "😀😀😀", "👨‍👩‍👧‍👦 family", "中文English混合123", "日本語とEnglish", "한국어 English",
         "\u00a0\u00a0x", "x\u3000y", "x\u0085y", "\ufeffBOM", "a\u200bb", "tab\tseparated\tvalues",
         "trailing spaces   ", "   leading spaces", "line1\nline2\r\nline3\rline4", "a  \n  b", "!!!???...",
         "'''", "\"\"\"", "```", "\\n\\t", "\x00nul\x00", "\x01\x02\x03", "é", "e\u0301", "Ω", "ﷺ", "🫨"]

CATS = [(prose, 320), (code, 300), (cjk, 200), (emoji, 150), (digits, 180), (whitespace, 200), (special, 160),
        (rtl, 100), (combining, 100), (odd, 120), (long_line, 60), (mixed, 300)]


def corpus():
    lines = list(FIXED)
    for gen, count in CATS:
        lines.extend(gen() for _ in range(count))
    return lines


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--bench":
        target = float(sys.argv[2]) * 1e6
        base = corpus()
        out, size = [], 0
        while size < target:  # fresh random lines, so the word cache sees realistic reuse
            for gen, count in CATS:
                for _ in range(count):
                    s = gen()
                    out.append(s)
                    size += len(s.encode("utf-8"))
        lines = base + out
    else:
        lines = corpus()
    w = sys.stdout
    for s in lines:
        w.write(json.dumps(s, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
