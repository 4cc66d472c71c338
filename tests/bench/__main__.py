"""make bench: every benchmark, each next to a ceiling measured in the same run."""

import asyncio
import sys
import tempfile
from pathlib import Path

from tests.bench import ingest


async def main() -> None:
    log_dir = Path(tempfile.mkdtemp(prefix="touchline-bench-"))
    lines = await ingest.run(log_dir)
    print("\n".join(lines))
    print(f"(service logs: {log_dir})", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
