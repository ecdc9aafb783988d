"""The keys app's own errors; backends turn their SDKs' failures into these, and `keys.api.exception_handler`
turns these into the key API's answers."""


class TollgateKeyError(Exception):
    pass


class KeyAlreadyExists(TollgateKeyError):
    """The user already holds an active key on this plan."""


class KeyRevoked(TollgateKeyError):
    """The key is revoked: it cannot be rotated; a new one can be created."""


class KeyCreateFailed(TollgateKeyError):
    """The backend failed part-way; whatever it had made has been removed again."""


class BackendUnavailable(TollgateKeyError):
    """The backend could not be reached or refused the call."""
