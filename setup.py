"""pip install -e . gives the library and the `mpvss` command without ROS.

The ROS 2 build (messages, launch files, installed share/) goes through colcon and
CMakeLists.txt; see README.md ("How the package is built"). A wheel carries the embedded default
model to <prefix>/share/mpvss_ros/models/default, the place the colcon install gives it.
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
DEFAULT_MODEL = "models/default"
# Every file of the directory (paths relative to this one, as data_files wants), so that a model
# exported with other files still ships whole; the packaging test compares the wheel with it.
_model_files = sorted(str(p.relative_to(HERE)) for p in (HERE / DEFAULT_MODEL).glob("*")
                      if p.is_file() and not p.name.startswith("."))

setup(
    name="mpvss_ros",
    version="0.1.0",
    description="MPVSS video semantic segmentation (Mask2Former key frames + query-based mask propagation) for ROS 2",
    license="Apache-2.0",  # as in package.xml; LICENSE goes into the wheel's dist-info
    license_files=["LICENSE"],
    packages=find_packages(include=["mpvss_ros", "mpvss_ros.*"]),
    # Only the model: an ament index marker here would let ROS tools find a package without
    # its messages, launch files and node executable (those come from colcon).
    data_files=[(f"share/mpvss_ros/{DEFAULT_MODEL}", _model_files)] if _model_files else [],
    python_requires=">=3.10",
    install_requires=[
        # the versions the embedded default was exported with: `recover-weights` re-exports with
        # torch and matches graphs exactly, and older transformers cannot export Mask2Former
        "torch>=2.13,<2.14",
        "transformers>=5.23,<6",
        "safetensors",
        "onnx",
        "onnxscript",
        "onnxruntime",
        "opencv-python-headless<5",
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
