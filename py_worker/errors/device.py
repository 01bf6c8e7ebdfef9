"""Errors of the WebGPU device: missing, lacking a feature the model needs, or lost."""

from __future__ import annotations

from py_worker.errors.families import DeviceError


class WebGPUNotAvailableError(DeviceError):
    """The environment has no WebGPU (navigator.gpu is missing)."""


class WebGPUNotFoundError(DeviceError):
    """WebGPU exists but no adapter or device could be obtained."""


class FeatureSupportError(DeviceError):
    """The model needs a WebGPU feature the adapter lacks."""

    fields_ = ("feature",)
    optional_ = ("model_id",)


class ShaderF16SupportError(FeatureSupportError):
    """The model needs the shader-f16 feature, which the adapter lacks."""


class DeviceLostError(DeviceError):
    """The WebGPU device was lost (often out of memory)."""

    optional_ = ("reason",)
