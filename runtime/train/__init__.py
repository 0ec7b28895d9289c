"""The reference trainer: a decoder-only transformer trained with FSDP2, elastic and resumable.

Run it under torchrun (``torchrun --nproc-per-node=N -m runtime.train --steps 100``) or
alone (``python -m runtime.train``). Modules: ``config`` (flags and Plan), ``model``,
``data`` (corpus and deterministic batches), ``schedule``, ``distributed`` (process group,
sharding, ending a rank), ``checkpoint`` (DCP, atomic commit), ``resume`` (the trainer's
resume and save) and ``loop`` (the training loop and ``main``). Importing this package
imports no torch; the modules do.
"""
