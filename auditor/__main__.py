"""``python -m auditor``: the same as ``plc-audit``."""

from auditor.cli import main

if __name__ == "__main__":
    main()
