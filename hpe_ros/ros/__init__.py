"""rclpy adapter: nodes, message conversions, launcher. The only part of hpe_ros that imports rclpy."""
