"""Knowledge distillation: teachers' logits on a transfer set -> one student network.

Modules, one job each:
  - ``transfer``: the transfer set (sources, split by source, extraction, sharded cache, reading)
  - ``augment``: training-time augmentation of cached frames
  - ``student``: the student network and its self-describing checkpoint
  - ``losses``: the thesis's merged and split RMSE losses and the head-aware loss
  - ``metrics``: top-1 agreement and nDCG against the teachers
  - ``config``: the training configuration (YAML, validated)
  - ``fit``: the training loop; ``evaluate``: test-split report and speed against the teachers
"""
