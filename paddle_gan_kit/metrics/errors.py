"""The exception type for mistakes a user of the metrics can make and fix."""
from paddle_gan_kit.errors import GanKitError


class MetricsError(GanKitError):
    """A metric cannot be computed as asked; the message is one line that says how to fix it.

    Programming errors (wrong types passed between our own functions) stay ordinary exceptions
    with tracebacks; this type is for what a user controls: files, arrays, settings.
    """
