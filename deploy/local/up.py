"""Start the application services on the running local stack, then play the demo."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from deploy.local import services, stack


def main() -> int:
    info = stack.local_info()
    services.start_all(info)
    return stack.status()


if __name__ == "__main__":
    sys.exit(main())
