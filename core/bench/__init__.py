"""The benchmark harness: load a question set, run strategies and policies on it, score, report.

The modules, in the order a run uses them:

- `loading` reads JSONL question files;
- `entries` turns the requested strategy and policy names into validated entries, and
  `policies` is the registry of named policies;
- `running` answers every question with every entry, and `scoring` scores and aggregates rows;
- `reporting`, `plotting` and `machine` write the output folder;
- `harness` ties these together in `run_bench`, the function the CLI calls.
"""
