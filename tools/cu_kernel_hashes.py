#!/usr/bin/env python3
"""cu_kernel_hashes.py — per-kernel machine-code hashes of CUDA objects or binaries, to show without a GPU
(and without cuobjdump, which the dev container lacks) that a change left a kernel's SASS unchanged:

    tools/cu_kernel_hashes.py build/libmoeserve.a.p/kernels_cuda_mla_latent_wgmma.cu.o > before.txt
    (edit, ninja -C build)
    tools/cu_kernel_hashes.py build/libmoeserve.a.p/kernels_cuda_mla_latent_wgmma.cu.o | diff before.txt -

Each line: cubin index, section (.text.<mangled kernel>), size in bytes, sha1 prefix. The .nv_fatbin section
is taken with objcopy; every embedded ELF cubin (sm_90a here; PTX entries are not ELF) is read with readelf.
Uncompressed fatbins only (nvcc's default here). Remember that ninja does not rebuild a .cu for a header
change in this meson version (scripts/gpu-bundle.sh handles it): delete the object first."""
import hashlib
import os
import re
import subprocess
import sys
import tempfile


def sections(cubin_path, data):
    out = subprocess.run(["readelf", "-S", "-W", cubin_path], capture_output=True, text=True).stdout
    for line in out.splitlines():
        m = re.search(r"\]\s+(\.text\.\S+)\s+PROGBITS\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)", line)
        if m:
            off, size = int(m.group(2), 16), int(m.group(3), 16)
            yield m.group(1), size, hashlib.sha1(data[off:off + size]).hexdigest()[:16]


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as tmp:
        for obj in sys.argv[1:]:
            fb = os.path.join(tmp, "fatbin")
            r = subprocess.run(["objcopy", "-O", "binary", "--only-section=.nv_fatbin", obj, fb])
            if r.returncode or not os.path.exists(fb):
                sys.exit("cu_kernel_hashes: %s: no .nv_fatbin section" % obj)
            d = open(fb, "rb").read()
            starts = [m.start() for m in re.finditer(b"\x7fELF", d)]
            if not starts:
                sys.exit("cu_kernel_hashes: %s: no ELF cubin in the fatbin (compressed?)" % obj)
            for k, st in enumerate(starts):
                cub = os.path.join(tmp, "c%d.cubin" % k)
                open(cub, "wb").write(d[st:])
                for name, size, h in sections(cub, d[st:]):
                    print(k, name, size, h)


if __name__ == "__main__":
    main()
