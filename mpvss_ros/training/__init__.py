"""Training of the key-frame segmentor and the query-flow module (torch; no ROS).

`train_segmentor(SegmentorOptions)` and `train_flow(FlowOptions)` are what `mpvss train` runs.
Both are seeded and resumable from their output directory, write `learning_curve.csv`, and run
under `torchrun` (one process per device, rank 0 writes).
"""
