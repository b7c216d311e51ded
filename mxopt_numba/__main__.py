"""Command line entry point: ``python -m mxopt_numba COMMAND [options]``.

Commands:

* ``train``: train a small NumPy MLP on scikit-learn's bundled digits with the Trainer;
* ``bench``: time optimizer steps against a copy kernel with the same memory traffic.

``python -m mxopt_numba COMMAND --help`` lists the options of a command.
"""
import argparse
import importlib
import sys

#: command -> (module, one-line help)
COMMANDS = {
    "train": ("cli_train", "train a small MLP on scikit-learn's digits with the Trainer"),
    "bench": ("cli_bench", "time optimizer steps against a same-access-pattern copy kernel"),
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m mxopt_numba",
        description="MXNet's optimization API on Numba kernels: example training and benchmarks.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module("%s.%s" % (__package__ or "mxopt_numba", module_name))
        p = sub.add_parser(name, help=help_text, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_main=module.main)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return args._main(args) or 0


if __name__ == "__main__":
    sys.exit(main())
