"""Print one instruction of the Dockerfile as a shell command, so CI runs the image's own
install and start steps (no Docker engine on CI machines).

    python3 .ci/dockerfile_step.py RUN 'pip install'   the RUN instruction containing the text
    python3 .ci/dockerfile_step.py CMD                 the start command (exec form, joined)
"""

import json
import shlex
import sys
from pathlib import Path


def instructions(path: Path) -> list[tuple[str, str]]:
    """(keyword, arguments) of each instruction, continuation lines joined."""
    found: list[tuple[str, str]] = []
    current = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        current += " " + stripped.removesuffix("\\").strip() if current else stripped.removesuffix("\\").strip()
        if not stripped.endswith("\\"):
            keyword, _, args = current.partition(" ")
            found.append((keyword.upper(), args.strip()))
            current = ""
    return found


def main() -> int:
    keyword, text = sys.argv[1].upper(), (sys.argv[2] if len(sys.argv) > 2 else "")
    matches = [args for kw, args in instructions(Path(__file__).parent.parent / "Dockerfile") if kw == keyword]
    matches = [args for args in matches if text in args]
    if len(matches) != 1:
        print(f"expected one {keyword} with {text!r} in the Dockerfile, found {len(matches)}", file=sys.stderr)
        return 1
    args = matches[0]
    print(shlex.join(json.loads(args)) if args.startswith("[") else args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
