"""The NumPy reference backend of the kernel ABI (host CPython only).

NumPy and `tokenizers` do not exist inside Pyodide, so nothing else in ``py_worker`` imports
this package; tests and host tools use it as the golden model for the WebGPU kernels.
"""

from py_worker.reference.backend import ReferenceKernels

__all__ = ["ReferenceKernels"]
