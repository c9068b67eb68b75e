"""The one exception type the command line turns into a one-line message and a non-zero exit."""


class PipelineError(Exception):
    """A problem the user can fix: bad input, a model that does not fit, an accuracy drop over the limit.

    The message is one line that names the cause and, where there is one, the next step.
    """


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with one line saying what was kept and what was not (the command line prints it, exit code 130).

    A KeyboardInterrupt still, so code that stops cleanly on Ctrl-C (an emulator, a study) keeps doing so.
    """
