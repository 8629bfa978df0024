"""QoS profiles used across the graph, named by what they are for."""
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

# Camera images, camera_info and per-view poses are read best-effort, newest wins (REP-2003 sensor data).
SENSOR = qos_profile_sensor_data

# Images for a node that must always work on the newest frame: best effort, a history of one, so frames
# that arrive while the network runs replace each other in DDS instead of queueing behind it.
NEWEST_ONLY = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT,
                         durability=DurabilityPolicy.VOLATILE)

# Pose topics are published reliably: best-effort readers (SENSOR) and reliable readers both accept them.
POSES = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=5, reliability=ReliabilityPolicy.RELIABLE,
                   durability=DurabilityPolicy.VOLATILE)

# Latched description topics (skeleton layout): late joiners get the last message.
LATCHED = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
