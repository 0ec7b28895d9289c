"""contract.job: job.json has one model, one writer and one reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from contract.job import JobFile, JobFileError, read_job_file, write_job_file
from contract.jobdir import JobDir

SPEC = {"name": "demo", "backend": "local", "env": {"A": "1"}}


def test_written_as_before_and_read_back(tmp_path: Path) -> None:
    job = JobDir(tmp_path)
    write_job_file(job, JobFile(job_id="20260101-000000-abcd", created_ts=12.5, spec=SPEC))
    document = json.loads(job.job_json.read_text())
    # The bytes on disk keep the layout existing job directories have.
    assert list(document) == ["schema_version", "job_id", "created_ts", "spec"]
    assert document == {
        "schema_version": 1,
        "job_id": "20260101-000000-abcd",
        "created_ts": 12.5,
        "spec": SPEC,
    }
    back = read_job_file(tmp_path)
    assert (back.job_id, back.created_ts, back.spec) == ("20260101-000000-abcd", 12.5, SPEC)


def test_a_document_without_created_ts_reads(tmp_path: Path) -> None:
    # What the Kubernetes ConfigMap ships (rendered before the job exists).
    document = JobFile(job_id="j", spec=SPEC).to_json()
    assert "created_ts" not in document
    (tmp_path / "job.json").write_text(json.dumps(document, sort_keys=True))
    assert read_job_file(tmp_path).created_ts is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "no such file"),
        ("{not json", "not a readable JSON file"),
        ("[1]", "expected a JSON object"),
        ('{"schema_version": 2, "job_id": "j", "spec": {}}', "schema_version 2 is not 1"),
        ('{"job_id": "j", "spec": {}}', "schema_version None is not 1"),
        ('{"schema_version": 1, "spec": {}}', "job_id: Field required"),
        ('{"schema_version": 1, "job_id": "j", "spec": []}', "spec: Input should be a valid"),
        ('{"schema_version": 1, "job_id": "j", "spec": {}, "x": 1}', "x: Extra inputs"),
    ],
)
def test_bad_documents_name_the_file_and_field(
    tmp_path: Path, text: str | None, message: str
) -> None:
    if text is not None:
        (tmp_path / "job.json").write_text(text)
    with pytest.raises(JobFileError) as info:
        read_job_file(tmp_path)
    assert message in str(info.value) and str(tmp_path / "job.json") in str(info.value)
    assert "\n" not in str(info.value)
