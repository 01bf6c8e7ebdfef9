"""py_worker: an LLM engine in Python for the browser (Pyodide in a Web Worker over WebGPU)."""

from .engine import MLCEngine

__all__ = ["MLCEngine"]
__version__ = "0.1.0"
