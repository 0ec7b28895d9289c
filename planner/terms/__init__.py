"""The terms of :func:`planner.core.evaluate`, one function per term.

Each function takes the problem's :class:`~planner.inputs.Inputs` (floats, arrays or
symbols), the software :class:`~planner.inputs.Constants` and the values of the terms
it builds on, and returns plain numbers: the same code runs on one candidate, on arrays
of candidates and under the tracer (:mod:`planner.trace`, :mod:`planner.levels`).

* :mod:`.shapes`: rates of the hardware and shapes of one micro-batch on one GPU;
* :mod:`.compute`: GEMM, attention and memory-bound kernel time of a layer and the head;
* :mod:`.layer_comm`: tensor-, context- and expert-parallel communication per layer;
* :mod:`.states`: parameters per stage, weights/gradients/optimizer memory, optimizer step;
* :mod:`.schedule`: a micro-batch's forward and backward, recomputation, pipeline bubble
  and stage-to-stage sends;
* :mod:`.data_parallel`: gradient reduction and parameter gathering over data parallelism;
* :mod:`.activations`: activation memory and the peak memory of the worse end stage;
* :mod:`.run`: FLOPs, utilisation, energy, checkpoints and failures over a run.
"""
