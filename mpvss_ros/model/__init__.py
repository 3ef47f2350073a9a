"""The MPVSS model in torch: key-frame segmentor, query-based flow, warp, fusion. No ROS here."""
