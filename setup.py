"""pip install -e . gives the library and the `mpvss` command without ROS.

The ROS 2 build (messages, launch files, installed share/) goes through colcon and
CMakeLists.txt; see README.md ("How the package is built").
"""
from setuptools import find_packages, setup

setup(
    name="mpvss_ros",
    version="0.1.0",
    description="MPVSS video semantic segmentation (Mask2Former key frames + query-based mask propagation) for ROS 2",
    packages=find_packages(include=["mpvss_ros", "mpvss_ros.*"]),
    package_data={"mpvss_ros": ["py.typed"]},
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",
        "transformers>=4.45",
        "safetensors",
        "onnx",
        "onnxscript",
        "onnxruntime",
        "opencv-python-headless",
        "numpy",
        "scipy>=1.15",  # stats.bootstrap(rng=...)
        "pillow",
        "rosbags>=0.10",
        "mcap",
        "mcap-ros2-support",
        "cityscapesscripts",
        "tqdm",
        "matplotlib",
        "pyyaml",
    ],
    extras_require={"gpu": ["onnxruntime-gpu"]},
    entry_points={"console_scripts": ["mpvss = mpvss_ros.cli:main"]},
)
