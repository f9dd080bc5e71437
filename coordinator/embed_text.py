"""embed_text.py IN OUT NAME — write OUT, a C file defining
`const char NAME[]` (the bytes of IN) and `const unsigned long NAME_len`,
so the binary serves IN (the dashboard page) without reading a file."""
import sys

src, dst, name = sys.argv[1:4]
data = open(src, "rb").read()
with open(dst, "w") as f:
    f.write("/* generated from %s by coordinator/embed_text.py; do not edit */\n" % src.rsplit("/", 1)[-1])
    f.write("const char %s[] = {\n" % name)
    for i in range(0, len(data), 16):
        f.write("  " + ", ".join(str(b) for b in data[i:i + 16]) + ",\n")
    f.write("  0};\nconst unsigned long %s_len = %d;\n" % (name, len(data)))
