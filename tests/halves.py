"""The suite as two pytest processes side by side, one per core: the SQLite half (with the
tests that need no database) and the PostgreSQL half. Each half's output is printed whole
once both are done; the exit status is the worse of the two. Arguments go to both."""

import subprocess
import sys
import tempfile
from pathlib import Path

# Every test runs in exactly one half: those whose id names PostgreSQL, with the command
# line's tests that need no database (servers in subprocesses, about a minute, which
# would otherwise sit beside the fuzzer in the longer half), and the rest.
POSTGRESQL = "postgresql or (test_cli and not sqlite)"
HALVES = {"sqlite": f"not ({POSTGRESQL})", "postgresql": POSTGRESQL}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="dorsi-tests-") as scratch:
        runs = {}
        for name, selection in HALVES.items():
            output = (Path(scratch) / f"{name}.log").open("wb")
            command = [sys.executable, "-m", "pytest", "-k", selection, "-p", "no:cacheprovider"]
            command += ["--basetemp", str(Path(scratch) / name), *sys.argv[1:]]
            runs[name] = (
                subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT),
                output,
            )
        codes = {}
        for name, (run, output) in runs.items():
            codes[name] = run.wait()
            output.close()
        for name in runs:
            sys.stdout.write(f"\n===== the {name} half =====\n")
            sys.stdout.write((Path(scratch) / f"{name}.log").read_text(errors="replace"))
        sys.stdout.flush()
    return max(codes.values())


if __name__ == "__main__":
    sys.exit(main())
