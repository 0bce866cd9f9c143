"""The zoo's input errors: every bad input is reported with the input's name and what was expected."""


class ZooInputError(ValueError):
    """An input (file, waveform, video, checkpoint, argument) is not what the zoo expects.

    The message always names the input (a path or an argument name) and says what was expected,
    so a user can fix it without reading the code.
    """
