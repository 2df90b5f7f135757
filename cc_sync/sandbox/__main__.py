"""``python -m cc_sync.sandbox``: run the Constant Contact sandbox until Ctrl-C."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
