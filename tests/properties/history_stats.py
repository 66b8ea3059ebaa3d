"""Figures of the histories run in this session (one module instance, imported by name everywhere)."""

STATS = {"histories": 0, "steps": 0, "tries": 0, "planner_states": set(), "converged": 0, "refused": 0,
         "longest_converged": (0, 0), "seconds": 0.0, "seed": None, "refusals": {}}
