"""hpe_ros: real-time multi-camera 3D human pose estimation for ROS 2 (ament_python package)."""
from glob import glob

from setuptools import find_packages, setup

package_name = "hpe_ros"

# The ROS 2 Python client from PyPI, for machines without a sourced ROS 2 (CI, laptops).
ROS_WHEELS = [
    "ros-rclpy[fastrtps]",
    "ros-sensor-msgs",
    "ros-geometry-msgs",
    "ros-visualization-msgs",
    "ros-std-msgs",
    "ros-diagnostic-msgs",
    "ros-lifecycle-msgs",
    "ros-std-srvs",
]

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test", "test.*", "benchmarks"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        ("share/" + package_name + "/launch", glob("launch/*.py")),
        ("share/" + package_name + "/config", glob("config/*")),
        ("share/" + package_name + "/models", glob("models/*")),
    ],
    include_package_data=True,
    python_requires=">=3.10",
    install_requires=["numpy>=1.22", "scipy", "opencv-python-headless", "matplotlib", "pyyaml", "tqdm",
                      "tomli; python_version < '3.11'", "rosbags>=0.10"],
    extras_require={
        "ros": ROS_WHEELS,
        "onnx": ["onnxruntime", "onnx"],
        "mediapipe": ["mediapipe==0.10.14"],
        # BlazePose through our own runtimes: reading .tflite (TFLite -> ONNX) and LiteRT's interpreter.
        "blazepose": ["tflite", "ai-edge-litert"],
        "torch": ["torch==2.13.0"],
        "tensorrt": ["tensorrt"],
        "test": ["pytest", "pytest-timeout", "scikit-image", "ruff==0.17.6", "mypy==2.4.1"],
    },
    zip_safe=True,
    maintainer="hpe_ros developers",
    maintainer_email="hpe-ros@example.org",
    description="Real-time multi-camera 3D human pose estimation for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "hpe-ros = hpe_ros.cli:main",
            "camera_pose_node = hpe_ros.ros.camera_pose_node:main",
            "lifter_node = hpe_ros.ros.lifter_node:main",
            "fusion_node = hpe_ros.ros.fusion_node:main",
            "rig_sim_node = hpe_ros.ros.rig_sim_node:main",
        ],
    },
)
