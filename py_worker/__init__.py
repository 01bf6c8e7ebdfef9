"""py_worker: an LLM engine in Python for the browser (Pyodide in a Web Worker over WebGPU)."""

from .create import CreateMLCEngine
from .engine import MLCEngine

__all__ = ["CreateMLCEngine", "MLCEngine"]
__version__ = "0.1.0"
