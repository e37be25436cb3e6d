"""Put tiktoken's BPE files where Convo points tiktoken, without network access at run time.

tiktoken fetches these files on first use. The `litellm` wheel on PyPI carries them as data files
named by tiktoken's cache key, so we download that one wheel (no dependencies), copy the files out,
and check them against the sha256 sums that tiktoken itself expects.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL = "litellm==1.110.2"
# cache key (sha1 of the download URL) -> (encoding, sha256 expected by tiktoken_ext/openai_public.py)
FILES = {
    "9b5ad71b2ce5302211f9c61530b329a4922fc6a4": (
        "cl100k_base", "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"),
    "fb374d419588a4632f3f557e76b4b70aebbca790": (
        "o200k_base", "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"),
    "ec7223a39ce59f226a68acc30dc1af2788490e15": (
        "p50k_base", "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069"),
}


def main() -> None:
    target = Path(sys.argv[1])
    if all((target / key).exists() for key in FILES):
        return
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, WHEEL], check=True
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            for key, (name, sha256) in FILES.items():
                data = archive.read(f"litellm/litellm_core_utils/tokenizers/{key}")
                if hashlib.sha256(data).hexdigest() != sha256:
                    sys.exit(f"{name}: checksum mismatch, refusing to install it")
                (target / key).write_bytes(data)
    print(f"tiktoken files installed in {target}")


if __name__ == "__main__":
    main()
