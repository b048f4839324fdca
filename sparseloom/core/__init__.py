"""The decision core the simulator (``sparseloom.sim``) and the runtime (``sparseloom.runtime``) share.

Each module holds one kind of decision as a pure function of the state a driver passes in, so the
simulated clock and the wall clock decide it the same way. Today: which resident blocks to evict
(:mod:`sparseloom.core.eviction`).
"""
