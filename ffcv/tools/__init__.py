"""The ``ffcv`` command: `cli` (the entry point, inspect, verify, bench), `convert`, `common` (exit codes,
errors, formatting), and `bench` (the stage timing behind ``ffcv bench``)."""
