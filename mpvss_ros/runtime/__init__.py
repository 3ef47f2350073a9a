"""Inference runtime without ROS: runners, key-frame schedule, VideoSegmenter."""
