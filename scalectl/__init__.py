"""scalectl: plan, launch, keep alive and watch distributed LLM training runs."""

__version__ = "0.1.0"
