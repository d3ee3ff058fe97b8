"""medperf-apply: reconcile a data owner's MedPerf manifest against a registry and the local Docker engine."""
