"""``python -m greenserv_core.cli`` is the ``greenserv`` command."""

from greenserv_core.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
