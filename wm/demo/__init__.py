"""`wm demo`: a synthetic day recorded, slept on and queried, with a scorecard."""
