"""Safety margins the planner keeps by default (a light module: the CLI's option
defaults import it without loading numpy)."""

from __future__ import annotations

DEFAULT_MEMORY_HEADROOM = 0.05
"""Share of GPU memory the search leaves free unless told otherwise. The memory model
counts tensors, the CUDA context and communicator buffers, not the caching allocator's
fragmentation, which makes a run that "fits" to the last GiB run out of memory: ZeRO
(Rajbhandari et al. 2020, Sec. 3.2 and 6.3) reports training running out of memory with
memory still free because it is fragmented, and PyTorch's allocator notes
(docs.pytorch.org, "CUDA memory management", expandable_segments) describe the same
waste. 5 % (4 GiB of an 80 GiB H100) is a margin, not a measurement: ``--headroom 0``
uses every byte, a larger value suits long sequences and varying shapes."""
