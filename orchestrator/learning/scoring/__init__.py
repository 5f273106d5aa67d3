"""The push loop: every unlabeled task scored by the serving version, pushed to Label Studio most informative first.

Label Studio's Data Manager sorts by "Prediction score" only over predictions whose
`model_version` equals the project's `model_version` (see the README), so the service
pushes the scores itself, one module per step of a run:

- `runs`: which run answers a request (start, resume, or the one already covering it), the
  triggers (a promotion, TASKS_CREATED, a schedule) and beat's reconciliation;
- `job`: a run executed under the project's scoring lease, step after step (`context`:
  what the steps share);
- `pool`: the unlabeled tasks read page by page, scored, stored most informative first;
- `push`: the stored pool imported chunk by chunk under the run's tag, exactly once per
  task through lost answers and outages, and Label Studio switched to the tag;
- `chunks`: how many predictions the next import carries (pure);
- `cleanup`: the service's older tags deleted once a newer one orders the queue.
"""
