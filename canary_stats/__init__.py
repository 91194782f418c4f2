"""canary_stats: anytime-valid promote / hold / rollback verdicts for AI-agent releases.

>>> import canary_stats as cs
>>> policy = cs.Policy.from_dict({
...     "stages": [{"traffic": 10, "duration": "2h"}, {"traffic": 100}],
...     "guardrails": {"task_success_rate": {"max_drop": 0.02}},
... })
"""

from . import stats, store
from ._verdict import GuardrailVerdict, Verdict
from .errors import CanaryStatsError, EventsError, InputError, InsufficientData, PolicyError
from .judge import analyze, judge, load_events
from .policy import Guardrail, Policy, Stage
from .shadow import analyze_shadow
from .store import Store
from .summary import CohortSummary, Moments, Summary, summarize

__version__ = "0.1.0"

__all__ = [
    "CanaryStatsError",
    "CohortSummary",
    "EventsError",
    "Guardrail",
    "GuardrailVerdict",
    "InputError",
    "InsufficientData",
    "Moments",
    "Policy",
    "PolicyError",
    "Stage",
    "Store",
    "Summary",
    "Verdict",
    "analyze",
    "analyze_shadow",
    "judge",
    "load_events",
    "stats",
    "store",
    "summarize",
]
