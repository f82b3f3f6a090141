"""Feed an instructions report's reflective dataset to gepa 0.1.4's own optimiser; print what it made of it, as
one JSON line.

    python load.py reflective_dataset.jsonl instructions.json

The records are checked against the schema `GEPAAdapter.make_reflective_dataset` documents (`Inputs`: a dict
of strings; `Generated Outputs`: a string or a dict of strings; `Feedback`: a string; extra keys such as
`score` allowed), then go through `gepa.optimize` itself, one run per system message the records were made
under (the seed candidate `{component: that system message}`), with stubs only where an agent or an LLM
would be:

- a stub `GEPAAdapter`: `evaluate` answers each record's recorded `Generated Outputs` and `score` (the
  trajectory as it ran; nothing runs again), and `make_reflective_dataset` returns the exported records,
  verbatim, for the component gepa asks to update;
- a stub reflection LM that records the prompt gepa built and answers with the report's patched system
  message in a ``` block (the fixed candidate); gepa's own `InstructionProposalSignature` (behind its
  `StatelessReflectionLM`) renders the records into that prompt and extracts the new instruction from the answer.

One iteration runs (`max_metric_calls`: the seed's evaluation and one more). What is printed, per run: the
schema problems found, how many records gepa put in the reflection prompt and whether each record's Feedback
and outputs stand in it under gepa's headings, the instruction gepa extracted, and gepa's result (its
candidates and metric calls). The child is evaluated on the same recorded scores, so gepa rightly does not
accept it: acceptance says nothing here, the reflection does.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import gepa
from gepa.core.adapter import EvaluationBatch

FALLBACK = "Follow the steps the successful trajectories take."  # when the report has no patch for a run


class Quiet:
    """gepa's logger prints to stdout, where our one JSON line goes; keep its lines for the report instead."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


def schema_problems(i: int, record: Any) -> list[str]:
    """What in one record breaks the schema `make_reflective_dataset` documents."""
    if not isinstance(record, Mapping):
        return [f"record {i} is a {type(record).__name__}, not a mapping"]
    out = [f"record {i} lacks {key!r}" for key in ("Inputs", "Generated Outputs", "Feedback") if key not in record]
    inputs, generated = record.get("Inputs"), record.get("Generated Outputs")
    if "Inputs" in record and not (isinstance(inputs, Mapping) and all(isinstance(v, str) for v in inputs.values())):
        out.append(f"record {i}: Inputs is not a dict of strings")
    if "Generated Outputs" in record and not (isinstance(generated, str) or (
            isinstance(generated, Mapping) and all(isinstance(v, str) for v in generated.values()))):  # fmt: skip
        out.append(f"record {i}: Generated Outputs is neither a string nor a dict of strings")
    if "Feedback" in record and not isinstance(record["Feedback"], str):
        out.append(f"record {i}: Feedback is not a string")
    if not isinstance(record.get("score"), int | float) or isinstance(record.get("score"), bool):
        out.append(f"record {i}: score is not a number")
    return out


class RecordsAdapter:
    """The stub adapter: the data instances are indexes into the exported records."""

    propose_new_texts = None

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records

    def evaluate(self, batch: list[int], candidate: dict[str, str], capture_traces: bool = False) -> EvaluationBatch:
        return EvaluationBatch(outputs=[self.records[i]["Generated Outputs"] for i in batch],
                               scores=[float(self.records[i]["score"]) for i in batch],
                               trajectories=list(batch) if capture_traces else None)  # fmt: skip

    def make_reflective_dataset(self, candidate: dict[str, str], eval_batch: EvaluationBatch,
                                components_to_update: list[str]) -> Mapping[str, Sequence[Any]]:  # fmt: skip
        picked = [self.records[i] for i in eval_batch.trajectories or []]
        return {c: [r for r in picked if r.get("component") == c] for c in components_to_update}


