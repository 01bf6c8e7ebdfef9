"""The base class of every engine error, its registry, and its wire form.

web-llm sends errors across postMessage as "Name: message" strings, so the class is lost on
the main thread. Here each error serialises to ``{"name", "message", "fields"}`` and
``error_from_dict`` rebuilds the same class on the other side (the JS proxy does the same with
classes of the same names). Every subclass registers itself by name when it is defined.
"""

from __future__ import annotations

from typing import Any, ClassVar

_REGISTRY: dict[str, type[PyWorkerError]] = {}


class PyWorkerError(Exception):
    """Base of all engine errors. ``fields`` holds the structured details of the error.

    Each class declares its fields once, so every raise site (Python here, JS through the
    generated js_glue/errors.js) passes the same keys: ``fields_`` must all be given,
    ``optional_`` may be. A class that declares neither has its parent's.
    """

    fields_: ClassVar[tuple[str, ...]] = ()
    optional_: ClassVar[tuple[str, ...]] = ()

    def __init__(self, message: str, **fields: Any) -> None:
        check_fields(type(self), fields)
        super().__init__(message)
        self.message = message
        self.fields = fields

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "fields_" in cls.__dict__ or "optional_" in cls.__dict__:
            cls.fields_ = cls.__dict__.get("fields_", ())
            cls.optional_ = cls.__dict__.get("optional_", ())
        _REGISTRY[cls.__name__] = cls

    def to_dict(self) -> dict[str, Any]:
        """The wire form: class name, message and a copy of the fields."""
        return {"name": type(self).__name__, "message": self.message, "fields": dict(self.fields)}

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's default pickling calls cls(*args) and would drop the fields.
        return (error_from_dict, (self.to_dict(),))


def check_fields(cls: type[PyWorkerError], fields: dict[str, Any]) -> None:
    """Refuse a field ``cls`` does not declare, or a missing required one (a raise site's bug)."""
    unknown = [k for k in fields if k not in cls.fields_ and k not in cls.optional_]
    missing = [k for k in cls.fields_ if k not in fields]
    if unknown or missing:
        raise TypeError(
            f"{cls.__name__} fields: undeclared {unknown}, missing {missing}"
            f" (declared: {list(cls.fields_)}, optional: {list(cls.optional_)})"
        )


def error_to_dict(exc: BaseException) -> dict[str, Any]:
    """Serialise any exception; non-engine ones keep their Python class name."""
    if isinstance(exc, PyWorkerError):
        return exc.to_dict()
    return {"name": type(exc).__name__, "message": str(exc), "fields": {}}


def error_from_dict(data: dict[str, Any]) -> PyWorkerError:
    """Rebuild an error from ``error_to_dict`` output; unknown names become ``RemoteError``."""
    name = str(data.get("name", "Error"))
    message = str(data.get("message", ""))
    fields = dict(data.get("fields") or {})
    cls = _REGISTRY.get(name)
    if cls is None:
        cls = RemoteError
        fields["remote_name"] = name
    # Bypass the subclass constructor: fields may hold any key, "message" included.
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.message = message
    err.fields = fields
    return err


def error_names() -> list[str]:
    """Every registered class name (the JS proxy must define a class for each)."""
    return sorted(_REGISTRY)


class RemoteError(PyWorkerError):
    """An error from the other side whose class is not known here (its name is in fields)."""

    optional_ = ("remote_name",)
