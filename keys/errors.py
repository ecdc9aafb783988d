"""The keys app's own errors; backends turn their SDKs' failures into these."""


class TollgateKeyError(Exception):
    pass


class KeyAlreadyExists(TollgateKeyError):
    """The user already holds an active key on this plan."""


class KeyCreateFailed(TollgateKeyError):
    """The backend failed part-way; whatever it had made has been removed again."""


class BackendUnavailable(TollgateKeyError):
    """The backend could not be reached or refused the call."""