class ReflectionStub:
    """The reflection LM: keeps the prompts gepa built and answers with a fixed instruction."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.prompts: list[str] = []

    def __call__(self, prompt: str | list[dict[str, Any]]) -> str:
        self.prompts.append(prompt if isinstance(prompt, str) else json.dumps(prompt))
        return f"Here is the new instruction:\n```\n{self.answer}\n```\n"


class Proposals:
    """A gepa callback: the reflective dataset gepa was handed and the proposal it made of it."""

    def __init__(self) -> None:
        self.datasets: list[dict[str, list[dict[str, Any]]]] = []
        self.proposals: list[dict[str, Any]] = []

    def on_reflective_dataset_built(self, event: Mapping[str, Any]) -> None:
        self.datasets.append(event["dataset"])

    def on_proposal_end(self, event: Mapping[str, Any]) -> None:
        self.proposals.append(dict(event))


def in_prompt(record: Mapping[str, Any], prompt: str) -> dict[str, bool]:
    """Whether gepa's prompt carries the record under its own headings (`## Feedback`, `## Generated Outputs`)."""
    generated = record["Generated Outputs"]
    return {"feedback": f"## Feedback\n{record['Feedback'].strip()}\n" in prompt,
            "outputs": (f"## Generated Outputs\n{generated.strip()}\n" if isinstance(generated, str)
                        else "## Generated Outputs\n### ") in prompt,
            "inputs": all(f"### {k}\n" in prompt for k in record["Inputs"])}  # fmt: skip


def run(component: str, seed: str, records: list[dict[str, Any]], answer: str) -> dict[str, Any]:
    adapter, lm, logger, seen = RecordsAdapter(records), ReflectionStub(answer), Quiet(), Proposals()
    ids = list(range(len(records)))
    result = gepa.optimize(seed_candidate={component: seed}, trainset=ids, valset=ids, adapter=adapter,
                           reflection_lm=lm, reflection_minibatch_size=len(ids), skip_perfect_score=False,
                           max_metric_calls=len(ids) + 1, logger=logger, callbacks=[seen], seed=0)  # fmt: skip
    proposal = seen.proposals[0] if seen.proposals else {}
    prompt = str(proposal.get("prompts", {}).get(component, ""))
    handed = seen.datasets[0].get(component, []) if seen.datasets else []
    examples = sum(1 for n in range(1, len(records) + 1) if f"# Example {n}\n" in prompt)
    new = proposal.get("new_instructions", {}).get(component)
    return {"component": component, "records": len(records), "reflection_prompts": len(lm.prompts),
            "handed_to_gepa": len(handed), "handed_verbatim": sorted(map(json.dumps, handed)) == sorted(
                map(json.dumps, records)), "prompt_is_lm_prompt": bool(lm.prompts) and lm.prompts[0] == prompt,
            "examples_in_prompt": examples, "seed_in_prompt": seed.strip() in prompt,
            "records_in_prompt": [in_prompt(r, prompt) for r in records], "new_instruction": new,
            "new_instruction_is_answer": new == answer.strip(),
            "candidates": len(result.candidates), "total_metric_calls": result.total_metric_calls,
            "seed_score": result.val_aggregate_scores[0], "log_lines": len(logger.lines)}  # fmt: skip


def main(dataset_path: str, report_path: str) -> None:
    with open(dataset_path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    with open(report_path, encoding="utf-8") as f:
        report = json.load(f)
    problems = [p for i, r in enumerate(rows) for p in schema_problems(i, r)]
    if problems:  # gepa renders whatever it gets; the schema is what the reflection LM is promised
        print(json.dumps({"records": len(rows), "schema_problems": problems, "runs": []}))
        return
    texts = [c["patch"]["text"] for c in report["findings"] if "patch" in c]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r.get("component", ""), r["Inputs"].get("system_message", "")), []).append(r)
    runs = []
    for (component, seed), records in groups.items():
        answer = next((t for t in texts if t.startswith(seed) and t != seed), FALLBACK)
        runs.append({**run(component, seed, records, answer), "answer_from_report": answer != FALLBACK})
    print(json.dumps({"records": len(rows), "schema_problems": [], "runs": runs}, ensure_ascii=False))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
