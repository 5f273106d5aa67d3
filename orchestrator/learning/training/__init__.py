"""The training loop: webhook events in, at most one training per project at a time, versions out.

One module per question:
- `schedule`: *when* to look — events recorded by a webhook ask for a check, coalesced per
  project, and the policy's rule (`decide`) says whether a check trains now, later or not;
- `loop`: the check itself, run by a worker under the project's training lease: read the
  annotations, train, record the run; and beat's reconciliation;
- `dataset` and `fit`: *how* a version is made — examples from Label Studio's annotations,
  cross-validation, the fit, the MLflow run and registration;
- `promotion`: *whether it serves* — the promotion rule and the act of promoting, which asks
  for a push of the new version's scores.

Events are triggers, never data: a training always reads the project's current
annotations back from Label Studio, so duplicate, late, out-of-order or lost webhooks
cannot make a model learn the wrong thing; they only change *when* it trains.
"""
