"""Options several subcommands share."""


def add_plugin_option(parser) -> None:
    """``--plugin FILE_OR_MODULE`` (repeatable): the user's own components."""
    parser.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                        help="a Python file or module registering your own components (repeatable); "
                             "recorded in the run folder's config")


def add_changed_inputs_option(parser) -> None:
    """``--allow-changed-inputs``, for the commands that open a trained run folder (and so check
    its recorded inputs, :mod:`pyrovae.runs.inputs`)."""
    parser.add_argument("--allow-changed-inputs", action="store_true",
                        help="open a run even if a plugin or data file changed since it was trained (see its inputs.json)")


def add_device_option(parser) -> None:
    """``--device``, with the default training has: ``auto`` (a GPU where there is one)."""
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default auto: a GPU if there "
                                                         "is one, as for training)")


def add_model_output_options(parser, what: str) -> None:
    """The run folder and options of the commands that use a trained model and write ``what``."""
    parser.add_argument("run", help="a run folder written by 'pyrovae train'")
    parser.add_argument("--out", help=f"folder for {what} (default RUN/outputs)")
    add_device_option(parser)
    add_plugin_option(parser)
    add_changed_inputs_option(parser)
