"""Put this checkout's `cxr14` package first on sys.path, so the rule scripts import it in any
environment they run in (a rule's conda env holds only the libraries, not cxr14 itself)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
