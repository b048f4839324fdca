"""Cost-aware admission under overload: shed an expensive request at arrival when running it would
make more cheap requests miss their SLOs than the one request it serves.

Blocks do not pre-empt. While a block of ``b`` ms holds a processor, a request of task ``j`` that
arrives meanwhile waits for the rest of it; it misses when that wait exceeds ``j``'s slack (its SLO
less its planned service time). With ``j`` arriving at rate ``lambda_j``, the requests of ``j``
expected to miss behind the block are ``lambda_j x max(0, b - slack_j)``. A request is shed when
the sum over its blocks, and over the tasks planned on each block's processor, exceeds one: the one
request its running would serve.

Only tasks whose planned service is strictly shorter than the request's count, so the cheapest task
is never shed and two tasks cannot shed each other. Rates are the live ones, estimated from the last
RATE_WINDOW arrivals: a burst is seen within a few of its arrivals, and a task that stops arriving
stops counting. The engines own one :class:`Admission` per run, so policies stay stateless.
"""

from __future__ import annotations

from collections import deque

from scheduler.plan import Plan, Route
from scheduler.problem import Problem

# Arrivals per task in the live-rate estimate. It trades noise against lag: the estimate's relative
# error on Poisson arrivals is about 1/sqrt(RATE_WINDOW - 1) (26% here) and it takes RATE_WINDOW
# arrivals to follow a change of rate (40 ms of a 400 Hz burst, well within one SLO change's scale
# of seconds). Shedding compares the estimate to a break-even of one request, so a 26% error moves
# the decision only near that break-even, where either choice costs about the same.
RATE_WINDOW = 16


class Admission:
    """Live arrival rates per task, and the shed decision for a request about to be dispatched."""

    __slots__ = ("_arrivals", "_plan", "_tasks", "_users")

    def __init__(self, problem: Problem) -> None:
        self._tasks = {t.name: t for t in problem.tasks}
        self._arrivals: dict[str, deque[float]] = {t: deque(maxlen=RATE_WINDOW) for t in self._tasks}
        self._plan: Plan | None = None
        # Per processor: (task, slack ms, planned service ms) of the tasks whose plan uses it.
        self._users: dict[str, tuple[tuple[str, float, float], ...]] = {}

    def arrive(self, task: str, now_ms: float) -> None:
        """Count one arrival of ``task`` (every arrival, admitted or not)."""
        self._arrivals[task].append(now_ms)

    def rate_per_ms(self, task: str, now_ms: float) -> float:
        """``task``'s live arrival rate: its last RATE_WINDOW arrivals over the time since the first
        of them (so it decays while the task is silent); 0 before two arrivals."""
        d = self._arrivals[task]
        span = now_ms - d[0] if d else 0.0
        return (len(d) - 1) / span if len(d) >= 2 and span > 0.0 else 0.0

    def _use(self, plan: Plan) -> None:
        if plan is self._plan:
            return
        users: dict[str, list[tuple[str, float, float]]] = {}
        for t, r in plan.routes.items():
            # The plan's SLOs are those dispatch checks against; a plan without them, the problem's.
            slack = plan.slo_ms.get(t, self._tasks[t].latency_slo_ms if t in self._tasks else float("inf")) - r.latency_ms
            if slack <= 0.0 or slack == float("inf"):
                continue  # hopeless (dropped anyway) or without a latency SLO: nothing to protect
            for k in set(r.processors):
                users.setdefault(k, []).append((t, slack, r.latency_ms))
        self._users = {k: tuple(v) for k, v in users.items()}
        self._plan = plan

    def harm(self, route: Route, plan: Plan, now_ms: float) -> float:
        """Requests of cheaper tasks expected to miss their SLOs because ``route``'s blocks hold
        their processors (see the module docstring)."""
        self._use(plan)
        h = 0.0
        rates: dict[str, float] = {}  # each task's rate read once, however many blocks it sits behind
        blocks = route.step_latency_ms or self._block_ms(route)
        for k, b in zip(route.processors, blocks):
            for task, slack, service in self._users.get(k, ()):
                if b > slack and service < route.latency_ms:
                    rate = rates.get(task)
                    if rate is None:
                        rate = rates[task] = self.rate_per_ms(task, now_ms)
                    h += rate * (b - slack)
        return h

    def _block_ms(self, route: Route) -> tuple[float, ...]:
        """A route made without per-block latencies (a user's policy may): its blocks' profiled ones."""
        task = self._tasks[route.task]
        return tuple(float(task.positions[i][o].latency_ms[k])
                     for i, (o, k) in enumerate(zip(route.options, route.processors)))

    def admit(self, route: Route, plan: Plan, now_ms: float) -> bool:
        """Whether to run ``route``: shed it when it is expected to cost more than one other request."""
        return self.harm(route, plan, now_ms) <= 1.0
