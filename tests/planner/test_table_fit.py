"""planner.table_fit (the CLI's tables at any width) and planner.search_legend (the codes
under `plan search` and the rows that stand for several equivalent layouts)."""

from __future__ import annotations

from planner.search_legend import collapse, legend
from planner.table_fit import Column, compact_count, count_cell, cut, fit_table


def test_names_keep_their_distinguishing_tail() -> None:
    assert cut("faulty2", 6, "middle") == "fa…ty2"
    assert cut("faulty", 6, "middle") == "faulty"
    assert cut("rank 1 exited with code 1", 12, "end") == "rank 1 exit…"
    assert cut("anything", 3, "none") == "anything"


def test_counts_abbreviate_with_three_significant_digits() -> None:
    assert compact_count(14336) == "14.3k" and compact_count(6.74e9) == "6.74B"
    assert count_cell(128256) == ("128256", "128k")


COLUMNS = [
    Column("name", shrink="middle", min_width=10),
    Column("vocab", justify="right", priority=2),
    Column("state"),
    Column("why", shrink="end", min_width=8, priority=1),
]
ROWS: list[list[str | tuple[str, ...]]] = [
    ["llama3-8b-pretrain", count_cell(128256), "FAILED", "rank 1 exited with code 1"],
    ["llama3-8b-pretrain2", count_cell(32000), "COMPLETED", ""],
]


def test_a_wide_terminal_shows_everything_whole() -> None:
    fitted = fit_table(COLUMNS, ROWS, 200)
    assert fitted.dropped == [] and fitted.rows[0] == [
        "llama3-8b-pretrain", "128256", "FAILED", "rank 1 exited with code 1"
    ]  # fmt: skip


def test_narrowing_abbreviates_then_shrinks_then_drops_by_priority() -> None:
    fitted = fit_table(COLUMNS, ROWS, 60)
    assert fitted.dropped == [] and fitted.rows[0][1] == "128k" and fitted.width <= 60
    narrow = fit_table(COLUMNS, ROWS, 36)
    assert narrow.dropped == ["vocab"] and narrow.width <= 36
    assert [c.header for c in narrow.columns] == ["name", "state", "why"]
    # The tails tell the two names apart; headers are never cut.
    assert narrow.rows[0][0] != narrow.rows[1][0] and narrow.rows[1][0].endswith("2")
    tightest = fit_table(COLUMNS, ROWS, 10)
    assert [c.header for c in tightest.columns] == ["name", "state"]
    assert all(w >= len(c.header) for c, w in zip(tightest.columns, tightest.widths, strict=True))


def test_legend_names_only_the_codes_shown() -> None:
    text = legend(["tp8 pp4 cp1 dp4 hsdp/16 mb1 v5 sp sel-rc", "tp8 pp4 cp1 dp4 zero1 mb2"])
    assert "v5: 5 virtual stages per pipeline rank (interleave)" in text
    assert "hsdp/16: HSDP, shards of 16 GPUs" in text and "sp: sequence parallelism" in text
    assert "mbN: N sequences per micro-batch" in text  # two values: the general form
    assert "sel-rc: selective recompute" in text and "full-rc" not in text
    assert "offload" not in text and "×N" not in text
    assert "×N: N layouts" in legend(["tp1 pp1 cp1 dp8 zero2 mb1"], collapsed=True)


def test_layouts_predicting_the_same_collapse_into_one_row() -> None:
    from planner import search
    from planner.catalog import get_model
    from planner.specs import ClusterSpec, TrainingSpec

    model = get_model("llama3-8b")
    cluster = ClusterSpec(gpu="H100-SXM-80GB", num_gpus=8, gpus_per_node=8)
    training = TrainingSpec(seq_len=4096, global_batch_seqs=256, total_tokens=1e11)
    result = search(model, cluster, training, top_k=4)
    best, second = result.ranked[0], result.ranked[1]
    twin = best.model_copy(update={"layout": best.layout.model_copy(update={"micro_batch": 7})})
    rows = collapse([best, twin, second], ["", "same", "slower"])
    assert [(r.rank, r.count) for r in rows] == [(1, 2), (3, 1)]
    assert rows[1].why == "slower"
    assert len(collapse(result.ranked, result.why_not)) <= len(result.ranked)
