"""Hand landmarks on radiographs with MediaPipe Hands: 21 keypoints in the original image's
pixels, handedness from the anatomy, and the orient / handedness / crop_hand / rois stages."""
from handprep.landmarks.detect import HandLandmarks, LandmarkDetector, detect_landmarks
from handprep.landmarks.points import FINGERS, NAMES

__all__ = ["FINGERS", "NAMES", "HandLandmarks", "LandmarkDetector", "detect_landmarks"]
