"""Print the runtime requirements of the project, one per line, from pyproject.toml.

    python docker/requirements.py [pyproject.toml] [--extra NAME ...]

[project.dependencies] plus the named optional extras. The wheelhouse script and the image
build both use it, so the image installs exactly the declared runtime dependencies, pinned
by constraints.txt, without the project source (that comes in a later, cheaper layer).
Standard library only (tomllib), so it runs in the bare base image.
"""

from __future__ import annotations

import sys
import tomllib


def main(argv: list[str]) -> int:
    path = "pyproject.toml"
    extras: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--extra":
            extras.append(next(args))
        else:
            path = arg
    with open(path, "rb") as fh:
        project = tomllib.load(fh)["project"]
    requirements = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in extras:
        if extra not in optional:
            print(f"requirements.py: no extra {extra!r} in {path}", file=sys.stderr)
            return 2
        requirements.extend(optional[extra])
    print("\n".join(requirements))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
