"""iniset/iniget for the devstack stub (devstack's own are awk scripts)."""
import configparser
import os
import sys


def main() -> int:
    op, path, section, option = sys.argv[1:5]
    parser = configparser.RawConfigParser(interpolation=None, default_section="__none__")
    parser.optionxform = str
    if os.path.exists(path):
        parser.read(path)
    if op == "get":
        if parser.has_option(section, option):
            print(parser.get(section, option))
        return 0
    if not parser.has_section(section):
        parser.add_section(section)
    parser.set(section, option, sys.argv[5] if len(sys.argv) > 5 else "")
    with open(path, "w") as f:
        parser.write(f)
    return 0


sys.exit(main())
