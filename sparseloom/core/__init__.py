"""The decision core the simulator (``sparseloom.sim``) and the runtime (``sparseloom.runtime``) share.

Each module holds one kind of decision as a function of the state a driver passes in, so the
simulated clock and the wall clock decide it the same way:

- :mod:`sparseloom.core.dispatch`: a request's route and admission at arrival, the blocks prefetched
  at dispatch, and the late-drop rule;
- :mod:`sparseloom.core.overload`: a deployment's limits at arrival (requests in flight, expected
  finish against the SLO);
- :mod:`sparseloom.core.eviction`: which resident blocks to evict for a load;
- :mod:`sparseloom.core.slo`: an SLO change (quick switch, re-plan, which re-plan may serve);
- :mod:`sparseloom.core.metrics`: the statistics of a run, simulated or real;
- :mod:`sparseloom.core.decisions`: the record of a run's decisions, to compare the two drivers.

The drivers keep the clock, the queues' mechanics and the execution: an event heap and modelled
latencies in the simulator, worker threads and real blocks in the runtime.
"""
