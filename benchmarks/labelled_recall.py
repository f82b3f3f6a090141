"""A labelled set for recall quality (benchmarks/recall_quality.py): tasks of several kinds, each written in
several paraphrases, and recall@k, the share of queries whose own task is among the first k answers.

Each task has its own verbs, objects and details, each with synonyms; a paraphrase picks one of each and one
of the frames, which also order the parts differently. Seven tasks are near twins of others (hard
negatives): the same object, another action (refund or replace a damaged order, book or cancel a flight).
Paraphrase 0 of each task is landed; the others are the queries, each different from the landed text
(``labelled_set`` checks it). Seeded: the same set each run.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

# kind -> tasks, each (verbs, objects, details): synonyms that keep the task's meaning.
TASKS: dict[str, list[tuple[list[str], list[str], list[str]]]] = {
    "support": [
        (
            ["refund", "reimburse", "give the money back for"],
            ["an order that arrived damaged", "a parcel that came broken", "a delivery that was smashed in transit"],
            ["the customer sent photos", "photos of the damage are attached"],
        ),
        (
            ["reset", "recover", "change"],
            ["the password of a locked-out user", "a user's login password", "the account password a customer forgot"],
            ["they cannot sign in", "login keeps failing"],
        ),
        (
            ["cancel", "stop", "end"],
            ["a monthly subscription", "a recurring plan", "the customer's membership"],
            ["before the next billing date", "so they are not charged again"],
        ),
        (
            ["update", "change", "correct"],
            ["the shipping address of an order", "where a package is delivered", "an order's delivery address"],
            ["the customer moved", "the old address is wrong"],
        ),
        # Near twins of the tasks above (hard negatives): the same object, another action.
        (
            ["replace", "exchange", "send a new one for"],
            ["an order that arrived damaged", "a parcel that came broken", "a delivery that was smashed in transit"],
            ["the customer wants a new one", "they would rather have a replacement"],
        ),
        (
            ["pause", "freeze", "put on hold"],
            ["a monthly subscription", "a recurring plan", "the customer's membership"],
            ["while they travel", "for two months"],
        ),
    ],
    "coding": [
        (
            ["fix", "repair", "debug"],
            ["a failing unit test in the parser", "the broken parser test", "a parser test that no longer passes"],
            ["CI is red", "it fails on main"],
        ),
        (
            ["add", "write", "implement"],
            ["pagination to the list endpoint", "paging for the listing API", "page-by-page results in the list route"],
            ["results are too long", "clients need smaller pages"],
        ),
        (
            ["upgrade", "bump", "update"],
            ["the web framework dependency", "the framework library version", "the web framework package"],
            ["a security advisory came out", "the old version has a CVE"],
        ),
        (
            ["speed up", "optimise", "make faster"],
            ["a slow database query", "the sluggish SQL query", "a query that takes seconds"],
            ["the dashboard times out", "page loads are slow"],
        ),
        (
            ["write", "add", "create"],
            ["a new unit test for the parser", "an extra parser test", "a test case covering the parser"],
            ["coverage is low", "the edge case is untested"],
        ),
    ],
    "data": [
        (
            ["clean", "deduplicate", "tidy"],
            ["the customer spreadsheet", "the client table", "the contacts sheet"],
            ["it has duplicate rows", "many entries repeat"],
        ),
        (
            ["plot", "chart", "visualise"],
            ["monthly revenue", "revenue per month", "sales income by month"],
            ["for the board meeting", "for the quarterly review"],
        ),
        (
            ["plot", "chart", "visualise"],
            ["monthly expenses", "spending per month", "costs by month"],
            ["for the budget review", "for the finance team"],
        ),
        (
            ["join", "merge", "combine"],
            [
                "the orders and customers tables",
                "order records with customer records",
                "the customer and order datasets",
            ],
            ["on the customer id", "by customer key"],
        ),
        (
            ["forecast", "predict", "project"],
            ["next quarter's demand", "demand for the coming quarter", "how much stock next quarter needs"],
            ["using last year's sales", "from historical sales"],
        ),
    ],
    "travel": [
        (
            ["book", "reserve", "arrange"],
            ["a flight from Paris to Rome", "a plane ticket Paris to Rome", "air travel from Paris to Rome"],
            ["next Tuesday", "early next week"],
        ),
        (
            ["cancel", "call off", "drop"],
            ["a flight from Paris to Rome", "a plane ticket Paris to Rome", "air travel from Paris to Rome"],
            ["the trip was called off", "plans changed"],
        ),
        (
            ["find", "look for", "search"],
            [
                "a hotel near the conference centre",
                "lodging close to the venue",
                "a place to stay by the convention hall",
            ],
            ["for three nights", "for a three-night stay"],
        ),
        (
            ["rent", "hire", "get"],
            ["a car at the airport", "an airport rental car", "a vehicle when landing"],
            ["with automatic gearbox", "an automatic one"],
        ),
    ],
    "finance": [
        (
            ["file", "submit", "send in"],
            ["an expense report for a trip", "travel expenses", "the trip's receipts"],
            ["before month end", "by the end of the month"],
        ),
        (
            ["pay", "settle", "clear"],
            ["an overdue supplier invoice", "a late vendor bill", "the supplier's unpaid invoice"],
            ["to avoid a penalty", "before fees apply"],
        ),
        (
            ["dispute", "challenge", "query"],
            ["an overdue supplier invoice", "a late vendor bill", "the supplier's unpaid invoice"],
            ["the amount looks wrong", "it charges twice"],
        ),
        (
            ["reconcile", "match", "balance"],
            [
                "the bank statement with the ledger",
                "ledger entries against the bank",
                "the books with the bank account",
            ],
            ["for last month", "for the previous month"],
        ),
    ],
    "hr": [
        (
            ["onboard", "set up", "welcome"],
            ["a new engineer", "a newly hired developer", "the new software hire"],
            ["starting Monday", "who joins next week"],
        ),
        (
            ["approve", "sign off", "accept"],
            ["a vacation request", "a holiday leave request", "time off for an employee"],
            ["for two weeks in August", "covering mid August"],
        ),
        (
            ["reject", "decline", "turn down"],
            ["a vacation request", "a holiday leave request", "time off for an employee"],
            ["the team is short-staffed", "it clashes with the release"],
        ),
    ],
}
FRAMES = [
    "{verb} {obj}",
    "Please {verb} {obj}; {detail}.",
    "I need you to {verb} {obj} because {detail}",
    "{detail}: can you {verb} {obj}?",
    "Could you {verb} {obj} ({detail})",
]


@dataclass(frozen=True)
class Task:
    key: str  # kind/number
    kind: str
    landed: str  # the text the landed trajectory carries
    queries: tuple[str, ...]  # other paraphrases of the same task


def labelled_set(paraphrases: int = 4, seed: int = 16) -> list[Task]:
    """Every task of ``TASKS``, with ``paraphrases`` distinct texts: the first landed, the rest queried."""
    rng = random.Random(seed)
    out = []
    for kind, tasks in TASKS.items():
        for n, (verbs, objects, details) in enumerate(tasks):
            texts: list[str] = []
            while len(texts) < paraphrases:
                text = rng.choice(FRAMES).format(verb=rng.choice(verbs), obj=rng.choice(objects),
                                                 detail=rng.choice(details))  # fmt: skip
                text = text[0].upper() + text[1:]
                if text not in texts:  # each query differs from the landed text and from the others
                    texts.append(text)
            out.append(Task(f"{kind}/{n}", kind, texts[0], tuple(texts[1:])))
    return out


def recall_at_k(answers: Sequence[Sequence[str]], expected: Sequence[str], k: int) -> float:
    """The share of queries whose expected answer is among the first ``k`` of its answers."""
    if len(answers) != len(expected):
        raise ValueError(f"{len(answers)} answers for {len(expected)} queries")
    if not expected:
        raise ValueError("no queries")
    return sum(want in list(got)[:k] for got, want in zip(answers, expected, strict=True)) / len(expected)
