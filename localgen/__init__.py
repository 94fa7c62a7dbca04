"""localgen: labeled synthetic training text from a local LLM, fully offline."""

__version__ = "0.1.0"
