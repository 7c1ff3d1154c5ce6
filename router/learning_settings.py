"""Settings of what the proxy learns from: the outcome log, the learned router, the verifier and live labels."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OutcomeLogSettings(_Strict):
    """The outcome log: one record per request, for retraining the router and tuning its thresholds.

    `url` is `sqlite:///path` (embedded, the default) or `postgresql://...` (shared by replicas; `database.url`
    when the config gives no `outcome_log.url`). Writes are
    batched off the request path through a bounded queue; prompts and answers are stored only when
    `store_text` is true (hashes otherwise). Before its request is acknowledged, each record is appended to a
    local write-ahead journal, so records of answered requests survive `kill -9` (router/storage/journal.py).
    """

    enabled: bool = True
    url: str = "sqlite:///var/outcomes.sqlite"
    store_text: bool = False
    store_embeddings: bool = True
    queue_size: int = Field(10_000, ge=1)
    batch_size: int = Field(256, ge=1)
    flush_interval_ms: float = Field(200.0, ge=1.0)
    retention_days: float | None = Field(90.0, gt=0)
    max_rows: int | None = Field(1_000_000, ge=1)
    spool_path: str | None = "var/outcomes.spool.jsonl"
    journal: bool = True
    """Append each record to the write-ahead journal before its request is acknowledged (off: a crash loses the
    records of the last `flush_interval_ms`)."""
    journal_path: str | None = None
    """The journal's directory (None: `<sqlite file>.journal.d`, else `outcomes.journal.d` next to the spool, else
    `var/outcomes.journal.d` under the data directory)."""
    journal_fsync: bool = False
    """Also survive a machine crash: each answer waits for a group fsync of the journal (about a disk flush)."""

    def default_journal_path(self) -> str | None:
        """The journal's directory when it has no other place (a database that is not a SQLite file, no spool)."""
        local = self.url.startswith("sqlite:///") and not self.url.endswith(":memory:")
        return None if self.journal_path or local or self.spool_path else "var/outcomes.journal.d"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:// or postgresql://")
        return value


class LearnedRouterSettings(_Strict):
    """The learned router: a classifier of P(draft good enough) from the request alone.

    The newest valid artifact under `models_dir` (None: the proxy's shipped `models/`) is loaded at start-up and
    swapped in when a newer one appears (checked every `reload_interval_s`). Below `skip_threshold` (the
    artifact's own when unset) a request skips the draft and goes to the strong model.
    """

    enabled: bool = True
    models_dir: str | None = None
    """Where router artifacts are looked for (None: the `models/` shipped with the proxy)."""
    artifact: str | None = None
    skip_threshold: float | None = Field(None, ge=0.0, le=1.0)
    reload_interval_s: float = Field(10.0, gt=0)
    required: bool = False


class LabelSettings(_Strict):
    """Labels for live traffic: whether the draft was good enough, judged when both answers exist.

    Escalated requests have both answers. A share of accepted drafts (`exploration_rate`) is also sent to
    the strong model in the background so labels are not limited to what the router already escalates.
    The judge is `agreement` (embedding similarity, exact or numeric match of the two answers) or `grader`
    (the strong model grades the draft against its own answer). Background exploration and grading never
    spend a client's own forwarded provider key unless `spend_client_keys` is true.
    """

    exploration_rate: float = Field(0.05, ge=0.0, le=1.0)
    judge: Literal["agreement", "grader"] = "agreement"
    agreement_similarity: float = Field(0.8, ge=0.0, le=1.0)
    grader_model: str | None = None
    max_concurrent: int = Field(4, ge=1)
    spend_client_keys: bool = False
    """Background exploration and grading never spend a client's own forwarded key unless this is true."""


class VerifierSettings(_Strict):
    """The trained verifier: P(draft good enough | request, draft answer), from a calibrated artifact.

    The newest valid `verifier-<version>` artifact under `models_dir` (None: the proxy's shipped `models/`) is
    loaded at start-up and hot-reloaded like the router's. A draft is served when the verifier's probability
    reaches `accept_threshold` (None: the artifact's own, chosen in training together with the router's skip
    threshold for a quality target; a rule's `verify.profile` picks the pair chosen for its kind of model
    pair). Without an artifact (or with `enabled: false`) drafts are judged by the hand-weighted score against
    each rule's `quality_threshold`.
    """

    enabled: bool = True
    models_dir: str | None = None
    artifact: str | None = None
    accept_threshold: float | None = Field(None, ge=0.0, le=1.0)
    reload_interval_s: float = Field(10.0, gt=0)
    required: bool = False


class DraftVerification(_Strict):
    """Per rule: agreement evidence. With `samples: k` > 1 the draft is sampled k-1 more times, concurrently
    with it, at `temperature`; the share of samples whose final answer (a number, a choice letter, yes/no, a
    short answer, the tool calls) agrees with the draft's is evidence for the verifier. The samples are paid as
    draft cost. Off (1) by default: it multiplies the draft's cost."""

    samples: int = Field(1, ge=1, le=8)
    temperature: float = Field(0.8, gt=0.0, le=2.0)
    profile: str | None = None
    """The verifier artifact's policy profile this rule uses: the router skip threshold and the accept threshold
    training chose together for one kind of model pair (e.g. `local` for small local models with log-probs).
    None (or a profile the artifact lacks): the artifact's default pair."""
