"""``python -m switcher --config /etc/switcher/config.yaml``"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from .config import ConfigError, load_config, read_admin_token


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="switcher", description=__doc__)
    parser.add_argument("--config", required=True, help="path of the YAML config (see switcher/README.md)")
    parser.add_argument("--check", action="store_true", help="validate the config and exit")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        read_admin_token(config)
    except ConfigError as exc:
        print(f"switcher: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"switcher: config OK ({len(config.models)} models)")
        return 0
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from .app import ListenError, serve  # aiohttp is imported only when serving

    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(config))
    except ListenError as exc:
        print(f"switcher: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
