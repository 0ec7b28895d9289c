"""How a published QLoRA run's implementation shows in its memory: bitsandbytes before
0.43.2 holding the 4-bit matmuls' inputs (TrainingSpec.qlora_input_copies) and torchao
0.1's whole-tensor NF4 quantisation at model init (TrainingSpec.nf4_init_unchunked), each
against hand-computed bytes."""

from __future__ import annotations

import pytest

import planner
from planner.finetune import UNCHUNKED_NF4_INIT_BYTES
from planner.units import GIB

LLAMA2_7B = planner.get_model("llama2-7b")
# Llama 2 7B: h 4096, 32 heads of 128 (MHA), SwiGLU ffn 11008, 32 layers.
H, FFN, LAYERS = 4096, 11008, 32


def _estimate(micro_batch: int = 2, recompute: str = "none", **kw: object) -> planner.Estimate:
    training = planner.TrainingSpec(
        seq_len=512, global_batch_seqs=micro_batch, total_tokens=1e9, finetune="qlora",
        lora_rank=32, lora_targets="q,v", base_format="nf4", precision="bf16-pure", **kw,
    )  # fmt: skip
    cluster = planner.ClusterSpec(gpu="H100", num_gpus=1)
    layout = planner.Layout(dp=1, micro_batch=micro_batch, recompute=recompute)
    return planner.estimate(LLAMA2_7B, cluster, training, layout)


def test_held_inputs_are_four_tensors_per_layer_and_micro_batch() -> None:
    base = _estimate()
    # Attention input, attention output, MLP input (h each) and the down projection's
    # input (ffn), BF16, for 2 x 512 tokens in each of 32 layers, per held micro-batch.
    per_copy = 2 * (2 * 512) * (H + H + H + FFN) * LAYERS
    assert per_copy == 1_526_726_656  # 47.7 MB per layer: bitsandbytes 0.42's save list
    for copies in (1, 2):
        held = _estimate(qlora_input_copies=copies)
        grown = (held.memory_gib.activations - base.memory_gib.activations) * GIB
        assert grown == pytest.approx(copies * per_copy, rel=1e-9)
        assert held.memory_gib.params == base.memory_gib.params


def test_held_inputs_under_full_recompute_are_one_layers_workspace() -> None:
    base = _estimate(recompute="full")
    held = _estimate(recompute="full", qlora_input_copies=1)
    # The checkpoint keeps only each layer's input; the recomputed layer holds the rest.
    assert held.memory_gib.activations == pytest.approx(base.memory_gib.activations, rel=1e-12)
    one_layer = 2 * (2 * 512) * (3 * H + FFN)
    grown = (held.memory_gib.other - base.memory_gib.other) * GIB
    assert one_layer <= grown <= 1.1 * one_layer


def test_unchunked_nf4_init_peak_wins_over_a_small_training_step() -> None:
    base = _estimate(micro_batch=1, recompute="full")
    init = _estimate(micro_batch=1, recompute="full", nf4_init_unchunked=True)
    runtime = planner.get_gpu("H100").runtime_reserved_gib
    # The largest block matrix, h x ffn, quantised in one pass beside the NF4 model.
    transient = UNCHUNKED_NF4_INIT_BYTES * H * FFN
    assert init.memory_gib.total == pytest.approx(
        runtime + base.memory_gib.params + transient / GIB, rel=1e-9
    )
    assert init.memory_gib.total > base.memory_gib.total
    # The excess is a transient, shown in "other"; the states are unchanged.
    assert init.memory_gib.params == base.memory_gib.params
    assert init.memory_gib.other - base.memory_gib.other == pytest.approx(
        init.memory_gib.total - base.memory_gib.total, rel=1e-9
    )


def test_unchunked_nf4_init_changes_nothing_when_training_is_larger() -> None:
    base = _estimate(micro_batch=16)
    init = _estimate(micro_batch=16, nf4_init_unchunked=True)
    assert init.memory_gib.total == base.memory_gib.total
    assert base.memory_gib.total > base.memory_gib.params + UNCHUNKED_NF4_INIT_BYTES * H * FFN / GIB


def test_torchao_0_1_init_transient_by_hand() -> None:
    # 16-bit checkpoint copy, its BF16 copy, the scaled blocks, and (value - nf4) with its
    # .abs() over all 16 NF4 codes in BF16.
    assert UNCHUNKED_NF4_INIT_BYTES == 2 + 2 + 2 + 2 * 16 * 2


@pytest.mark.parametrize(
    ("finetune", "flag", "value"),
    [
        ("lora", "qlora_input_copies", 2),
        (None, "qlora_input_copies", 1),
        ("lora", "nf4_init_unchunked", True),
        ("full", "nf4_init_unchunked", True),
    ],
)
def test_qlora_run_flags_need_qlora(finetune: str | None, flag: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"training.{flag} needs finetune qlora"):
        planner.TrainingSpec(
            seq_len=512, global_batch_seqs=2, total_tokens=1e9, finetune=finetune,
            **{flag: value},
        )  # fmt: skip


def test_held_input_copies_are_bounded() -> None:
    with pytest.raises(ValueError, match="qlora_input_copies"):
        _estimate(qlora_input_copies=3)
