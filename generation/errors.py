"""Errors a caller of the engine must tell its user about."""


class GenerationError(Exception):
    """Base class: the request could not be served."""


class QueueFull(GenerationError):
    """The global queue holds ``MAX_QUEUE`` requests already."""


class UserQueueFull(GenerationError):
    """This user already has ``MAX_PENDING_PER_USER`` requests waiting."""


class ModelsUnavailable(GenerationError):
    """The models failed to load; nothing can be drawn until a reload succeeds."""


class OutOfMemory(GenerationError):
    """Even alone the request does not fit in GPU memory: a smaller size is needed."""


class JobCancelled(GenerationError):
    """The user cancelled the request while it waited."""


class BatchAborted(GenerationError):
    """The engine closed while the batch was drawn: it stopped at the next decoder step."""
