"""Real-time detection and tracking pipeline for dashcam video."""
