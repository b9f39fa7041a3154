"""Certified plans: a proven lower bound on cut edges, the gap, and proofs of "impossible".

``Partitioner(..., prove=True)`` (``patchmap partition --prove``) hands its plan to
:func:`certify_plan`, which builds the exact model of the plan's constraints
(:mod:`.model`: balance bands of every column, locks and rep homes, contiguity), solves
it with HiGHS for at most ``prove_time_limit`` seconds warm-started with the plan
(:mod:`.bound`), and attaches a :class:`~.report.Certificate` (``plan.certificate``:
cut edges, lower bound, gap, proven optimal). When the model proves that no plan can meet
the bands, the plan's guesses about why are replaced by a proven reason
(:mod:`.infeasible`); when the model finds a better plan than the search, that plan is
returned instead (and the notes say so).

The parts, one module per stage: ``model`` (instance, fixing, symmetry, and the checks of
a labelling: cut edges, pieces, whether it meets the instance), ``bound`` (the
HiGHS program and its contiguity rounds), ``columns`` (the set-partitioning bound by
column generation, beside the model when ``bound.COLUMNS`` is on) and ``pricing`` (its
pricing programs), ``infeasible`` (reasons), ``report`` (certificate, ``<plan stem>.bound.json``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from patchmap.certify.bound import BoundResult, lower_bound, require_solver
from patchmap.certify.infeasible import explain
from patchmap.certify.model import Instance, cut_edges, formulate, is_feasible
from patchmap.certify.report import Certificate, bound_json_path, write_bound_json
from patchmap.notes import Note

__all__ = [
    "BoundResult",
    "Certificate",
    "Instance",
    "bound_json_path",
    "certify_plan",
    "cut_edges",
    "explain",
    "formulate",
    "is_feasible",
    "lower_bound",
    "require_solver",
    "write_bound_json",
]


def _guess(note: str) -> bool:
    """A note of the search guessing why a band is missed (a proof replaces it): a unit
    too heavy for its territory, crowded rep homes, the primary column off its band."""
    code = getattr(note, "code", None)
    data = getattr(note, "data", {})
    return code in ("heavy_unit", "crowded_homes") or (
        code == "balance_off" and bool(data.get("primary"))
    )


def certify_plan(
    plan,
    *,
    codes: np.ndarray,
    ei: np.ndarray,
    ej: np.ndarray,
    weights: np.ndarray,
    shares: np.ndarray,
    tolerances: Sequence[float],
    fixed: np.ndarray,
    label_names: Sequence[str],
    columns: Sequence[str],
    ids: np.ndarray,
    time_limit: float,
    seed: int = 0,
    rebuild: Callable[[np.ndarray], object] | None = None,
):
    """Attach a :class:`Certificate` to ``plan`` (a :class:`~patchmap.partition.Plan`
    whose units carry territory ``codes`` into ``label_names``) and return it, or the
    exact model's better plan made by ``rebuild(codes)``.

    The instance: edges ``ei``-``ej``, ``weights`` (units x columns, primary first), each
    territory holding ``shares`` of every column within ``tolerances`` (one per column),
    units ``fixed`` to a territory code (-1 free), every territory contiguous.
    """
    require_solver()
    inst = Instance.from_bands(
        ei, ej, weights, shares=shares, tolerances=list(tolerances), fixed=fixed,
        names=list(label_names), columns=list(columns),
    )  # fmt: skip
    codes = np.asarray(codes, dtype=np.int64)
    res = lower_bound(inst, time_limit=time_limit, incumbent=codes, seed=seed)
    feasible = bool(all(plan.constraints.values()))
    if res.labels is not None and rebuild is not None:
        better = cut_edges(inst, res.labels) < cut_edges(inst, codes)
        if not feasible or better:
            new = rebuild(res.labels)
            if all(new.constraints.values()):
                new.notes.append(
                    Note(
                        "exact_plan",
                        f"the exact model found a plan with {cut_edges(inst, res.labels)} cut "
                        f"edges{'' if feasible else ' meeting every constraint'} (the search's had "
                        f"{cut_edges(inst, codes)}{'' if feasible else ' and missed some'}); "
                        "this is that plan",
                        cut_edges=cut_edges(inst, res.labels),
                    )
                )
                new.elapsed_s = plan.elapsed_s
                plan, codes, feasible = new, np.asarray(res.labels, dtype=np.int64), True
    reason = None
    if res.infeasible:
        reason = explain(inst, res.empty, ids)
        plan.notes[:] = [n for n in plan.notes if not _guess(n)]
        plan.notes.append(
            Note(
                "infeasible",
                f"no plan can meet the constraints (proven by the exact model): {reason}",
                reason=reason,
            )
        )
    labels = sorted(str(x) for x in plan.labels)
    cert = Certificate(
        cut_edges=cut_edges(inst, codes),
        lower_bound=res.lower_bound,
        plan_feasible=feasible,
        status=res.status,
        seconds=res.seconds,
        reason=reason,
        labels=(labels[0], labels[-1]) if labels else ("", ""),
    )
    plan.certificate = cert
    if not res.infeasible:
        plan.notes.append(Note("certificate", cert.sentence(), **cert.to_dict()))
    return plan
